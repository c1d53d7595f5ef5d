"""Send requests to the exported model, locally or deployed, and print gcloud's table."""
