"""Cross-scene validation: leave one photo shoot out, so validation images show unseen scenes.

    python -m torch_trainer.validate --data-dir DATA/train --output-dir REPORT [--seeds 0 1]
        [--protocol shoot|class-shoot] [training flags]

Each class's images are clustered into their photo shoots (`torch_trainer.shoots`).
`--protocol shoot` (default): fold k trains on every shoot but shoot k of each class and
validates on shoot k, so every class is seen in one scene only and tested in another.
`--protocol class-shoot`: fold (c, k) holds out shoot k of class c alone and trains on all
the rest, so the other classes are seen in both scenes, as in the real task, and the fold's
score is class c's recall in a scene it never saw it in. Every fold is trained with the full
recipe for every seed; the report gives each run's accuracy, the mean and the spread,
per-class recall and the summed confusion matrix (REPORT/report.json, report.md, PNGs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from torch_trainer.augment import eval_view, train_view
from torch_trainer.data import DatasetError, MugDataset
from torch_trainer.model import WeightsUnavailable
from torch_trainer.report import classification_report, format_classification_report, plot_confusion
from torch_trainer.shoots import find_shoots, folds
from torch_trainer.config import RUN_FIELDS, TrainConfig, family_config, parse_args
from torch_trainer.fit import check_output_dir, train_models


def run_folds(cfg: TrainConfig, data: MugDataset, shoots: np.ndarray, seeds: Sequence[int], out: Path,
              log=print, protocol: str = "shoot") -> dict:
    """Train and score every (seed, fold) pair; return the summary report."""
    runs, pooled_preds, pooled_targets = [], [], []
    for seed in seeds:
        for fold, held_out in folds(shoots, data.targets.numpy(), protocol):
            train_idx, val_idx = np.flatnonzero(~held_out), np.flatnonzero(held_out)
            run_dir = out / f"seed{seed}_{fold}"
            run_cfg = replace(cfg, seed=seed)
            log(f"== seed {seed}, {fold}: train on {len(train_idx)}, validate on the held-out images ({len(val_idx)})")
            val_set = eval_view(data, val_idx)
            metrics = train_models(run_cfg, train_view(data, train_idx), val_set,
                                   data.class_names, run_dir, log=log)
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


def markdown(summary: dict, cfg: TrainConfig) -> str:
    held_out = {"shoot": "one shoot of every class", "class-shoot": "one shoot of one class"}
    lines = [f"# Cross-scene validation (leave out {held_out[summary.get('protocol', 'shoot')]})", "",
             "| seed | held out | accuracy | train s |", "|---|---|---|---|"]
    for r in summary["runs"]:
        lines.append(f"| {r['seed']} | {r['fold']} | {r['accuracy']:.4f} | {r['train_seconds']:.0f} |")
    lines += ["", f"mean {summary['mean_accuracy']:.4f}, min {summary['min_accuracy']:.4f}, "
                  f"max {summary['max_accuracy']:.4f}, std {summary['std_accuracy']:.4f}", "",
              "Pooled over all runs:", "", "```", format_classification_report(summary["pooled"]), "```", "",
              f"Recipe: `{json.dumps({k: v for k, v in cfg.__dict__.items() if k not in RUN_FIELDS})}`"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="class-per-folder training images (e.g. DATA/train)")
    parser.add_argument("--output-dir", required=True, help="report folder (must be new or empty)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one full set of folds per seed")
    parser.add_argument("--shoots", type=int, default=2, help="photo shoots per class (default %(default)s)")
    parser.add_argument("--protocol", choices=("shoot", "class-shoot"), default="shoot",
                        help="hold out one shoot of every class per fold, or one shoot of one class")
    parser.add_argument("--overwrite", action="store_true")
    args, cfg = parse_args(parser, argv)
    # an ensemble with seed S trains members S..S+K-1: closer seeds would share models
    span = max([family_config(cfg, f).ensemble for f in cfg.families] or [cfg.ensemble])
    seeds = sorted(args.seeds)
    if any(b - a < span for a, b in zip(seeds, seeds[1:])):
        parser.error(f"--seeds {' '.join(map(str, args.seeds))}: a run with seed S trains models S..S+{span - 1}, "
                     f"so these seeds would share models; space them by {span} or more "
                     f"(e.g. {' '.join(str(seeds[0] + span * i) for i in range(len(seeds)))})")
    try:
        out = check_output_dir(args.output_dir, args.overwrite)
        data = MugDataset(args.data_dir, cfg.input_size, progress=True)
        out.mkdir(parents=True, exist_ok=True)
        shoots = find_shoots(data.images, data.targets, args.shoots)
        cfg.train_dirs = [str(Path(args.data_dir).resolve())]
        started = time.time()
        summary = run_folds(cfg, data, shoots, args.seeds, out, protocol=args.protocol)
    except (DatasetError, FileExistsError, FileNotFoundError, WeightsUnavailable, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary["wall_seconds"] = time.time() - started
    summary["protocol"] = args.protocol
    summary["shoot_sizes"] = {name: np.bincount(shoots[data.targets.numpy() == i]).tolist()
                              for i, name in enumerate(data.class_names)}
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    (out / "report.md").write_text(markdown(summary, cfg))
    plot_confusion(summary["pooled"], out / "confusion.png",
                   f"held-out shoots: mean accuracy {summary['mean_accuracy']:.4f}")
    print(markdown(summary, cfg))
    print(f"wrote {out}/report.json, report.md, confusion.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
