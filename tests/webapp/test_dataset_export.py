"""Dataset export: the .npz and the ImageFolder zip round-trip the confirmed rows, via the API and the CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import zipfile
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select, text

from webapp.extensions import db
from webapp.models import ApiToken, Drawing, User, new_id

from .conftest import TABLES, make_app

EXPORT = "/api/v1/dataset/export"
START = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def app(database_url, object_root, tmp_path):
    """The app on an empty database; exports need no trained networks, so none are registered."""
    app = make_app(database_url, object_root, tmp_path)
    with app.app_context():
        for table in TABLES:
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def small_chunks(monkeypatch):
    """Several database batches and many output chunks even for a few rows."""
    from webapp import dataset

    monkeypatch.setattr(dataset, "CHUNK_ROWS", 4)
    monkeypatch.setattr(dataset, "FLUSH_BYTES", 1)


def add_drawing(*, status: str, label: int, confirmed_at: datetime | None = None, holdout: bool = False,
                source: str = "contribution", seed: int = 0) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    drawing_id = new_id()
    db.session.add(Drawing(
        id=drawing_id, source=source, label=label, status=status, object_key=f"drawings/{drawing_id}.png",
        content_type="image/png", sha256=hashlib.sha256(drawing_id.encode()).hexdigest(), size_bytes=100 + seed,
        width=200 + seed, height=150 + seed, pixels=pixels.tobytes(), created_at=START - timedelta(days=1, minutes=seed),
        confirmed_at=confirmed_at, holdout=holdout))
    return drawing_id


@pytest.fixture
def dataset(app):
    """23 confirmed drawings (inserted out of order, two sharing a confirmation time), 4 pending, 3 rejected."""
    with app.app_context():
        moments = [START + timedelta(minutes=(7 * index) % 23) for index in range(23)]
        moments[5] = moments[6]  # a tie, broken by id
        for index, moment in enumerate(moments):
            add_drawing(status="confirmed", label=index % 10, confirmed_at=moment, holdout=index % 5 == 0,
                        source=("contribution", "feedback")[index % 2], seed=index)
        for index in range(4):
            add_drawing(status="pending", label=index, seed=100 + index)
        for index in range(3):
            add_drawing(status="rejected", label=index, seed=200 + index)
        db.session.commit()
        rows = db.session.scalars(select(Drawing).where(Drawing.status == "confirmed")).all()
        rows.sort(key=lambda row: (row.confirmed_at, row.id))
        return [{"id": row.id, "label": row.label, "source": row.source, "holdout": row.holdout,
                 "pixels": np.frombuffer(row.pixels, np.uint8).reshape(28, 28), "sha256": row.sha256,
                 "width": row.width, "height": row.height, "created_at": row.created_at,
                 "confirmed_at": row.confirmed_at} for row in rows]


def iso(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def check_npz(data: bytes, expected: list[dict]) -> None:
    with np.load(io.BytesIO(data)) as arrays:
        assert sorted(arrays.files) == ["holdout", "ids", "x", "y"]
        x, y, holdout, ids = arrays["x"], arrays["y"], arrays["holdout"], arrays["ids"]
    assert x.dtype == np.uint8 and x.shape == (len(expected), 28, 28)
    assert y.dtype == np.uint8 and y.shape == (len(expected),)
    assert holdout.dtype == bool and ids.shape == (len(expected),)
    assert ids.tolist() == [row["id"] for row in expected]
    assert y.tolist() == [row["label"] for row in expected]
    assert holdout.tolist() == [row["holdout"] for row in expected]
    for index, row in enumerate(expected):
        np.testing.assert_array_equal(x[index], row["pixels"])


def check_image_folder(data: bytes, expected: list[dict]) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        paths = [f"{row['label']}/{row['id']}.png" for row in expected]
        assert sorted(archive.namelist()) == sorted(paths + ["manifest.csv", "audit.jsonl"])
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8"))))
        assert [line["id"] for line in manifest] == [row["id"] for row in expected]
        for line, row, path in zip(manifest, expected, paths):
            png = archive.read(path)
            image = Image.open(io.BytesIO(png))
            assert image.format == "PNG" and image.mode == "L" and image.size == (28, 28)
            np.testing.assert_array_equal(np.asarray(image), row["pixels"])
            assert line == {"id": row["id"], "label": str(row["label"]), "source": row["source"],
                            "holdout": str(int(row["holdout"])), "created_at": iso(row["created_at"]),
                            "confirmed_at": iso(row["confirmed_at"]), "width": "28", "height": "28",
                            "sha256": hashlib.sha256(png).hexdigest(), "path": path,
                            "original_sha256": row["sha256"], "original_width": str(row["width"]),
                            "original_height": str(row["height"])}


def test_npz_through_the_api_holds_exactly_the_confirmed_rows(client, dataset, admin_token, small_chunks):
    response = client.get(f"{EXPORT}?format=npz", headers=admin_token, buffered=False)
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "application/octet-stream"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="inkling-dataset-{datetime.now(timezone.utc):%Y-%m-%d}.npz"')
    assert response.headers["X-Dataset-Rows"] == "23"
    chunks = list(response.response)
    # Handed on as it is made, not built whole first (zlib holds some back, hence only a few).
    assert len(chunks) > 2 and chunks[0].startswith(b"PK\x03\x04")
    check_npz(b"".join(chunks), dataset)


def test_image_folder_zip_through_the_api(client, dataset, admin_token, small_chunks):
    response = client.get(f"{EXPORT}?format=zip", headers=admin_token, buffered=False)
    assert response.status_code == 200 and response.is_streamed and response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"].endswith('.zip"')
    chunks = list(response.response)
    assert len(chunks) > 23  # a chunk per PNG at least, as the rows arrive
    check_image_folder(b"".join(chunks), dataset)


def test_archives_are_written_as_a_stream(app, dataset):
    """Deflated members carry data descriptors and stored ones their sizes up front: the archive
    was written without seeking back."""
    from webapp.dataset import DatasetExport

    for fmt in ("npz", "zip"):
        with app.app_context():
            data = b"".join(DatasetExport(fmt, chunk_rows=5))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.compress_type == zipfile.ZIP_DEFLATED:
                    assert info.flag_bits & 0x08, info.filename
                else:
                    assert info.compress_type == zipfile.ZIP_STORED and info.filename.endswith(".png")


@pytest.mark.skipif(not shutil.which("unzip"), reason="Info-ZIP unzip is not installed")
def test_archives_pass_info_zip_integrity_test(app, dataset, tmp_path):
    """A second, independent reader: Info-ZIP's own CRC and structure check."""
    from webapp.dataset import DatasetExport

    for fmt in ("npz", "zip"):
        with app.app_context():
            DatasetExport(fmt).write_to(tmp_path / f"export.{fmt}")
        result = subprocess.run(["unzip", "-tq", str(tmp_path / f"export.{fmt}")], capture_output=True, text=True)
        assert result.returncode == 0 and "No errors detected" in result.stdout, result.stdout + result.stderr


