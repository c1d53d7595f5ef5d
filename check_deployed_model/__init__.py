"""The exported model in use: request files (make_request), predictions locally or from an endpoint
with gcloud's table (predict, client), a local prediction server (serve) and Vertex AI deployment
(deploy)."""

import os

# TensorFlow's C++ start-up chatter hides the reports these tools print.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
