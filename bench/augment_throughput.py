"""Training augmentation speed: torchvision's per-picture transforms against `BatchAugment`, side by side.

    python -m bench.augment_throughput --data-dir DATA/train [--recipe NAME] [--rounds 5] [--batch-size 64]

Both sides make the same kind of pictures from the same uint8 photos, but for the colour cast,
which only the batch side has (it came with `BatchAugment`): the per-picture side is the v2
pipeline the trainer used before (`RandomResizedCrop`, `RandomHorizontalFlip`, `ColorJitter`,
float conversion, exposure), called once per photo as a DataLoader with
`workers=0` calls it; the batch side is `BatchAugment` on batches of `--batch-size`. One epoch
of each per round, alternating, so that machine noise hits both alike; prints the median
images/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torchvision.transforms import v2

from bench.machine import cpu_description
from mug_errors import command
from torch_trainer.training.augment import RATIO, BatchAugment
from torch_trainer.settings.plan import TrainConfig
from torch_trainer.settings.flags import parse_args
from torch_trainer.classifier.photos import MugDataset


def per_picture_transform(cfg: TrainConfig) -> v2.Transform:
    """The recipe's augmentation as torchvision transforms for one uint8 picture at a time."""
    exposure = cfg.exposure
    return v2.Compose([
        v2.RandomResizedCrop(cfg.input_size, scale=(cfg.crop_scale, 1.0), ratio=RATIO, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, saturation=cfg.saturation, hue=cfg.hue),
        v2.ToDtype(torch.float32, scale=True),
        v2.Lambda(lambda x: (x * exposure ** (2 * torch.rand(()) - 1)).clamp(0, 1)),
    ])


def measure_augmentation(cfg: TrainConfig, data: MugDataset, rounds: int = 5) -> dict[str, float]:
    """Median images/s of the per-picture transforms and of `BatchAugment` over `data`, one epoch of
    each per round, alternating."""
    picture, batch = per_picture_transform(cfg), BatchAugment(cfg)
    n, size = len(data), cfg.batch_size

    def one_by_one() -> None:
        for image in data.images:
            picture(image)

    def by_batch() -> None:
        for start in range(0, n, size):
            batch(data.images[start:start + size])

    rates: dict[str, list[float]] = {"per picture": [], "batch": []}
    by_batch()  # warm-up
    for _ in range(rounds):
        for name, epoch in (("per picture", one_by_one), ("batch", by_batch)):
            started = time.perf_counter()
            epoch()
            rates[name].append(n / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="class-per-folder photos")
    parser.add_argument("--rounds", type=int, default=5)
    args, run = parse_args(parser, argv)
    cfg = run.models[0]
    data = MugDataset(args.data_dir, cfg.input_size)
    rates = measure_augmentation(cfg, data, args.rounds)
    print(f"{cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {len(data)} photos, "
          f"recipe {run.recipe} (its first model), batches of {cfg.batch_size}, median of {args.rounds} rounds")
    print(f"{'augmentation':14s} {'images/s':>10s} {'ratio':>7s}")
    for name, rate in rates.items():
        print(f"{name:14s} {rate:10.0f} {rate / rates['per picture']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
