"""The exported model in use: request files (make_request), the request and reply shapes (protocol),
predictions locally or from an endpoint with gcloud's table (predict, cloud), a local prediction
server (serve), scoring on labelled folders (evaluate) and Vertex AI deployment (deploy). TensorFlow
comes in through `serving`, whose package quiets its start-up chatter."""
