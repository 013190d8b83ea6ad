"""The instance folder: INKLING_INSTANCE_PATH is read in one place, with one default."""

from __future__ import annotations

from pathlib import Path


def test_training_and_the_app_agree_on_the_instance_folder_whatever_the_working_folder(tmp_path, monkeypatch):
    from training.mnist import default_cache_path
    from training.versions import default_models_root
    from webapp.config import from_environment

    monkeypatch.delenv("INKLING_INSTANCE_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    instance = Path(from_environment({})["INSTANCE_PATH"])
    assert instance.is_absolute() and instance == Path(__file__).resolve().parents[2] / "instance"
    assert default_cache_path() == instance / "data" / "mnist.npz"
    assert default_models_root() == instance / "models"

    monkeypatch.setenv("INKLING_INSTANCE_PATH", str(tmp_path / "elsewhere"))
    assert Path(from_environment()["INSTANCE_PATH"]) == tmp_path / "elsewhere"
    assert default_cache_path() == tmp_path / "elsewhere" / "data" / "mnist.npz"
    assert default_models_root() == tmp_path / "elsewhere" / "models"