def test_more_members_than_a_classic_zip_can_count():
    """Past 65,535 members the ZIP64 end records carry the count; zipfile and unzip must read them."""
    from stream_zip import NO_COMPRESSION_64

    from webapp.dataset import zip_archive

    members = ((f"{index % 10}/{index}.txt", NO_COMPRESSION_64, (str(index).encode(),)) for index in range(70_000))
    data = b"".join(zip_archive(members, modified_at=START))
    with zipfile.ZipFile(io.BytesIO(data)) as reader:
        infos = reader.infolist()
        assert len(infos) == 70_000
        assert reader.read(infos[-1]) == b"69999" and infos[-1].filename == "9/69999.txt"


def test_cli_exports_both_formats_and_replaces_the_file_atomically(runner, dataset, tmp_path, small_chunks):
    out = tmp_path / "out"
    out.mkdir()
    npz, archive = out / "digits.npz", out / "digits.zip"
    npz.write_bytes(b"an older export")
    result = runner.invoke(args=["dataset", "export", "--format", "npz", "--out", str(npz)])
    assert result.exit_code == 0, result.output
    assert "23 confirmed drawings" in result.output
    check_npz(npz.read_bytes(), dataset)
    result = runner.invoke(args=["dataset", "export", "--format", "zip", "--out", str(archive)])
    assert result.exit_code == 0, result.output
    check_image_folder(archive.read_bytes(), dataset)
    assert sorted(path.name for path in out.iterdir()) == ["digits.npz", "digits.zip"]  # no temporary left


