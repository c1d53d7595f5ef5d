"""Cross-scene validation: leave one photo shoot out, so that validation images show unseen scenes
(`validate`, the job behind `torch_trainer.validate`), and the accuracy of ensembles of its runs
(`score_report`, behind `torch_trainer.ensemble_accuracy`).

Each class's images are clustered into their photo shoots (`torch_trainer.shoots`). Protocol
`shoot`: fold k trains on every shoot but shoot k of each class and validates on shoot k, so every
class is seen in one scene only and tested in another. Protocol `class-shoot`: fold (c, k) holds
out shoot k of class c alone and trains on all the rest, so the other classes are seen in both
scenes, as in the real task, and the fold's score is class c's recall in a scene it never saw it in.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mug_errors import NotFound, SettingsError
from torch_trainer.augment import eval_view, train_view
from torch_trainer.config import RunConfig, family_summary
from torch_trainer.data import MugDataset
from torch_trainer.runs import train_run
from torch_trainer.run_folder import check_output_dir
from torch_trainer.model import class_probabilities, load_checkpoint
from torch_trainer.report import classification_report, format_classification_report, plot_confusion
from torch_trainer.shoots import find_shoots, folds


def check_seeds(run: RunConfig, seeds: Sequence[int]) -> None:
    """SettingsError if two seeds would share models: a family of K models with seed S trains S..S+K-1."""
    span = max(m.seed for m in run.models) - run.seed + 1
    ordered = sorted(seeds)
    if any(b - a < span for a, b in zip(ordered, ordered[1:])):
        raise SettingsError(f"--seeds {' '.join(map(str, seeds))}: a run with seed S trains models S..S+{span - 1}, "
                            f"so these seeds would share models; space them by {span} or more "
                            f"(e.g. {' '.join(str(ordered[0] + span * i) for i in range(len(ordered)))})")


def run_folds(run: RunConfig, data: MugDataset, shoots: np.ndarray, seeds: Sequence[int], out: Path,
              log: Callable[..., None] = print, protocol: str = "shoot") -> dict[str, Any]:
    """Train and score every (seed, fold) pair in OUT/seedS_FOLD/; return the summary report."""
    runs, pooled_preds, pooled_targets = [], [], []
    for seed in seeds:
        for fold, held_out in folds(shoots, data.targets.numpy(), protocol):
            train_idx, val_idx = np.flatnonzero(~held_out), np.flatnonzero(held_out)
            log(f"== seed {seed}, {fold}: train on {len(train_idx)}, validate on the held-out images ({len(val_idx)})")
            metrics = train_run(run.reseeded(seed), train_view(data, train_idx), eval_view(data, val_idx),
                                   data.class_names, out / f"seed{seed}_{fold}", log=log)
            report = classification_report(metrics["val_predictions"], metrics["val_targets"], data.class_names)
            pooled_preds += metrics["val_predictions"]
            pooled_targets += metrics["val_targets"]
            log(f"seed {seed} {fold}: held-out accuracy {report['accuracy']:.4f}")
            runs.append({"seed": seed, "fold": fold, "accuracy": report["accuracy"], "report": report,
                         "train_seconds": metrics["train_seconds"],
                         "val_accuracy_per_epoch": [r["val_accuracy"] for r in metrics["history"]]})
    accs = np.array([r["accuracy"] for r in runs])
    return {"runs": runs, "mean_accuracy": float(accs.mean()), "min_accuracy": float(accs.min()),
            "max_accuracy": float(accs.max()), "std_accuracy": float(accs.std()),
            "pooled": classification_report(pooled_preds, pooled_targets, data.class_names),
            "mean_train_seconds": float(np.mean([r["train_seconds"] for r in runs]))}


def markdown(summary: dict[str, Any], run: RunConfig) -> str:
    """The report of `validate` as markdown: a row per run, the spread, the pooled scores, the recipe."""
    held_out = {"shoot": "one shoot of every class", "class-shoot": "one shoot of one class"}
    lines = [f"# Cross-scene validation (leave out {held_out[summary.get('protocol', 'shoot')]})", "",
             "| seed | held out | accuracy | train s |", "|---|---|---|---|"]
    for r in summary["runs"]:
        lines.append(f"| {r['seed']} | {r['fold']} | {r['accuracy']:.4f} | {r['train_seconds']:.0f} |")
    lines += ["", f"mean {summary['mean_accuracy']:.4f}, min {summary['min_accuracy']:.4f}, "
                  f"max {summary['max_accuracy']:.4f}, std {summary['std_accuracy']:.4f}", "",
              "Pooled over all runs:", "", "```", format_classification_report(summary["pooled"]), "```", "",
              f"Recipe {run.recipe} (flags {json.dumps(run.overrides)}, per family "
              f"{json.dumps(run.family_overrides)}):", ""] + [f"- {family_summary(f)}" for f in run.families]
    return "\n".join(lines) + "\n"


def validate(run: RunConfig, data_dir: str | os.PathLike, output_dir: str | os.PathLike,
             seeds: Sequence[int] = (0,), shoots_per_class: int = 2, protocol: str = "shoot",
             overwrite: bool = False, log: Callable[..., None] = print) -> dict[str, Any]:
    """Train the recipe on every fold for every seed; returns the summary and writes it to
    OUTPUT/report.json, report.md and confusion.png (the pooled confusion matrix)."""
    check_seeds(run, seeds)
    out = check_output_dir(output_dir, overwrite)
    data = MugDataset(data_dir, run.input_size, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    shoots = find_shoots(data.images, data.targets, shoots_per_class)
    run.train_dirs = [str(Path(data_dir).resolve())]
    started = time.time()
    summary = run_folds(run, data, shoots, seeds, out, log=log, protocol=protocol)
    summary.update(wall_seconds=time.time() - started, protocol=protocol,
                   shoot_sizes={name: np.bincount(shoots[data.targets.numpy() == i]).tolist()
                                for i, name in enumerate(data.class_names)})
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(markdown(summary, run))
    plot_confusion(summary["pooled"], out / "confusion.png",
                   f"held-out shoots: mean accuracy {summary['mean_accuracy']:.4f}")
    return summary


def accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Share of rows of `probs` whose most likely class is the target."""
    return float((probs.argmax(1) == targets).mean())


