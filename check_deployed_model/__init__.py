"""The exported model in use: request files (make_request), the request and reply shapes (protocol),
predictions from a SavedModel here or from an endpoint with gcloud's table (predict, cloud), a local
prediction server (local_server on server/), scoring on labelled folders, clean and under capture
shifts (evaluate, robustness on scoring/) and Vertex AI deployment (deploy on vertex_ai). TensorFlow
comes in through `serving`, whose package quiets its start-up chatter."""
