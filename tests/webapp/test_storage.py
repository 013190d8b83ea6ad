"""Object storage: the local folder, and S3 over real HTTP against moto's server mode."""

from __future__ import annotations

import socket
import threading
import time

import boto3
import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import Drawing
from webapp.storage import LocalObjectStore, ObjectNotFound, S3ObjectStore, StorageUnavailable

from .conftest import make_app, serve

BUCKET = "inkling-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(monkeypatch_module):
    from moto.server import ThreadedMotoServer

    monkeypatch_module.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch_module.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def s3_config(endpoint: str, **overrides) -> dict:
    return {"S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": endpoint, "S3_REGION": "us-east-1", "S3_PREFIX": "",
            "S3_CONNECT_TIMEOUT": 1.0, "S3_READ_TIMEOUT": 1.0, "S3_MAX_ATTEMPTS": 1, **overrides}


@pytest.fixture
def s3_store(s3_endpoint):
    store = S3ObjectStore.from_config(s3_config(s3_endpoint, S3_PREFIX=f"t{time.monotonic_ns()}/"))
    return store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, s3_endpoint):
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    return S3ObjectStore.from_config(s3_config(s3_endpoint, S3_PREFIX=f"t{time.monotonic_ns()}/"))


def test_put_get_list_delete(store):
    store.check()
    store.put("drawings/ab/one.png", b"\x89PNG one", content_type="image/png")
    store.put("drawings/cd/two.png", b"two", content_type="image/png")
    store.put("models/cnn/v1/model.onnx", b"onnx", content_type="application/octet-stream")
    assert store.get("drawings/ab/one.png") == b"\x89PNG one"
    assert store.exists("drawings/cd/two.png") and not store.exists("drawings/none.png")
    assert sorted(obj.key for obj in store.list("drawings/")) == ["drawings/ab/one.png", "drawings/cd/two.png"]
    assert {obj.key: obj.size for obj in store.list("models/")} == {"models/cnn/v1/model.onnx": 4}
    store.delete("drawings/ab/one.png")
    with pytest.raises(ObjectNotFound):
        store.get("drawings/ab/one.png")
    store.delete("drawings/ab/one.png")  # deleting twice is fine


def test_put_many_writes_all_or_none(store, monkeypatch):
    objects = [(f"drawings/{index:02x}/{index}.png", b"png %d" % index, "image/png") for index in range(20)]
    store.put_many(objects[:10])
    assert all(store.get(key) == data for key, data, _ in objects[:10])
    if isinstance(store, LocalObjectStore):
        batch = objects[10:] + [objects[0]]  # new keys only: one already taken fails the batch
    else:
        batch, put = objects[10:], store.put

        def failing_put(key, data, *, content_type):
            if key == objects[15][0]:
                raise StorageUnavailable("S3 put failed: SlowDown")
            put(key, data, content_type=content_type)

        monkeypatch.setattr(store, "put", failing_put)
    with pytest.raises(StorageUnavailable):
        store.put_many(batch)
    assert sorted(obj.key for obj in store.list("drawings/")) == sorted(key for key, _, _ in objects[:10])
    assert store.get(objects[0][0]) == b"png 0"


@pytest.mark.parametrize("key", ["../escape.png", "/abs.png", "a//b", "a/../b", "", "sp ace.png"])
def test_keys_cannot_escape_or_be_odd(store, key):
    with pytest.raises(ValueError):
        store.put(key, b"x", content_type="image/png")


def test_unreachable_s3_fails_fast_with_storage_unavailable():
    store = S3ObjectStore.from_config(s3_config(f"http://127.0.0.1:{free_port()}"))
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        store.put("drawings/x.png", b"x", content_type="image/png")
    with pytest.raises(StorageUnavailable):
        store.check()
    assert time.monotonic() - started < 10


def test_s3_that_accepts_but_never_answers_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    stop = threading.Event()

    def accept_and_hang():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hang, daemon=True)
    thread.start()
    try:
        store = S3ObjectStore.from_config(s3_config(f"http://127.0.0.1:{listener.getsockname()[1]}"))
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            store.put("drawings/x.png", b"x", content_type="image/png")
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


@pytest.fixture
def s3_app(database_url, s3_endpoint, tmp_path, tiny_models):
    app = make_app(database_url, tmp_path / "unused", tmp_path,
                   **s3_config(s3_endpoint, S3_PREFIX=f"app{time.monotonic_ns()}/"))
    yield from serve(app, tiny_models[0])


def test_the_app_stores_drawings_and_models_in_s3(s3_app, canvas_drawings):
    client = s3_app.test_client()
    saved = client.post("/api/v1/drawings", json={"image": canvas_drawings[0].data_url, "label": 5})
    assert saved.status_code == 201
    predicted = client.post("/api/v1/predictions", json={"image": canvas_drawings[1].data_url})
    assert predicted.status_code == 200  # the models were loaded from S3
    image = client.get(f"/api/v1/drawings/{saved.json['id']}/image")
    assert image.status_code == 200 and image.data.startswith(b"\x89PNG")
    with s3_app.app_context():
        store = s3_app.extensions["inkling.store"]
        keys = {obj.key for obj in store.list("drawings/")}
        rows = {row.object_key for row in db.session.scalars(select(Drawing))}
        assert keys == rows and len(keys) == 2
    assert client.get("/healthz").status_code == 200


@pytest.mark.orphans  # the store is unreachable at the end, so it cannot be listed
def test_s3_going_down_mid_save_writes_no_row_and_predictions_keep_working(s3_app, canvas_drawings):
    client = s3_app.test_client()
    client.post("/api/v1/predictions", json={"image": canvas_drawings[0].data_url})  # models loaded
    store = s3_app.extensions["inkling.store"]
    store.client = S3ObjectStore.from_config(s3_config(f"http://127.0.0.1:{free_port()}")).client
    started = time.monotonic()
    response = client.post("/api/v1/drawings", json={"image": canvas_drawings[1].data_url, "label": 2})
    assert response.status_code == 503 and response.json["code"] == "storage_unavailable"
    assert time.monotonic() - started < 10
    with s3_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Drawing)) == 1
    assert client.get("/healthz").status_code == 503
    # Predictions still answer (unstored, so without an id to rate), and quickly after the first.
    first = client.post("/api/v1/predictions", json={"image": canvas_drawings[2].data_url})
    assert first.status_code == 200 and first.json["id"] is None
    started = time.monotonic()
    second = client.post("/api/v1/predictions", json={"image": canvas_drawings[3].data_url})
    assert second.status_code == 200 and time.monotonic() - started < 1


def test_local_store_writes_again_after_its_folder_was_removed(tmp_path):
    import shutil

    from webapp.storage import LocalObjectStore

    store = LocalObjectStore(tmp_path / "objects")
    store.put("drawings/ab/one.png", b"1", content_type="image/png")
    shutil.rmtree(tmp_path / "objects" / "drawings")  # the folder it remembers making is gone
    store.put("drawings/ab/two.png", b"2", content_type="image/png")
    assert store.get("drawings/ab/two.png") == b"2" and not store.exists("drawings/ab/one.png")
