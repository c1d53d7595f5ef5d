"""Send requests to the exported model, locally or deployed, and print gcloud's table."""

import os

# TensorFlow's C++ start-up chatter hides the reports these tools print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
