"""The parts of one model's training, built from its `TrainConfig`: device, precision, model,
optimiser, schedule and the training data loader."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, CosineAnnealingWarmRestarts, LambdaLR, LinearLR, SequentialLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mug_errors import InputError, NotFound, SettingsError
from torch_trainer.training import distributed
from torch_trainer.settings.plan import TrainConfig
from torch_trainer.classifier.network import RANDOM, MugClassifier, load_imagenet_weights


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when present (this process's GPU under torchrun), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and distributed.world_size() > 1:
        return torch.device("cuda", distributed.local_rank())
    return torch.device(name)


def train_sampler(train_set: Dataset, cfg: TrainConfig, rank: int, world: int) -> DistributedSampler | None:
    """This rank's shard of the training set (reshuffled each epoch by `set_epoch`), or None alone."""
    if world <= 1:
        return None
    return DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)


def make_train_loader(train_set: Dataset, cfg: TrainConfig, generator: torch.Generator,
                      device: torch.device) -> DataLoader:
    """Shuffled batches of `batch_size` pictures per process; under torchrun each rank gets its own shard."""
    sampler = train_sampler(train_set, cfg, distributed.rank(), distributed.world_size())
    return DataLoader(train_set, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                      drop_last=len(train_set) > cfg.batch_size * distributed.world_size(),
                      generator=generator if sampler is None else None, pin_memory=device.type == "cuda")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware: AVX-512 BF16 (AMD Zen 4 and 5, Intel Cooper
    Lake) or AMX (Intel Sapphire Rapids and later).

    Only there is bf16 autocast faster than float32 on the CPU (a training step with channels-last
    1.7x as fast on an AMD EPYC with AVX-512 BF16, `bench.step_time`; 1.7x the images/s on Intel with
    AMX, `bench.train_throughput`); elsewhere oneDNN emulates it and it is slower.
    """
    # private probes, so tolerate their absence
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe is not None and probe() for probe in probes)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for this run, or None for full float32.

    auto: bf16 on CUDA (fp16 where bf16 is missing) and on a CPU with bf16 hardware, float32 on
    other CPUs.
    """
    if cfg.amp == "off":
        return None
    if device.type == "cpu":
        if cfg.amp == "fp16":
            raise SettingsError("--amp fp16 needs CUDA; on the CPU use --amp bf16 or off")
        return torch.bfloat16 if cfg.amp == "bf16" or cpu_has_bf16() else None
    if cfg.amp == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else (torch.float16 if cfg.amp == "auto" else None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig, num_classes: int) -> MugClassifier:
    """A fresh classifier with the starting weights that `cfg.weights` asks for; its
    `weights_source` says where they came from.

    ImageNet weights that cannot be had raise `WeightsUnavailable`: one command trains one model."""
    model = MugClassifier(cfg.arch, num_classes, cfg.resolution)
    if cfg.weights == "imagenet":
        model.weights_source = load_imagenet_weights(model)
        return model
    if cfg.weights == "none":
        return model
    path = Path(cfg.weights)
    if not path.is_file():
        raise NotFound(f"--weights: {path} is not a file (nor 'imagenet' or 'none')")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {k: v for k, v in state.items() if not k.endswith(("fc.weight", "fc.bias"))}
    result = model.load_state_dict(state, strict=False)
    if set(result.missing_keys) - {"net.fc.weight", "net.fc.bias"} or result.unexpected_keys:
        raise InputError(f"--weights: {path} does not fit {cfg.arch} at {cfg.resolution} px: missing "
                         f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    model.weights_source = f"checkpoint ({path.resolve()})"
    return model


def make_optimizer(model: MugClassifier, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; pretrained backbones learn `backbone_lr_scale` slower than the new head."""
    head = list(model.net.fc.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    scale = cfg.backbone_lr_scale if model.weights_source != RANDOM else 1.0
    return torch.optim.AdamW([{"params": backbone, "lr": cfg.lr * scale}, {"params": head, "lr": cfg.lr}],
                             weight_decay=cfg.weight_decay)


def cycles(cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, steps per cosine cycle) of the run: `snapshots` cycles fill the steps
    after the warm-up, which takes whatever does not divide evenly."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total - 1, int(cfg.warmup_epochs * steps_per_epoch))
    cycle = (total - warmup) // cfg.snapshots
    if cycle < 1:
        raise SettingsError(f"--snapshots {cfg.snapshots}: the run has only {total - warmup} steps after its warm-up")
    return total - cycle * cfg.snapshots, cycle


def snapshot_steps(cfg: TrainConfig, steps_per_epoch: int) -> list[int]:
    """The steps (counted from 1) that end the cosine cycles; the last is the run's last step."""
    warmup, cycle = cycles(cfg, steps_per_epoch)
    return [warmup + cycle * (k + 1) for k in range(cfg.snapshots)]


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine decay to zero, stepped per batch; with `snapshots` S > 1 the
    cosine starts again S times (snapshot ensembles, Huang et al. 2017).

    `cosine-under-warmup` is the EfficientNet-Lite probe's schedule instead: one cosine over the
    whole run, multiplied by the warm-up ramp (min(1, step / warm-up steps))."""
    if cfg.schedule == "cosine-under-warmup":
        total = max(1, cfg.epochs * steps_per_epoch)
        ramp = max(1.0, cfg.warmup_epochs * steps_per_epoch)
        return LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / ramp) * 0.5 * (1 + math.cos(math.pi * step / total)))
    warmup, cycle = cycles(cfg, steps_per_epoch)
    if cfg.snapshots > 1:
        cosine = CosineAnnealingWarmRestarts(optimizer, T_0=cycle)
    else:
        cosine = CosineAnnealingLR(optimizer, T_max=cycle)
    if warmup <= 0:
        return cosine
    ramp = LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
