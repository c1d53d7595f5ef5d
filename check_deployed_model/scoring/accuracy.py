"""Scoring on labelled class folders: an exported SavedModel through `serving_default` on the image
files' own bytes as a client sends them (the job behind `check_deployed_model.evaluate --model-dir`;
a checkpoint is scored by `torch_trainer.classifier.report.evaluate_checkpoint`), and a checkpoint or an export
under capture shifts (`shift_report`, the job behind `check_deployed_model.robustness`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from check_deployed_model.scoring.shifts import Shift, shifted_jpeg
from mug_errors import OutputExists, SettingsError
from serving.contract import CLASSES, PROBABILITIES
from serving.saved_model import SavedModelPredictor
from torch_trainer.classifier.photos import MugDataset, load_images
from torch_trainer.classifier.network import Ensemble, class_probabilities, load_checkpoint
from torch_trainer.classifier.report import classification_report, contact_sheet, score_predictions


def evaluate_savedmodel(model_dir: str | os.PathLike, data_dir: str | os.PathLike,
                        output_dir: str | os.PathLike | None = None, batch_size: int = 64) -> dict[str, Any]:
    """`score_predictions`' report of the SavedModel's CLASSES on `data_dir` (with `output_dir`, also
    its JSON and pictures)."""
    predictor = SavedModelPredictor(model_dir)
    data = MugDataset(data_dir, progress=True)
    preds = predictor.predict([p.read_bytes() for p in data.paths], batch_size)[CLASSES]
    return score_predictions(data, preds, output_dir)


Predict = Callable[[list[bytes]], np.ndarray]
WHOLE = "ensemble"  # the served model's key among an ensemble's parts


def bytes_predictor(checkpoint: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None,
                    batch_size: int = 64) -> Predict:
    """Class probabilities [N, C] of encoded photos: a checkpoint's (decoded and resized as training
    loads photos, then PyTorch), or an export's through `serving_default` (the graph-mode loader,
    as the hosted service), given exactly one of them."""
    if (checkpoint is None) == (model_dir is None):
        raise SettingsError("give a checkpoint or an exported model, not both or neither")
    if model_dir is not None:
        predictor = SavedModelPredictor(model_dir)
        return lambda blobs: predictor.predict(blobs, batch_size)[PROBABILITIES]
    model, meta = load_checkpoint(checkpoint)
    # channels-last: the Lite0s' depthwise convolutions run 1.6x as fast on the CPU, to within 2e-7
    model = model.to(memory_format=torch.channels_last)
    return lambda blobs: class_probabilities(model, load_images(blobs, meta["input_size"]).contiguous(
        memory_format=torch.channels_last), batch_size)


def ensemble_parts(model: torch.nn.Module, families: list[str] | None = None) -> dict[str, torch.nn.Module]:
    """An ensemble's parts, to be scored apart: each family (its name from `families`, else memberI)
    and each classifier in it (FAMILY/memberJ); nothing for a single classifier."""
    if not isinstance(model, Ensemble):
        return {}
    names = families if families and len(families) == len(model.members) else \
        [f"member{i}" for i in range(len(model.members))]
    parts = {}
    for name, member in zip(names, model.members):
        parts[name] = member
        if isinstance(member, Ensemble) and len(member.members) > 1:
            parts.update({f"{name}/member{j}": leaf for j, leaf in enumerate(member.members)})
    return parts


def parts_predictor(checkpoint: str | os.PathLike, batch_size: int = 64) -> Callable[[list[bytes]], dict[str, np.ndarray]]:
    """Class probabilities of a checkpoint's ensemble (WHOLE) and of each of its families and members
    (`ensemble_parts`) on encoded photos, decoded once for all of them."""
    model, meta = load_checkpoint(checkpoint)
    model = model.to(memory_format=torch.channels_last)
    parts = {WHOLE: model, **ensemble_parts(model, meta.get("families"))}
    if len(parts) == 1:
        raise SettingsError(f"--parts: {checkpoint} is one classifier, not an ensemble")

    def predict(blobs: list[bytes]) -> dict[str, np.ndarray]:
        images = load_images(blobs, meta["input_size"]).contiguous(memory_format=torch.channels_last)
        return {name: class_probabilities(part, images, batch_size) for name, part in parts.items()}
    return predict


def shift_report(predict: Predict | Callable[[list[bytes]], dict[str, np.ndarray]], data_dir: str | os.PathLike,
                 shifts: list[tuple[Shift, tuple[float, ...]]],
                 output_dir: str | os.PathLike, overwrite: bool = False, sheet_per_shift: int = 6,
                 data_name: str | None = None) -> dict[str, Any]:
    """Accuracy and confusion of `predict` on the labelled photos of `data_dir` under each shift at
    each strength (`parse_shifts`), with a summary: clean accuracy, each shift's mean over its
    strengths, their mean and the worst shift. Writes OUT/robustness.json, robustness.md (the table),
    accuracy.png (accuracy against strength) and mistakes.png (the mistakes at each shift's strongest
    strength); OUT is built beside itself and moved into place only when complete, and an existing
    one is replaced only with `overwrite`. `data_name` says what the photos are (default: `data_dir`).
    A `predict` that answers {part: probabilities} (`parts_predictor`) is scored as its WHOLE, with
    each part's accuracy beside it in every row and a summary for each part."""
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())) and not overwrite:
        raise OutputExists(f"{output_dir}: already exists; pass --overwrite to replace it or pick another --output-dir")
    data = MugDataset(data_dir, progress=True)
    photos = [path.read_bytes() for path in data.paths]
    targets = data.targets.numpy()
    rows, sheet, captions = [], [], []
    # strengths run mildest first: a shift's last is its strongest, whose mistakes the sheet shows
    conditions = [(shift, strength, strength == strengths[-1]) for shift, strengths in shifts for strength in strengths]
    for shift, strength, strongest in tqdm(conditions, desc="scoring shifts", unit="shift", leave=False):
        blobs = [shifted_jpeg(photo, shift, strength, seed=i) for i, photo in enumerate(photos)]
        answer = predict(blobs)
        parts = dict(answer) if isinstance(answer, dict) else {}
        preds = (parts.pop(WHOLE) if parts else answer).argmax(1)
        report = classification_report(preds, targets, data.class_names)
        rows.append({"shift": shift.name, "strength": strength, "unit": shift.unit,
                     "accuracy": report["accuracy"], "confusion": report["confusion"],
                     **({"parts": {name: float((p.argmax(1) == targets).mean()) for name, p in parts.items()}}
                        if parts else {})})
        if shift.name != "none" and strongest:
            for i in np.flatnonzero(preds != targets)[:sheet_per_shift]:
                sheet.append(load_images([blobs[i]], 64)[0].permute(1, 2, 0).numpy())
                captions.append(f"{shift.name} {strength:g}\n{data.class_names[targets[i]]}->"
                                f"{data.class_names[preds[i]]}")
    result = {"data_dir": data_name or str(data_dir), "images": len(photos), "class_names": data.class_names,
              "summary": summarize(rows), "rows": rows}
    if "parts" in rows[0]:
        result["parts"] = {name: summarize([dict(r, accuracy=r["parts"][name]) for r in rows])
                           for name in rows[0]["parts"]}
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        (staging / "robustness.json").write_text(json.dumps(result, indent=2))
        (staging / "robustness.md").write_text(format_shift_table(result) + "\n")
        plot_shifts(rows, staging / "accuracy.png")
        contact_sheet(sheet, captions, staging / "mistakes.png", columns=sheet_per_shift)
        if output_dir.exists():
            shutil.rmtree(output_dir) if output_dir.is_dir() else output_dir.unlink()
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Clean accuracy (shift "none"), each shift's mean accuracy over its strengths, the mean of
    those means (each shift weighs the same), the worst shift and the worst single condition."""
    means: dict[str, list[float]] = {}
    for row in rows:
        means.setdefault(row["shift"], []).append(row["accuracy"])
    shift_means = {name: float(np.mean(values)) for name, values in means.items() if name != "none"}
    worst_row = min((r for r in rows if r["shift"] != "none"), key=lambda r: r["accuracy"], default=None)
    return {"clean": means["none"][0], "shifts": shift_means,
            "mean_over_shifts": float(np.mean(list(shift_means.values()))) if shift_means else None,
            "worst_shift": min(shift_means, key=shift_means.get) if shift_means else None,
            "worst": {k: worst_row[k] for k in ("shift", "strength", "accuracy")} if worst_row else None}


def format_shift_table(result: dict[str, Any]) -> str:
    """The report as a Markdown table (shift, strength, accuracy, confusion rows true/columns
    predicted), the summary above it."""
    s = result["summary"]
    lines = [f"{result['images']} photos of {result['data_dir']}; clean (re-encoded) accuracy {s['clean']:.3f}"]
    if s["shifts"]:
        lines.append(f"mean over the shifts {s['mean_over_shifts']:.3f}; worst shift {s['worst_shift']} "
                     f"{s['shifts'][s['worst_shift']]:.3f}; worst condition {s['worst']['shift']} "
                     f"{s['worst']['strength']:g} {s['worst']['accuracy']:.3f}")
    if result.get("parts"):  # where each family and member fails: a shift's mean over its strengths
        names = list(s["shifts"])
        lines += ["", f"| part | clean | {' | '.join(names)} | mean | worst |", "|---|" + "---|" * (len(names) + 3)]
        for part, p in {WHOLE: s, **result["parts"]}.items():
            lines.append(f"| {part} | {p['clean']:.3f} | " + " | ".join(f"{p['shifts'][n]:.3f}" for n in names)
                         + (f" | {p['mean_over_shifts']:.3f} | {p['worst_shift']} |" if names else " | | |"))
    lines += ["", "| shift | strength | accuracy | confusion (rows true, columns predicted) |", "|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['shift']} | {row['strength']:g} {row['unit']} | {row['accuracy']:.3f} | "
                     f"{row['confusion']} |")
    return "\n".join(lines)


def plot_shifts(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against strength, one panel per shift, the clean accuracy dashed and chance dotted."""
    import matplotlib  # deferred: the Agg backend must be set before pyplot
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    clean = next(r["accuracy"] for r in rows if r["shift"] == "none")
    names = list(dict.fromkeys(r["shift"] for r in rows if r["shift"] != "none")) or ["none"]
    columns = min(4, len(names))
    fig, axes = plt.subplots(-(-len(names) // columns), columns, figsize=(3.2 * columns, 2.6 * -(-len(names) // columns)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        points = [(r["strength"], r["accuracy"]) for r in rows if r["shift"] == name]
        ax.axis("on")
        ax.plot(range(len(points)), [a for _, a in points], "o-")
        ax.set_xticks(range(len(points)), [f"{s:g}" for s, _ in points])
        ax.axhline(clean, ls="--", c="grey", lw=1)
        ax.axhline(0.25, ls=":", c="grey", lw=1)
        ax.set_ylim(0, 1.02)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(next(r["unit"] for r in rows if r["shift"] == name), fontsize=7)
    fig.suptitle(f"accuracy under capture shifts (dashed: clean {clean:.3f}, dotted: chance)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
