"""Inkling's model library: MNIST, preprocessing, networks, training and ONNX serving.

Plain Python: it knows nothing of Flask or Celery, and importing it (or its
serving modules) never imports TensorFlow.
"""

import os
from pathlib import Path

IMAGE_SIZE = 28
NUM_CLASSES = 10
MODEL_NAMES = ("fnn", "cnn")

DEFAULT_INSTANCE = Path(__file__).resolve().parent.parent / "instance"


def instance_path(environ=os.environ) -> Path:
    """Local state (SQLite, local objects, cached MNIST, trained models): INKLING_INSTANCE_PATH,
    read here and nowhere else, by default the checkout's instance/ whatever the working folder."""
    return Path(environ.get("INKLING_INSTANCE_PATH") or DEFAULT_INSTANCE).resolve()