def score_report(report_dir: str | os.PathLike, data_dir: str | os.PathLike, sizes: Sequence[int] = (2, 3, 5),
                 shoots_per_class: int = 2) -> dict[str, Any]:
    """Held-out accuracy per fold of every seed's model (`run`), of every K-seed ensemble
    (`ensembleK`) and with flips (`flip`), for a `validate` folder; also REPORT/ensemble.json."""
    report_dir = Path(report_dir)
    report_path = report_dir / "report.json"
    if not report_path.is_file():
        raise NotFound(f"--report: {report_path} not found (run torch_trainer.validate first)")
    report = json.loads(report_path.read_text())
    first = report["runs"][0]
    _, meta = load_checkpoint(report_dir / f"seed{first['seed']}_{first['fold']}" / "model.pt")
    data = MugDataset(data_dir, meta["input_size"], progress=False)
    targets = data.targets.numpy()
    shoots = find_shoots(data.images, data.targets, shoots_per_class)
    seeds = sorted({r["seed"] for r in report["runs"]})
    result: dict[str, Any] = {"seeds": seeds, "folds": {}}
    for fold, held_out in folds(shoots, targets, report.get("protocol", "shoot")):
        images, y = data.images[torch.from_numpy(held_out)], targets[held_out]
        probs, flipped = {}, {}
        for seed in seeds:
            model, _ = load_checkpoint(report_dir / f"seed{seed}_{fold}" / "model.pt")  # names a missing file
            probs[seed] = class_probabilities(model, images)
            flipped[seed] = (probs[seed] + class_probabilities(model, images.flip(3))) / 2
        row = {"run": [accuracy(probs[s], y) for s in seeds], "flip": [accuracy(flipped[s], y) for s in seeds]}
        for k in sizes:
            if k <= len(seeds):
                row[f"ensemble{k}"] = [accuracy(sum(probs[s] for s in subset), y)
                                       for subset in itertools.combinations(seeds, k)]
        result["folds"][fold] = row
    (report_dir / "ensemble.json").write_text(json.dumps(result, indent=2))
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """One line per fold and way of predicting (mean, spread, change against each run's model), then
    the mean over folds of each way."""
    lines = []
    for fold, row in result["folds"].items():
        base = np.mean(row["run"])
        for name, accs in row.items():
            accs = np.asarray(accs)
            lines.append(f"{fold:>16}  {name:<10} n={len(accs):<3} mean {accs.mean():.4f}  std {accs.std():.4f}  "
                         f"min {accs.min():.4f}  max {accs.max():.4f}  vs run {accs.mean() - base:+.4f}")
    rows = list(result["folds"].values())
    base = np.mean([np.mean(r["run"]) for r in rows])
    for name in rows[0]:
        mean = np.mean([np.mean(r[name]) for r in rows])
        lines.append(f"{'all folds':>16}  {name:<10} mean {mean:.4f}  vs run {mean - base:+.4f}")
    return lines
