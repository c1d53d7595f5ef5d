"""Export a trained checkpoint: PyTorch -> ONNX -> onnx-tf -> frozen TensorFlow SavedModel."""

# serving sets TensorFlow's log level (its C++ start-up chatter hides the reports these tools print)
# before anything here loads TensorFlow
import serving  # noqa: F401
