"""The writers benchmark: seeded, made of real digits only, split by family, read by the networks."""

from __future__ import annotations

import ast
import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from training import writer_set, writers
from training.predictor import Predictor
from training.preprocess import preprocess
from training.scoring import Scores, score

TRAINING = Path(writers.__file__).resolve().parent


def _writer(name: str) -> writers.Writer:
    return next(w for w in writers.writers() if w.name == name)


def _image(data_url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_every_listed_font_is_installed():
    # CI installs them; a missing package must fail here, not quietly shrink the benchmark.
    assert len(writers.font_files()) == len(writers.FONTS)
    assert len(writers.writers()) >= 14


def test_missing_fonts_are_an_error_naming_the_packages(tmp_path):
    with pytest.raises(writers.FontsMissing, match="fonts-kristi"):
        writers.writers(root=tmp_path)


def test_same_seed_same_bytes_other_seed_other_drawings():
    writer = _writer("rufscript010")
    first = writers.writer_drawings(writer, seed=3, clean_per_digit=2, messy_per_digit=1)
    second = writers.writer_drawings(writer, seed=3, clean_per_digit=2, messy_per_digit=1)
    other = writers.writer_drawings(writer, seed=4, clean_per_digit=2, messy_per_digit=1)
    assert [d.data_url for d in first] == [d.data_url for d in second]
    assert [d.data_url for d in first] != [d.data_url for d in other]
    # Seeded per writer: another writer's presence changes nothing here.
    assert len(first) == 10 * (2 + len(writers.MESSY_VARIANTS))


def test_drawings_are_canvas_uploads_of_their_digit():
    drawings = writers.writer_drawings(_writer("kiloji_b"), seed=0, clean_per_digit=3, messy_per_digit=1)
    assert [d.label for d in drawings[:3]] == [0, 0, 0]
    assert {d.variant for d in drawings} == set(writers.CLEAN_STYLES) | set(writers.MESSY_VARIANTS)
    for drawing in drawings:
        image = _image(drawing.data_url)
        if drawing.variant in writers.CLEAN_STYLES:
            assert image.size == writers.CANVAS
        assert image.format == ("JPEG" if drawing.variant == "jpeg" else "PNG")
        assert preprocess(drawing.data_url).pixels.max() >= 200
    transparent = next(d for d in drawings if d.variant == "transparent")
    assert np.asarray(_image(transparent.data_url).convert("RGBA"))[..., 3].min() == 0
    inverted = next(d for d in drawings if d.variant == "inverted")
    assert np.median(np.asarray(_image(inverted.data_url).convert("L"))) == 0


def test_a_font_without_digits_is_left_out():
    skipped = writers.skipped()
    assert "blank" in skipped["setofont-ex.ttf"]
    assert "setofont-ex" not in {w.name for w in writers.writers()}
    assert "setofont" in {w.name for w in writers.writers()}


def test_a_font_whose_digits_are_another_files_is_counted_once():
    assert "kouzan-mouhitsu" in writers.skipped()["KouzanBrushFontSousyo.ttf"]
    assert "kouzanbrushfontsousyo" not in {w.name for w in writers.writers()}


def test_notdef_boxes_and_hollow_outlines_are_detected():
    real = list(writers._raw_glyphs(_writer("kiloji_b").path))
    assert writers.glyph_problem(real) is None
    # Ten copies of one box: what a font without digits draws for each.
    box = np.zeros((60, 40), np.float32)
    box[5:55, 5:35] = 1
    box[8:52, 8:32] = 0
    assert "notdef" in writers.glyph_problem([box] * 10)
    # The same digits as outlines: each glyph minus its inside.
    hollow = []
    for glyph in real:
        grey = Image.fromarray((glyph * 255).astype(np.uint8))
        inside = np.asarray(grey.filter(ImageFilter.MinFilter(9)), np.float32) / 255
        hollow.append(np.clip(glyph - inside, 0, 1))
    assert "hollow" in writers.glyph_problem(hollow)


def test_no_shipped_writer_is_hollow_or_blank():
    assert {w.path.name for w in writers.writers()}.isdisjoint(writers.skipped())
    assert all(writers.unusable(w.path) is None for w in writers.writers())


def test_groups_split_families_never_a_family():
    families = {family for _, _, family in writers.FONTS}
    listed = [family for group in writers.GROUPS.values() for family in group]
    assert sorted(listed) == sorted(families), "every family in exactly one group"
    group_of_family: dict[str, set[str]] = {}
    for writer in writers.writers():
        group_of_family.setdefault(writer.family, set()).add(writer.group)
    assert all(len(groups) == 1 for groups in group_of_family.values()), group_of_family
    assert {w.group for w in writers.writers()} == {"teach", "reference", "exam"}
    # Sibling weights and the one calligrapher's fonts are one family.
    assert {w.family for w in writers.writers() if w.name.startswith("kiloji")} == {"kiloji"}
    assert {w.family for w in writers.writers()
            if w.name.startswith(("kouzan", "aoyagi"))} == {"kouzan"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_base_training_never_reaches_the_fonts():
    font_modules = {"training.writers", "training.writer_set"}
    for start in ("train", "augment", "networks", "finetune", "mnist"):
        seen, todo = set(), [f"training.{start}"]
        while todo:
            module = todo.pop()
            path = TRAINING / (module.split(".", 1)[1] + ".py")
            if module in seen or not path.is_file():
                continue
            seen.add(module)
            todo += [name for name in _imports(path) if name.startswith("training.")]
        assert not seen & font_modules, f"training.{start} reaches {seen & font_modules}"


def test_the_set_is_cached_and_keyed_by_seed(tmp_path):
    chosen = [_writer("setofont")]
    first = writer_set.load(chosen, seed=1, clean_per_digit=1, messy_per_digit=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("writers-*.npz"))) == 1
    again = writer_set.load(chosen, seed=1, clean_per_digit=1, messy_per_digit=0, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.pixels, again.pixels)
    assert list(again.writers) == ["setofont"] * 10 and list(again.labels) == list(range(10))
    writer_set.load(chosen, seed=2, clean_per_digit=1, messy_per_digit=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("writers-*.npz"))) == 2
    assert not list(tmp_path.glob("*.partial*"))


