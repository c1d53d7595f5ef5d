"""Accuracy, per-class precision/recall and the confusion matrix of a set of predictions."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_report(preds: Sequence[int], targets: Sequence[int], class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows: true class, columns: predicted) and per-class scores."""
    preds, targets = np.asarray(preds), np.asarray(targets)
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (targets, preds), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        tp, predicted, actual = confusion[i, i], confusion[:, i].sum(), confusion[i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(actual)}
    return {"accuracy": float((preds == targets).mean()) if len(targets) else 0.0,
            "confusion": confusion.tolist(), "per_class": per_class, "images": int(len(targets))}


def format_report(report: dict[str, Any]) -> str:
    """The report as text: accuracy, a per-class table and the confusion matrix."""
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