def test_cli_refuses_a_bad_format_or_folder(runner, tmp_path):
    result = runner.invoke(args=["dataset", "export", "--format", "csv", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "csv" in result.output
    result = runner.invoke(args=["dataset", "export", "--out", str(tmp_path / "missing" / "x.npz")])
    assert result.exit_code != 0 and "not a folder" in result.output


def test_a_failed_export_leaves_the_old_file(app, dataset, tmp_path, monkeypatch):
    from webapp import dataset as module

    folder = tmp_path / "exports"  # tmp_path is also the app's instance folder
    folder.mkdir()
    target = folder / "digits.zip"
    target.write_bytes(b"the previous export")

    def broken(pixels):
        raise OSError("disk full")

    monkeypatch.setattr(module, "pixels_png", broken)
    with app.app_context(), pytest.raises(OSError):
        module.DatasetExport("zip").write_to(target)
    assert target.read_bytes() == b"the previous export"
    assert [path.name for path in folder.iterdir()] == ["digits.zip"]


def test_changes_during_an_export_do_not_show(app, dataset, small_chunks):
    """The shape is declared first; confirmations, relabels and rejections meanwhile must not break it."""
    from webapp.dataset import DatasetExport

    with app.app_context():
        export = DatasetExport("npz", chunk_rows=3)
        chunks = iter(export)
        first = next(chunks)
        add_drawing(status="confirmed", label=3, confirmed_at=START - timedelta(days=1), seed=300)
        first_row = db.session.get(Drawing, dataset[0]["id"])
        first_row.status, first_row.confirmed_at = "rejected", None
        db.session.get(Drawing, dataset[1]["id"]).label = (dataset[1]["label"] + 1) % 10
        db.session.commit()
        data = first + b"".join(chunks)
    check_npz(data, dataset)


def test_an_empty_dataset_exports_empty_arrays(app, client, admin_token):
    response = client.get(EXPORT, headers=admin_token)  # npz by default
    assert response.status_code == 200 and response.headers["X-Dataset-Rows"] == "0"
    check_npz(response.data, [])
    response = client.get(f"{EXPORT}?format=zip", headers=admin_token)
    check_image_folder(response.data, [])


def test_stored_pixels_are_exported_white_on_black_like_mnist(app, client, admin_token, canvas_drawings):
    """Real contributions (dark ink on a light canvas) come out as MNIST does: a bright digit on black."""
    for drawing in canvas_drawings[:3]:
        response = client.post("/api/v1/drawings", json={"image": drawing.data_url, "label": drawing.label})
        assert response.status_code == 201
        review = client.post(f"/api/v1/drawings/{response.json['id']}/review", json={"status": "confirmed"},
                             headers=admin_token)
        assert review.status_code == 200
    response = client.get(f"{EXPORT}?format=zip", headers=admin_token)
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        pngs = [name for name in archive.namelist() if name.endswith(".png")]
        assert len(pngs) == 3
        for name in pngs:
            pixels = np.asarray(Image.open(io.BytesIO(archive.read(name))))
            assert pixels[0].max() == pixels[-1].max() == pixels[:, 0].max() == pixels[:, -1].max() == 0
            assert pixels.max() == 255


def test_export_needs_an_admin(app, client, dataset):
    assert client.get(EXPORT).status_code == 401
    response = client.get(EXPORT, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401 and "error" in response.json
    with app.app_context():
        from webapp.cli import hash_token

        db.session.add(ApiToken(user=User(username="visitor", password_hash="-", is_admin=False),
                                token_sha256=hash_token("visitor-token")))
        db.session.commit()
    assert client.get(EXPORT, headers={"Authorization": "Bearer visitor-token"}).status_code == 403


def test_a_bad_format_is_a_400(client, admin_token):
    response = client.get(f"{EXPORT}?format=csv", headers=admin_token)
    assert response.status_code == 400
    assert response.json["code"] == "invalid_format" and "npz" in response.json["error"]
