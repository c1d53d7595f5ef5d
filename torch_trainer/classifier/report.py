"""Accuracy, per-class precision/recall and the confusion matrix of a set of predictions, as text
and as pictures; a checkpoint scored on labelled class folders (`evaluate_checkpoint`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, confusion_matrix, precision_recall_fscore_support

from torch_trainer.classifier.network import class_probabilities, load_checkpoint
from torch_trainer.classifier.photos import MugDataset


def classification_report(preds: Sequence[int], targets: Sequence[int], class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows: true class, columns: predicted) and per-class scores, as
    JSON-ready values (scikit-learn counts; a class never predicted has precision 0)."""
    if len(targets) == 0:
        raise ValueError("no predictions to score")
    labels = list(range(len(class_names)))
    confusion = confusion_matrix(targets, preds, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(targets, preds, labels=labels, zero_division=0)
    per_class = {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
                 for name, p, r, f, n in zip(class_names, precision, recall, f1, support)}
    return {"accuracy": float(accuracy_score(targets, preds)), "confusion": confusion.tolist(),
            "per_class": per_class, "images": int(len(targets))}


def format_classification_report(report: dict[str, Any]) -> str:
    """The report as text: accuracy, a per-class table and the confusion matrix (scikit-learn's
    text report has no confusion matrix and needs the predictions, which a stored report lacks)."""
    names = list(report["per_class"])
    width = max(12, *(len(n) for n in names))
    lines = [f"accuracy {report['accuracy']:.4f} on {report['images']} images", "",
             f"{'class':{width}s} precision  recall  f1      support"]
    for name, s in report["per_class"].items():
        lines.append(f"{name:{width}s} {s['precision']:9.4f}  {s['recall']:6.4f}  {s['f1']:6.4f}  {s['support']:7d}")
    lines += ["", "confusion (rows: true, columns: predicted)",
              " " * width + "".join(f"{i:>7d}" for i in range(len(names)))]
    for name, row in zip(names, report["confusion"]):
        lines.append(f"{name:{width}s}" + "".join(f"{v:7d}" for v in row))
    return "\n".join(lines)


def plot_confusion(report: dict, path: Path, title: str = "") -> None:
    """The confusion matrix as a labelled heat map (PNG)."""
    import matplotlib  # deferred: training never draws; the Agg backend must be set before pyplot
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ConfusionMatrixDisplay(np.array(report["confusion"]), display_labels=list(report["per_class"])).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=30)
    ax.set_title(title or f"accuracy {report['accuracy']:.4f} on {report['images']} images")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def contact_sheet(images: Sequence[np.ndarray], captions: Sequence[str], path: Path, columns: int = 10) -> None:
    """A grid of HWC uint8 images with a caption under each (PNG); says so when there are none."""
    import matplotlib  # deferred, as in plot_confusion
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image)
        ax.set_title(caption, fontsize=7)
    if not images:
        axes[0, 0].text(0, 0.5, "no misclassified images", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def score_predictions(data: Any, preds: np.ndarray, output_dir: str | Path | None = None,
                      max_sheet: int = 100) -> dict[str, Any]:
    """`classification_report` of `preds` against a `MugDataset`'s labels, with the misclassified
    files listed; with `output_dir`, also report.json, confusion.png and misclassified.png (a contact
    sheet of the mistakes, so that a person can look at what went wrong)."""
    targets = data.targets.numpy()
    report = classification_report(preds, targets, data.class_names)
    wrong = np.flatnonzero(preds != targets)
    report["misclassified"] = [{"path": str(data.paths[i]), "true": int(targets[i]), "predicted": int(preds[i])}
                               for i in wrong]
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "report.json").write_text(json.dumps(report, indent=2))
        plot_confusion(report, output_dir / "confusion.png")
        shown = wrong[:max_sheet]
        contact_sheet([data.images[i].permute(1, 2, 0).numpy() for i in shown],
                      [f"{data.paths[i].parent.name}/{data.paths[i].name}\n-> {data.class_names[preds[i]]}"
                       for i in shown], output_dir / "misclassified.png")
    return report


def evaluate_checkpoint(checkpoint: str | os.PathLike, data_dir: str | os.PathLike,
                        output_dir: str | os.PathLike | None = None, batch_size: int = 256) -> dict[str, Any]:
    """Score a checkpoint on labelled class folders, the images loaded at its input size as it was
    trained; returns `score_predictions`' report (with `output_dir`, also its JSON and pictures)."""
    model, meta = load_checkpoint(checkpoint)
    data = MugDataset(data_dir, meta["input_size"], progress=True)
    preds = class_probabilities(model, data.images, batch_size).argmax(1)
    return score_predictions(data, preds, output_dir)
