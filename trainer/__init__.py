"""The challenge's gcloud entry points: `trainer.task` (train + evaluate), `trainer.final_task` (train + export)."""
