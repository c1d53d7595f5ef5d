"""Score a checkpoint or an exported SavedModel on a class-per-folder data set.

    python -m check_deployed_model.evaluate --checkpoint RUN/model.pt --data-dir DIR [--output-dir OUT]
    python -m check_deployed_model.evaluate --model-dir EXPORT --data-dir DIR [--output-dir OUT]

Prints accuracy, per-class precision/recall and the confusion matrix; writes OUT/report.json,
OUT/confusion.png and OUT/misclassified.png (a contact sheet of the mistakes) so that a
person can look at what went wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from serving.saved_model import SavedModelPredictor
from torch_trainer.data import DatasetError, MugDataset
from torch_trainer.model import class_probabilities, load_checkpoint
from torch_trainer.report import classification_report, contact_sheet, format_classification_report, plot_confusion


def predict_checkpoint(checkpoint: str | Path, data_dir: str | Path, batch_size: int = 256
                       ) -> tuple[MugDataset, np.ndarray]:
    """The labelled images of `data_dir`, loaded at the checkpoint's input size as it was trained,
    and the checkpoint's class predictions on them."""
    model, meta = load_checkpoint(checkpoint)
    data = MugDataset(data_dir, meta["input_size"], progress=True)
    return data, class_probabilities(model, data.images, batch_size).argmax(1)


def predict_savedmodel(model_dir: str | Path, data: MugDataset, batch_size: int = 64) -> np.ndarray:
    """Class predictions of an exported SavedModel on the original image files' bytes."""
    predictor = SavedModelPredictor(model_dir, "graph")
    return predictor.predict([p.read_bytes() for p in data.paths], batch_size)["CLASSES"]


def write_report(data: MugDataset, preds: np.ndarray, output_dir: Path | None, max_sheet: int = 100) -> dict:
    """Report of `preds` against `data`'s labels; with `output_dir`, JSON and the two PNGs too."""
    targets = data.targets.numpy()
    report = classification_report(preds, targets, data.class_names)
    wrong = np.flatnonzero(preds != targets)
    report["misclassified"] = [{"path": str(data.paths[i]), "true": int(targets[i]), "predicted": int(preds[i])}
                               for i in wrong]
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "report.json").write_text(json.dumps(report, indent=2))
        plot_confusion(report, output_dir / "confusion.png")
        shown = wrong[:max_sheet]
        contact_sheet([data.images[i].permute(1, 2, 0).numpy() for i in shown],
                      [f"{data.paths[i].parent.name}/{data.paths[i].name}\n-> {data.class_names[preds[i]]}"
                       for i in shown], output_dir / "misclassified.png")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="RUN/model.pt")
    model.add_argument("--model-dir", help="exported SavedModel (scored through serving_default on the files' bytes)")
    parser.add_argument("--data-dir", required=True, help="class-per-folder images with known labels")
    parser.add_argument("--output-dir", help="where report.json, confusion.png and misclassified.png go")
    args = parser.parse_args(argv)
    try:
        if args.checkpoint:
            data, preds = predict_checkpoint(args.checkpoint, args.data_dir)
        else:
            data = MugDataset(args.data_dir, progress=True)
            preds = predict_savedmodel(args.model_dir, data)
    except (DatasetError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = write_report(data, preds, Path(args.output_dir) if args.output_dir else None)
    print(format_classification_report(report))
    if args.output_dir:
        print(f"wrote {args.output_dir}/report.json, confusion.png, misclassified.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
