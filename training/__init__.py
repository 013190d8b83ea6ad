"""Inkling's model library: MNIST, preprocessing, networks, training and ONNX serving.

Plain Python: it knows nothing of Flask or Celery, and importing it (or its
serving modules) never imports TensorFlow.
"""

IMAGE_SIZE = 28
NUM_CLASSES = 10
MODEL_NAMES = ("fnn", "cnn")