def test_scores_find_the_commonest_confusion():
    scores = Scores(np.array([1, 1, 1, 7, 7, 3]), np.array([7, 7, 1, 1, 7, 3]))
    assert scores.worst_confusion() == (1, 7, 2)
    assert scores.accuracy() == pytest.approx(0.5)
    assert scores.by(np.array(["a", "a", "a", "b", "b", "b"])) == pytest.approx({"a": 1 / 3, "b": 2 / 3})


@pytest.mark.slow
def test_the_networks_read_a_plain_writer(tiny_models):
    # The tiny networks (3,000 MNIST digits, two epochs) on a writer near MNIST's style:
    # well above chance (10 %) if fonts reach the networks as uploads do.
    root, _ = tiny_models
    data = writer_set.build([_writer("setofont")], seed=0, clean_per_digit=4, messy_per_digit=0)
    predictor = Predictor.from_directory(root)
    accuracy = {name: score(model, data.pixels, data.labels).accuracy()
                for name, model in predictor.models.items()}
    assert accuracy["cnn"] >= 0.6 and accuracy["fnn"] >= 0.5, accuracy


def test_ci_installs_every_font_package_and_no_other():
    ci = (TRAINING.parent / ".ci" / "run").read_text()
    listed = ci.split('FONT_PACKAGES="', 1)[1].split('"', 1)[0].split()
    assert sorted(listed) == sorted(writers.PACKAGES)


def test_hairlines_are_drawn_with_a_pen_not_faded_out():
    # Ecolier's 0 has a hairline side; shrunk and bent without a pen width, it faded and the
    # 0 reached the networks as an open "(".
    drawings = writers.writer_drawings(_writer("ecolier-court"), seed=0, clean_per_digit=12, messy_per_digit=0)
    for drawing in (d for d in drawings if d.label == 0):
        pixels = preprocess(drawing.data_url).pixels
        assert writers._enclosed_fraction(pixels > 64) > 0.2, drawing.variant


@pytest.mark.slow
def test_bench_prints_every_writer_and_the_worst(tiny_models, tmp_path):
    root, _ = tiny_models
    env = dict(os.environ, INKLING_INSTANCE_PATH=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "bench.writers", "--models", str(root), "--clean", "1", "--messy", "0"],
        capture_output=True, text=True, env=env, timeout=600, check=False, cwd=TRAINING.parent,
    )
    assert result.returncode == 0, result.stderr
    for writer in writers.writers():
        assert f"\n  {writer.name} " in result.stdout
    assert "left out: setofont-ex.ttf" in result.stdout
    assert result.stdout.count("worst writer (clean)") == 2
    assert list((tmp_path / "data").glob("writers-*.npz")), "the drawings are cached under the instance"
