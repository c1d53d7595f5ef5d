"""The bottom layer of the SavedModel side: the prediction contract and running an export through
both of TensorFlow's loaders. `convert` and `check_deployed_model` build on it; it imports neither."""

import os

# TensorFlow's C++ start-up chatter hides the reports the tools above print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
