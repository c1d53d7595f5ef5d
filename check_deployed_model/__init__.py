"""The exported model in use: request files (make_request), predictions locally or from an endpoint
with gcloud's table (predict, client), a local prediction server (serve), scoring on labelled
folders (evaluate) and Vertex AI deployment (deploy). TensorFlow comes in through `serving`, whose
package quiets its start-up chatter."""
