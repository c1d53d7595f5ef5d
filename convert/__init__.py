"""Export a trained checkpoint: PyTorch -> ONNX -> onnx-tf -> frozen TensorFlow SavedModel."""
