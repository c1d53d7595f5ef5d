"""Training throughput (images/s) of single-process and torchrun runs, side by side.

    python -m bench.train_throughput --data-dir DATA/train --epochs 3 --configs cpu:1 cpu:2 [cuda:1 cuda:N]
    python -m bench.train_throughput --data-dir DATA/train --epochs 3 --configs cpu:1:fp32 cpu:1:bf16
    python -m bench.train_throughput --data-dir DATA/train --epochs 3 --configs cpu:1 cpu:2x1 [--recipe lite0-frozen-bn]

`cpu:N` / `cuda:N` runs N processes (torchrun with DDP when N > 1; gloo on CPU, nccl on CUDA).
`cpu:KxT` runs K separate models side by side, each a process of T threads (OMP_NUM_THREADS), its
images/s the sum of theirs: a family's models trained at once instead of one after another.
An optional third field fixes the precision: `fp32` (`--amp off --channels-last off`) or `bf16`
(`--amp bf16 --channels-last on`); without it the trainer's `auto` decides.
Each run is a real `torch_trainer.train` invocation of one model (`--recipe`, default the
ResNet18 family `exposure-ens3`, with `--ensemble 1`; an ensemble
trains its members one after another at the same rate); images/s is the median over its epochs
after the first (warm-up), all ranks' images counted. Ratios are to the first config.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.machine import cpu_description
from mug_errors import JobFailed, SettingsError, command

ROOT = Path(__file__).resolve().parent.parent
PRECISION = {"fp32": ["--amp", "off", "--channels-last", "off"], "bf16": ["--amp", "bf16", "--channels-last", "on"]}


def run(config: str, data_dir: str, epochs: int, batch_size: int, extra: list[str],
        recipe: str = "exposure-ens3") -> dict:
    """One real training run of `config` (subprocesses): its median images/s after the first epoch
    (summed over the models of `cpu:KxT`)."""
    device, nproc, *precision = config.split(":")
    side_by_side, threads = (int(n) for n in nproc.split("x")) if "x" in nproc else (1, None)
    nproc = 1 if threads else int(nproc)
    if precision and precision[0] not in PRECISION:
        raise SettingsError(f"--configs {config}: precision must be one of {', '.join(PRECISION)}")
    if threads and device != "cpu":
        raise SettingsError(f"--configs {config}: KxT (models side by side, T threads each) is for the CPU")
    extra = [*extra, *PRECISION[precision[0]]] if precision else extra
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")} if device == "cpu" else None
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        launcher = [sys.executable, "-m", "torch_trainer.train"]
        if nproc > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                        "-m", "torch_trainer.train"]
        procs = []
        for k in range(side_by_side):  # model k with seed k, as a family's models
            out = Path(tmp) / f"run{k}"
            cmd = launcher + ["--recipe", recipe, "--train-dir", data_dir, "--output-dir", str(out), "--epochs",
                              str(epochs), "--ensemble", "1", "--seed", str(k), "--weights", "none", "--device", device,
                              "--batch-size", str(batch_size), *extra]
            # stderr (tqdm's bars) to a file: a pipe read only after the first model ends would fill and stall the second
            log = Path(tmp) / f"stderr{k}.txt"
            with log.open("w") as stderr:
                procs.append((out, log, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
                                                         env=env)))
        histories = []
        for out, log, proc in procs:
            if proc.wait() != 0:
                raise JobFailed(f"{config} failed:\n{log.read_text()[-3000:]}")
            histories.append(json.loads((out / "metrics.json").read_text())["history"])
    rates = [statistics.median([r["images_per_second"] for r in h][1:] or [h[0]["images_per_second"]])
             for h in histories]
    return {"config": config, "images_per_second": sum(rates), "epochs": len(histories[0]),
            "final_train_accuracy": histories[0][-1]["train_accuracy"]}


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--configs", nargs="+", default=["cpu:1", "cpu:2"])
    parser.add_argument("--recipe", default="exposure-ens3",
                        help="a recipe of one network (default %(default)s; the default's two families would mix two rates)")
    args, extra = parser.parse_known_args(argv)
    import torch  # deferred: the runs are subprocesses; only the summary line needs it
    print(f"{cpu_description()}; torch {torch.__version__}, {os.cpu_count()} CPUs, CUDA devices: {torch.cuda.device_count()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    results = [run(c, args.data_dir, args.epochs, args.batch_size, extra, args.recipe) for c in args.configs]
    base = results[0]["images_per_second"]
    print(f"{'config':12s} {'images/s':>10s} {'ratio':>7s} {'epochs':>7s} {'train acc':>10s}")
    for r in results:
        print(f"{r['config']:12s} {r['images_per_second']:10.1f} {r['images_per_second'] / base:7.2f} "
              f"{r['epochs']:7d} {r['final_train_accuracy']:10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
