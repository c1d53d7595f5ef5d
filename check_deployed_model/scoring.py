"""Scoring an exported SavedModel on labelled class folders through `serving_default`, on the image
files' own bytes as a client sends them (the job behind `check_deployed_model.evaluate --model-dir`;
a checkpoint is scored by `torch_trainer.jobs.evaluate_checkpoint`)."""

from __future__ import annotations

import os
from typing import Any

from serving.saved_model import SavedModelPredictor
from torch_trainer.data import MugDataset
from torch_trainer.report import score_predictions


def evaluate_savedmodel(model_dir: str | os.PathLike, data_dir: str | os.PathLike,
                        output_dir: str | os.PathLike | None = None, batch_size: int = 64) -> dict[str, Any]:
    """`score_predictions`' report of the SavedModel's CLASSES on `data_dir` (with `output_dir`, also
    its JSON and pictures)."""
    predictor = SavedModelPredictor(model_dir, "graph")
    data = MugDataset(data_dir, progress=True)
    preds = predictor.predict([p.read_bytes() for p in data.paths], batch_size)["CLASSES"]
    return score_predictions(data, preds, output_dir)
