"""Cross-scene accuracy of each run's model, ensembles of runs and flip test-time augmentation, side by side.

    python -m torch_trainer.ensemble_accuracy --report REPORT --data-dir DATA/train [--sizes 2 3 5]

REPORT is a `torch_trainer.validate` folder run with several `--seeds`. Every run's
`seedS_FOLD/model.pt` (`run`: one model, or the recipe's own ensemble of K when it has one) is scored on its fold's held-out images (the shoots are found again from
the images, as validate does). `ensembleK` averages the softmax of K runs' models of the
same fold; every K-subset of the seeds is scored, and each line gives the mean and spread over
the subsets. `flip` averages each model's softmax over the picture and its mirror image.
Writes REPORT/ensemble.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from torch_trainer.data import DatasetError, MugDataset
from torch_trainer.model import class_probabilities, load_checkpoint
from torch_trainer.shoots import find_shoots, folds


def accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Share of rows of `probs` whose most likely class is the target."""
    return float((probs.argmax(1) == targets).mean())


def score_report(report_dir: str | Path, data_dir: str | Path, sizes: Sequence[int] = (2, 3, 5),
                 shoots_per_class: int = 2) -> dict:
    """Held-out accuracy per fold of every seed's model, of every K-seed ensemble and with flips."""
    report_dir = Path(report_dir)
    report_path = report_dir / "report.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"--report: {report_path} not found (run torch_trainer.validate first)")
    report = json.loads(report_path.read_text())
    first = report["runs"][0]
    _, meta = load_checkpoint(report_dir / f"seed{first['seed']}_{first['fold']}" / "model.pt")
    data = MugDataset(data_dir, meta["input_size"], progress=False)
    targets = data.targets.numpy()
    shoots = find_shoots(data.images, data.targets, shoots_per_class)
    seeds = sorted({r["seed"] for r in report["runs"]})
    result = {"seeds": seeds, "folds": {}}
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
    return result


def summary_lines(result: dict) -> list[str]:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", required=True, help="a torch_trainer.validate output folder")
    parser.add_argument("--data-dir", required=True, help="the --data-dir that validate was run on")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 5], help="ensemble sizes to score")
    parser.add_argument("--shoots", type=int, default=2, help="photo shoots per class (as given to validate)")
    args = parser.parse_args(argv)
    try:
        result = score_report(args.report, args.data_dir, args.sizes, args.shoots)
    except (DatasetError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(result)))
    (Path(args.report) / "ensemble.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {Path(args.report) / 'ensemble.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
