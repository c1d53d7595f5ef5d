"""One training step (forward, backward, AdamW) of the classifier, by precision, memory format and
compilation, side by side.

    python -m bench.step_time [--configs fp32 fp32:cl bf16:cl ...] [--steps 10] [--batch-size 64] [--arch resnet18]

A config is `fp32` or `bf16` (autocast), then optional `:cl` (channels-last) and `:compile`
(`torch.compile`, whose first step, the compilation, is reported apart). Each config gets its
own freshly seeded model; after two warm-up steps the configs take turns, one step each per
round, so that machine noise hits them alike. Prints the median seconds per step, the ratio of
each config's speed to the first's, and the compile time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from bench.machine import cpu_description
from mug_errors import SettingsError, command
from torch_trainer.classifier.network import MugClassifier


def make_step(config: str, arch: str, batch_size: int, resolution: int):
    """A closure running one training step of `config`; returns (step, seconds of the first step)."""
    precision, *options = config.split(":")
    if precision not in ("fp32", "bf16") or set(options) - {"cl", "compile"}:
        raise SettingsError(f"--configs {config}: fp32 or bf16, then optional :cl and :compile")
    torch.manual_seed(0)
    model = MugClassifier(arch, 4, resolution)
    images, labels = torch.rand(batch_size, 3, 64, 64), torch.randint(0, 4, (batch_size,))
    if "cl" in options:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    forward = torch.compile(model) if "compile" in options else model

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    started = time.perf_counter()
    step()
    return step, time.perf_counter() - started


def measure_step_time(configs: list[str], steps: int = 10, batch_size: int = 64, arch: str = "resnet18",
                      resolution: int = 64) -> dict[str, dict[str, float]]:
    """{config: {"seconds_per_step" (median), "speed" (the first config's median / this one's),
    "first_step_seconds"}}, the configs taking turns one step each per round."""
    step_fns, first = {}, {}
    for config in configs:
        step_fns[config], first[config] = make_step(config, arch, batch_size, resolution)
        step_fns[config]()  # second warm-up step
    times: dict[str, list[float]] = {config: [] for config in configs}
    for _ in range(steps):
        for config, step in step_fns.items():
            started = time.perf_counter()
            step()
            times[config].append(time.perf_counter() - started)
    base = statistics.median(times[configs[0]])
    return {config: {"seconds_per_step": statistics.median(times[config]),
                     "speed": base / statistics.median(times[config]), "first_step_seconds": first[config]}
            for config in configs}


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["fp32", "fp32:cl", "bf16", "bf16:cl"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args(argv)
    results = measure_step_time(args.configs, args.steps, args.batch_size, args.arch, args.resolution)
    print(f"{cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {args.arch} at "
          f"{args.resolution} px, batch {args.batch_size}, median of {args.steps} steps")
    print(f"{'config':16s} {'s/step':>8s} {'speed':>7s} {'first step s':>13s}")
    for config, r in results.items():
        print(f"{config:16s} {r['seconds_per_step']:8.3f} {r['speed']:7.2f} {r['first_step_seconds']:13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
