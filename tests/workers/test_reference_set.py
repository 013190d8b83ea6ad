"""The gate's reference set in a worker: built once per deployment into the object store, read
from there, kept per process, and built again only when its generator's version changes."""

from __future__ import annotations

import numpy as np
import pytest

import training.reference as reference_module
from training.reference import from_bytes, generator_version, reference_key, to_bytes
from training.writers import FontsMissing
from webapp.storage import get_store


def fake_set(version: str, size: int = 30) -> dict:
    rng = np.random.default_rng(len(version))
    return {"x": rng.integers(0, 256, (size, 28, 28), dtype=np.uint8), "y": np.arange(size, dtype=np.uint8) % 10,
            "source": np.array(["canvas"] * size), "version": np.array(version)}


@pytest.fixture
def worker(app, monkeypatch):
    """The worker's loader with a fresh process cache, a store without reference sets, and a
    build that counts its calls instead of rendering for a minute."""
    import workers.reference_set as reference_set

    monkeypatch.setattr(reference_set, "_loaded", {})
    builds = []

    def build(*, x_test, y_test):
        builds.append(reference_module.generator_version())
        return fake_set(reference_module.generator_version())

    monkeypatch.setattr(reference_module, "build", build)
    app.config["REFERENCE_BUILD"] = True

    def clear():
        with app.app_context():
            for stored in list(get_store().list("reference/")):
                get_store().delete(stored.key)

    clear()
    yield reference_set, builds
    clear()


def test_built_once_stored_under_its_version_and_then_read_from_the_process(app, worker, mnist, monkeypatch):
    reference_set, builds = worker
    with app.app_context():
        first = reference_set.load_reference(mnist)
        key = reference_key(generator_version())
        assert builds == [generator_version()] and get_store().exists(key)
        assert from_bytes(get_store().get(key))["version"] == generator_version()
        assert len(first) == 30

        def no_store():
            raise AssertionError("the store was asked again")

        monkeypatch.setattr(reference_set, "get_store", no_store)
        assert reference_set.load_reference(mnist) is first and builds == [generator_version()]


def test_a_stored_set_is_read_not_rebuilt_by_a_new_process(app, worker, mnist):
    reference_set, builds = worker
    with app.app_context():
        get_store().put(reference_key(generator_version()), to_bytes(fake_set(generator_version(), size=40)),
                        content_type="application/octet-stream")
        assert len(reference_set.load_reference(mnist)) == 40 and builds == []


def test_a_new_generator_version_builds_a_new_set(app, worker, mnist, monkeypatch):
    reference_set, builds = worker
    with app.app_context():
        reference_set.load_reference(mnist)
        monkeypatch.setattr(reference_module, "generator_version", lambda: "0123456789abcdef")
        reference_set.load_reference(mnist)
        assert builds[-1] == "0123456789abcdef" and len(builds) == 2
        assert get_store().exists(reference_key("0123456789abcdef"))


def test_without_fonts_the_newest_stored_set_judges_else_none(app, worker, mnist, monkeypatch):
    reference_set, builds = worker

    def no_fonts(**kwargs):
        raise FontsMissing("install the font packages fonts-kristi")

    monkeypatch.setattr(reference_module, "build", no_fonts)
    with app.app_context():
        assert len(reference_set.load_reference(mnist)) == 0  # nothing stored: MNIST and the holdout judge
        get_store().put(reference_key("00000000000000aa"), to_bytes(fake_set("old", size=25)),
                        content_type="application/octet-stream")
        assert len(reference_set.load_reference(mnist)) == 25
        # A stale set is not kept in the process: an upload of the current one is read next time.
        get_store().put(reference_key(generator_version()), to_bytes(fake_set(generator_version(), size=35)),
                        content_type="application/octet-stream")
        assert len(reference_set.load_reference(mnist)) == 35


def test_an_unreadable_stored_set_is_built_again(app, worker, mnist):
    reference_set, builds = worker
    with app.app_context():
        get_store().put(reference_key(generator_version()), b"not an npz", content_type="application/octet-stream")
        assert len(reference_set.load_reference(mnist)) == 30 and len(builds) == 1
        assert from_bytes(get_store().get(reference_key(generator_version())))["version"] == generator_version()


def test_upload_stores_a_current_set_and_refuses_one_from_other_code(app, worker, runner, tmp_path):
    current, other = tmp_path / "current.npz", tmp_path / "other.npz"
    current.write_bytes(to_bytes(fake_set(generator_version())))
    other.write_bytes(to_bytes(fake_set("ffffffffffffffff")))
    refused = runner.invoke(args=["reference", "upload", str(other)])
    assert refused.exit_code != 0 and "built by other code" in refused.output
    stored = runner.invoke(args=["reference", "upload", str(current)])
    assert stored.exit_code == 0, stored.output
    with app.app_context():
        assert [entry.key for entry in get_store().list("reference/")] == [reference_key(generator_version())]
