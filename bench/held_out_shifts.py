"""Recipes side by side under capture shifts, on the photos each run held out: the figure that may
change the default (issue 46) until the withheld scene's figures come back.

    python -m bench.held_out_shifts --runs default/0=JOB0/task_run shifts/0=JOB1/task_run ... --output-dir OUT

Each RUN is a `trainer.task` run folder that held out burst groups of the training photos (its
data.json lists them; `--seed S` and `--held-out` pick them, so runs of one seed and one
`--held-out` hold out the same photos). Every
run's model.pt is scored by `check_deployed_model.robustness`'s job on those photos (OUT/LABEL/),
then one table (a run whose OUT/LABEL/robustness.json exists is read, not scored again, unless
--overwrite): clean accuracy, each shift's mean over its strengths, the mean over the shifts and
the worst shift, run by run and each recipe's mean over its seeds; with two recipes, the second's
change against the first, seed by seed (the same held-out photos).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bench.machine import cpu_description
from check_deployed_model.scoring.accuracy import bytes_predictor, shift_report
from check_deployed_model.scoring.shifts import parse_shifts
from mug_errors import InputError, command


def held_out_folder(run: Path, into: Path) -> Path:
    """A class-per-folder tree of links to the photos `run` held out (its data.json's val_files)."""
    record = json.loads((run / "data.json").read_text())
    files = record.get("val_files") or []
    if not files:
        raise InputError(f"{run}/data.json: the run held out no photos (train it with trainer.task and no eval/)")
    for name in files:
        path = Path(name)
        target = into / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, target)
    return into


def main_table(results: dict[str, dict]) -> str:
    """Run by run, then each recipe's mean over its seeds, then the second recipe minus the first."""
    shifts = list(next(iter(results.values()))["summary"]["shifts"])
    widths = [max(8, len(s)) for s in shifts]  # whole names: "zoom-out-flat" is not "zoom-out"
    head = (f"{'run':18s} {'clean':>6s} " + " ".join(f"{s:>{w}s}" for s, w in zip(shifts, widths))
            + f" {'mean':>6s}  worst")
    lines = [head]

    def line(label: str, clean: float, means: list[float], mean: float, worst: str) -> str:
        return (f"{label:18s} {clean:6.3f} " + " ".join(f"{m:{w}.3f}" for m, w in zip(means, widths))
                + f" {mean:6.3f}  {worst}")

    groups: dict[str, list[str]] = {}
    for label, result in results.items():
        s = result["summary"]
        lines.append(line(label, s["clean"], [s["shifts"][n] for n in shifts], s["mean_over_shifts"],
                          f"{s['worst_shift']} {s['shifts'][s['worst_shift']]:.3f}"))
        groups.setdefault(label.split("/")[0], []).append(label)
    lines.append("")
    for group, labels in groups.items():
        summaries = [results[label]["summary"] for label in labels]
        means = {n: float(np.mean([s["shifts"][n] for s in summaries])) for n in shifts}
        worst = min(means, key=means.get)
        lines.append(line(f"{group} (mean of {len(labels)})", float(np.mean([s["clean"] for s in summaries])),
                          list(means.values()), float(np.mean([s["mean_over_shifts"] for s in summaries])),
                          f"{worst} {means[worst]:.3f}"))
    if len(groups) == 2:
        (first, a), (second, b) = groups.items()
        lines += ["", f"{second} - {first}, seed by seed (same held-out photos)"]
        for la, lb in zip(a, b):
            sa, sb = results[la]["summary"], results[lb]["summary"]
            lines.append(line(f"{lb.split('/', 1)[-1]}", sb["clean"] - sa["clean"],
                              [sb["shifts"][n] - sa["shifts"][n] for n in shifts],
                              sb["mean_over_shifts"] - sa["mean_over_shifts"], ""))
    return "\n".join(lines)


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, metavar="RECIPE/SEED=RUN",
                        help="trainer.task run folders, labelled recipe/seed (same seeds in the same order per recipe)")
    parser.add_argument("--output-dir", required=True, help="each run's report goes in OUT/RECIPE-SEED/")
    parser.add_argument("--shifts", nargs="+", metavar="NAME[=S1,S2]", help="as check_deployed_model.robustness")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    shifts = parse_shifts(args.shifts)
    print(f"{cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {}
    for spec in args.runs:
        label, _, run = spec.partition("=")
        if not run:
            raise InputError(f"--runs {spec}: give LABEL=RUN_FOLDER")
        out = Path(args.output_dir) / label.replace("/", "-")
        if (out / "robustness.json").is_file() and not args.overwrite:  # scored before: read, not scored again
            results[label] = json.loads((out / "robustness.json").read_text())
        else:
            with tempfile.TemporaryDirectory() as tmp:
                data = held_out_folder(Path(run), Path(tmp) / "held_out")
                predict = bytes_predictor(checkpoint=Path(run) / "model.pt")
                results[label] = shift_report(predict, data, shifts, out, args.overwrite, data_name=f"{run} (held out)")
        print(f"{label}: {results[label]['images']} held-out photos, clean {results[label]['summary']['clean']:.3f}, "
              f"mean over the shifts {results[label]['summary']['mean_over_shifts']:.3f}", flush=True)
    print()
    print(main_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
