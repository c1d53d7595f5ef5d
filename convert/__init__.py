"""Export a trained checkpoint: PyTorch -> ONNX -> onnx-tf -> frozen TensorFlow SavedModel."""

import os

# TensorFlow's C++ start-up chatter hides the reports these tools print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
