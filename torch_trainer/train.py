"""Fine-tune a torchvision ResNet on class-per-folder mug photos.

    python -m torch_trainer.train --train-dir data/train [--val-dir data/eval] --output-dir runs/r18
        [--recipe NAME] [flags that override the recipe]

Writes RUN/model.pt (the model to export), RUN/last.pt (with optimiser state),
RUN/best.pt (best validation accuracy, when there is validation data) and RUN/metrics.json.
With `--ensemble K` > 1 each model trains in RUN/memberI/ and RUN/model.pt holds all K.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from torch_trainer import distributed
from torch_trainer.augment import TransformedSubset, batch_mixer, eval_transform, train_view
from torch_trainer.config import AMP_MODES, TrainConfig, parse_args
from torch_trainer.data import DatasetError, MugDataset
from torch_trainer.model import Ensemble, MugClassifier, WeightsUnavailable, add_mixstyle, load_checkpoint, \
    load_imagenet_weights, save_checkpoint


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
    """Shuffled batches of `batch_size` pictures per process; under torchrun each rank gets its own
    shard. With several views per photo a batch holds `batch_size / views` photos, so that a step
    costs what it costs without them."""
    sampler = train_sampler(train_set, cfg, distributed.rank(), distributed.world_size())
    photos = max(1, cfg.batch_size // getattr(train_set, "views", 1))
    return DataLoader(train_set, batch_size=photos, shuffle=sampler is None, sampler=sampler,
                      drop_last=len(train_set) > photos * distributed.world_size(),
                      generator=generator if sampler is None else None, num_workers=cfg.workers,
                      pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0)


def js_divergence(logits: torch.Tensor, views: int) -> torch.Tensor:
    """Mean Jensen-Shannon divergence between the predictions for each photo's `views`
    consecutive pictures in `logits` (AugMix's consistency loss): zero when every picture of a
    photo gets the same answer, whatever its background or lighting."""
    p = logits.float().softmax(1).view(-1, views, logits.shape[1])
    log_m = p.mean(1, keepdim=True).clamp_min(1e-7).log()
    return F.kl_div(log_m.expand_as(p), p, reduction="sum") / (p.shape[0] * views)


def ema_avg_fn(decay: float):
    """EMA update with warm-up: the decay grows as (1 + n) / (10 + n) up to `decay`, so that
    short runs (a few hundred steps) are not dominated by the random initial weights."""
    def avg(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(num_averaged)) / (10.0 + float(num_averaged)))
        return averaged * d + current * (1.0 - d)
    return avg


def weight_average(model: torch.nn.Module, cfg: TrainConfig) -> AveragedModel | None:
    """The averaged copy of `model` that validation and the saved checkpoints use, or None.

    With `swa_start` it is a plain mean of the weights after every step from that share of
    the run on (SWA), else the EMA. The EMA's warm-up keeps its decay below `ema_decay` for
    the first (10 * decay - 1) / (1 - decay) steps (890 at 0.99), so in a run shorter than
    that it weighs step k about as k ** 8: 60% of the weight lies on the last tenth of the run.
    """
    if not 0 <= cfg.swa_start < 1:
        raise ValueError(f"--swa-start must be at least 0 and below 1, not {cfg.swa_start}")
    if cfg.swa_start > 0:
        return AveragedModel(model, use_buffers=True)
    if cfg.ema_decay > 0:
        return AveragedModel(model, avg_fn=ema_avg_fn(cfg.ema_decay), use_buffers=True)
    return None


def result_model(model: torch.nn.Module, average: AveragedModel | None) -> torch.nn.Module:
    """What validation and the checkpoints see: the average once it holds a step, else `model`
    (SWA's average is empty until its first step)."""
    return average.module if average is not None and average.n_averaged > 0 else model


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX: Sapphire Rapids and later).

    Only there is bf16 autocast faster than float32 on the CPU (about 2x per training step with
    channels-last, measured); elsewhere oneDNN emulates it and it is slower.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so tolerate its absence
    return bool(probe and probe())


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for this run, or None for full float32.

    auto: bf16 on CUDA (fp16 where bf16 is missing) and on a CPU with AMX, float32 on other CPUs.
    """
    if cfg.amp not in AMP_MODES:
        raise ValueError(f"--amp: unknown mode {cfg.amp!r}")
    if cfg.amp == "off":
        return None
    if device.type == "cpu":
        if cfg.amp == "fp16":
            raise ValueError("--amp fp16 needs CUDA; on the CPU use --amp bf16 or off")
        return torch.bfloat16 if cfg.amp == "bf16" or cpu_has_amx() else None
    if cfg.amp == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else (torch.float16 if cfg.amp == "auto" else None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig, num_classes: int) -> MugClassifier:
    """A fresh classifier with the initial weights that `cfg.weights` asks for."""
    model = MugClassifier(cfg.arch, num_classes, cfg.image_size, input_norm=cfg.input_norm, norm=cfg.norm)
    model.rsc_share = cfg.rsc
    if cfg.mixstyle:
        add_mixstyle(model, cfg.mixstyle)
    if cfg.weights == "imagenet":
        cfg.extra["pretrained"] = load_imagenet_weights(model, strict=cfg.strict_weights)
    elif cfg.weights != "none":
        path = Path(cfg.weights)
        if not path.is_file():
            raise FileNotFoundError(f"--weights: {path} is not a file (nor 'imagenet' or 'none')")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        state = {k: v for k, v in state.items() if not k.endswith(("fc.weight", "fc.bias"))}
        result = model.load_state_dict(state, strict=False)
        if set(result.missing_keys) - {"net.fc.weight", "net.fc.bias"}:
            raise ValueError(f"--weights: {path} does not fit {cfg.arch}: missing {result.missing_keys[:5]}")
        cfg.extra["pretrained"] = True
    else:
        cfg.extra["pretrained"] = False
    return model


def make_optimizer(model: MugClassifier, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; pretrained backbones learn `backbone_lr_scale` slower than the new head."""
    head = list(model.net.fc.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    scale = cfg.backbone_lr_scale if cfg.extra.get("pretrained") else 1.0
    return torch.optim.AdamW([{"params": backbone, "lr": cfg.lr * scale}, {"params": head, "lr": cfg.lr}],
                             weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine decay to zero, stepped per batch."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total - 1, int(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> dict[str, Any]:
    """Loss, accuracy, predictions and targets of `model` over `loader`."""
    model.eval()
    losses, preds, targets = [], [], []
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        logits = model(images)
        losses.append(F.cross_entropy(logits, labels, reduction="sum").item())
        preds.append(logits.argmax(1).cpu())
        targets.append(labels.cpu())
    preds, targets = torch.cat(preds), torch.cat(targets)
    return {"loss": sum(losses) / len(targets), "accuracy": (preds == targets).float().mean().item(),
            "preds": preds, "targets": targets}


def prepare_output_dir(path: str | Path, overwrite: bool) -> Path:
    """Create RUN, refusing a non-empty one unless `overwrite`."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path}: output folder is not empty; pass --overwrite or choose another --output-dir")
    path.mkdir(parents=True, exist_ok=True)
    return path


def fit(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, class_names: list[str],
        output_dir: str | Path, log=print, resume: dict[str, Any] | None = None,
        stop_after: int | None = None) -> dict[str, Any]:
    """Train a model on `train_set`, checkpoint it to `output_dir`, return the metrics.

    `resume` is the `training_state` of a RUN/last.pt: training continues where it stopped,
    with the same optimiser, schedule, EMA and random streams, so the result is the one an
    uninterrupted run gives. `stop_after` ends this invocation after that many epochs.
    """
    out = Path(output_dir)
    main_rank, world = distributed.is_main(), distributed.world_size()
    if cfg.rsc and cfg.mix:
        raise ValueError("--rsc needs each picture's own label: it cannot be combined with --mix")
    if not 0 <= cfg.rsc <= 1:
        raise ValueError(f"--rsc must be a share of the batch in [0, 1], not {cfg.rsc}")
    if cfg.consistency and cfg.mix:
        raise ValueError("--consistency compares each photo's own pictures: it cannot be combined with --mix")
    if cfg.consistency < 0:
        raise ValueError(f"--consistency must be a weight >= 0, not {cfg.consistency}")
    if not main_rank:
        log = _quiet
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    model = build_model(cfg, len(class_names)).to(device)
    amp_dtype = autocast_dtype(cfg, device)
    # on the CPU channels-last pays only together with bf16 (oneDNN's AMX kernels); alone it is slower
    channels_last = cfg.channels_last == "on" or (
        cfg.channels_last == "auto" and (device.type == "cuda" or amp_dtype == torch.bfloat16))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # every rank augments differently; DDP makes the weights identical anyway
    seed_everything(cfg.seed + distributed.rank())
    generator = torch.Generator().manual_seed(cfg.seed)
    train_loader = make_train_loader(train_set, cfg, generator, device)
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, num_workers=cfg.workers,
                            pin_memory=device.type == "cuda") if val_set is not None else None
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(train_loader))
    average = weight_average(model, cfg)
    average_from = int(cfg.swa_start * cfg.epochs * len(train_loader))  # the first step that is averaged
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    mixer = batch_mixer(cfg, len(class_names))
    meta = dict(train_config=asdict(cfg))

    history, best_acc, first_epoch, result = [], -1.0, 1, None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if average is not None:
            average.load_state_dict(resume["ema"])
        scaler.load_state_dict(resume["scaler"])
        generator.set_state(resume["generator"])
        if main_rank:  # the saved stream is rank 0's; other ranks keep their own seed
            torch.set_rng_state(resume["torch_rng"])
        history, best_acc, first_epoch = resume["history"], resume["best_acc"], resume["epoch"] + 1
        log(f"resuming {out} after epoch {resume['epoch']}")
    final = result_model(model, average)
    step_model = model
    if world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    log(f"training {cfg.arch} on {len(train_set)} images ({', '.join(class_names)}), "
        f"validating on {len(val_set) if val_set is not None else 0}, device {device}, "
        f"{world} process(es) x {torch.get_num_threads()} threads, amp {amp_dtype or 'off'}, "
        f"channels-last {'on' if channels_last else 'off'}, "
        + (f"swa from step {average_from + 1}" if cfg.swa_start > 0 else f"ema {cfg.ema_decay or 'off'}"))
    start, ran = time.time(), 0
    for epoch in range(first_epoch, cfg.epochs + 1):
        if stop_after is not None and ran >= stop_after:
            log(f"stopping after {ran} epoch(s) as asked; continue with --resume {out}")
            break
        model.train()
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        t0, loss_sum, correct, seen = time.time(), 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, unit="batch", mininterval=1.0,
                   disable=not main_rank)
        for images, labels in bar:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            views = images.shape[1] if images.dim() == 5 else 1  # [photos, views, C, H, W] under --consistency
            if views > 1:
                images, labels = images.flatten(0, 1), labels.repeat_interleave(views)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            # train accuracy counts a mixed picture right when it names its original class
            images, targets = mixer(images, labels) if mixer is not None else (images, labels)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = step_model(images, labels)  # the labels matter only under --rsc
                loss = F.cross_entropy(logits, targets, label_smoothing=cfg.label_smoothing)
                if views > 1:
                    loss = loss + cfg.consistency * js_divergence(logits, views)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if average is not None and scheduler.last_epoch > average_from:
                average.update_parameters(model)
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        loss_sum, correct, seen = distributed.sum_across(loss_sum, correct, seen)
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "lr": optimizer.param_groups[-1]["lr"], "epoch_seconds": time.time() - t0,
               "images_per_second": seen / (time.time() - t0)}
        final = result_model(model, average)
        line = f"epoch {epoch:3d}/{cfg.epochs}  loss {row['train_loss']:.4f}  train acc {row['train_accuracy']:.4f}"
        if val_loader is not None and main_rank:
            result = evaluate(final, val_loader, device)
            row.update(val_loss=result["loss"], val_accuracy=result["accuracy"])
            line += f"  val loss {result['loss']:.4f}  val acc {result['accuracy']:.4f}"
            if result["accuracy"] > best_acc:
                best_acc = result["accuracy"]
                save_checkpoint(out / "best.pt", final, class_names, cfg.input_size, epoch=epoch, **meta)
        log(line + f"  ({row['epoch_seconds']:.1f}s)")
        history.append(row)
        ran += 1
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 # "ema" holds either average (the key of checkpoints from before SWA)
                 "scheduler": scheduler.state_dict(), "ema": average.state_dict() if average is not None else {},
                 "scaler": scaler.state_dict(), "generator": generator.get_state(),
                 "torch_rng": torch.get_rng_state(), "history": history, "best_acc": best_acc, "epoch": epoch}
        if main_rank:
            save_checkpoint(out / "last.pt", final, class_names, cfg.input_size, epoch=epoch,
                            training_state=state, **meta)

    complete = bool(history) and history[-1]["epoch"] == cfg.epochs
    if complete and cfg.swa_start > 0 and main_rank:
        recompute_batch_norm(final, train_set, cfg.batch_size, device)
        line = "batch-norm statistics of the averaged weights recomputed on the training photos"
        if val_loader is not None:
            result = evaluate(final, val_loader, device)
            history[-1].update(val_loss=result["loss"], val_accuracy=result["accuracy"])
            line += f": val acc {result['accuracy']:.4f}"
        log(line)
    metrics = {"history": history, "train_seconds": sum(r["epoch_seconds"] for r in history),
               "final_val_accuracy": history[-1].get("val_accuracy") if history else None,
               "best_val_accuracy": best_acc if val_loader is not None else None,
               "num_train": len(train_set), "num_val": len(val_set) if val_set is not None else 0,
               "class_names": class_names, "config": asdict(cfg), "world_size": world,
               # the final model's validation predictions, for per-class reports without a second pass
               "val_predictions": result["preds"].tolist() if result is not None else None,
               "val_targets": result["targets"].tolist() if result is not None else None,
               "epochs_run": ran, "complete": complete}
    if main_rank:
        if metrics["complete"]:
            save_checkpoint(out / "model.pt", final, class_names, cfg.input_size, epoch=cfg.epochs, **meta)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    distributed.barrier()
    log(f"done in {time.time() - start:.0f}s; wrote "
        f"{out / 'model.pt' if metrics['complete'] else out / 'last.pt'} and {out / 'metrics.json'}")
    return metrics


def recompute_batch_norm(model: torch.nn.Module, train_set: Dataset, batch_size: int, device: torch.device) -> None:
    """Batch-norm statistics for averaged weights, from one pass over the training photos.

    SWA averages the weights of many steps, and the running statistics it averages along with
    them belong to none of those weights (`torch.optim.swa_utils.update_bn` is the fix). The
    photos go in unaugmented: these statistics are the ones the served model will normalise with.
    """
    photos = train_set
    if isinstance(train_set, TransformedSubset):
        photos = TransformedSubset(train_set.base, train_set.indices, eval_transform())
    update_bn(DataLoader(photos, batch_size=batch_size), model, device)
    model.eval()


def train_models(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, class_names: list[str],
                 output_dir: str | Path, log=print, resume: bool = False, stop_after: int | None = None
                 ) -> dict[str, Any]:
    """`fit` one model, or with `cfg.ensemble` K > 1 K models as one ensemble; returns the metrics.

    Member i trains with seed `cfg.seed + i` in RUN/memberI/ (its own model.pt, last.pt and
    metrics.json); once all are trained RUN/model.pt holds the `Ensemble` (the mean of their
    probabilities) and RUN/metrics.json the members' metrics and the ensemble's validation.
    With `resume`, finished members are kept and an interrupted one continues from its last.pt.
    `stop_after` counts epochs over all members.
    """
    out = Path(output_dir)
    if cfg.ensemble < 1:
        raise ValueError(f"--ensemble must be at least 1, not {cfg.ensemble}")
    if cfg.ensemble == 1:
        state = load_resume_state(out)[1] if resume else None
        return fit(cfg, train_set, val_set, class_names, out, log=log, resume=state, stop_after=stop_after)
    if distributed.is_main():
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    members, ran = [], 0
    for i in range(cfg.ensemble):
        member_dir = out / f"member{i}"
        if (member_dir / "model.pt").is_file() and resume:
            log(f"member {i + 1}/{cfg.ensemble}: already trained ({member_dir / 'model.pt'})")
            members.append(json.loads((member_dir / "metrics.json").read_text()))
            continue
        if stop_after is not None and ran >= stop_after:
            log(f"stopping after {ran} epoch(s) as asked; continue with --resume {out}")
            break
        member_cfg = replace(cfg, seed=cfg.seed + i, ensemble=1, extra=dict(cfg.extra))
        state = load_resume_state(member_dir)[1] if resume and (member_dir / "last.pt").is_file() else None
        member_dir.mkdir(exist_ok=True)
        log(f"member {i + 1}/{cfg.ensemble} (seed {member_cfg.seed}) in {member_dir}")
        metrics = fit(member_cfg, train_set, val_set, class_names, member_dir, log=log, resume=state,
                      stop_after=None if stop_after is None else stop_after - ran)
        ran += metrics["epochs_run"]
        members.append(metrics)
        if not metrics["complete"]:
            break
    complete = len(members) == cfg.ensemble and all(m["complete"] for m in members)
    metrics = {"members": members, "train_seconds": sum(m["train_seconds"] for m in members),
               "history": [dict(row, member=i) for i, m in enumerate(members) for row in m["history"]],
               "num_train": len(train_set), "num_val": len(val_set) if val_set is not None else 0,
               "class_names": class_names, "config": asdict(cfg), "epochs_run": ran, "complete": complete,
               "final_val_accuracy": None, "val_predictions": None, "val_targets": None}
    if complete and distributed.is_main():
        ensemble = Ensemble([load_checkpoint(out / f"member{i}" / "model.pt")[0] for i in range(cfg.ensemble)])
        if val_set is not None:
            result = evaluate(ensemble, DataLoader(val_set, batch_size=cfg.batch_size), torch.device("cpu"))
            metrics.update(final_val_accuracy=result["accuracy"], val_predictions=result["preds"].tolist(),
                           val_targets=result["targets"].tolist())
            log(f"ensemble of {cfg.ensemble}: val acc {result['accuracy']:.4f} (members: "
                + ", ".join(f"{m['final_val_accuracy']:.4f}" for m in members) + ")")
        save_checkpoint(out / "model.pt", ensemble, class_names, cfg.input_size, epoch=cfg.epochs,
                        train_config=asdict(cfg))
        log(f"wrote {out / 'model.pt'}: the ensemble of {cfg.ensemble} models")
    if distributed.is_main():
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    distributed.barrier()
    return metrics


def _quiet(*args: Any, **kwargs: Any) -> None:
    """The log of ranks other than 0."""


def load_resume_state(run: str | Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The config and training state saved in RUN/last.pt."""
    path = Path(run) / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} not found")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if "training_state" not in ckpt:
        raise ValueError(f"--resume: {path} holds no training state")
    return TrainConfig(**ckpt["train_config"]), ckpt["training_state"]


def resume_config(run: str | Path) -> TrainConfig:
    """The settings of the interrupted run in RUN (an ensemble's RUN/config.json, else RUN/last.pt)."""
    path = Path(run) / "config.json"
    if path.is_file():
        return TrainConfig(**json.loads(path.read_text()))
    return load_resume_state(run)[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dir", nargs="+", help="class-per-folder training data (one or more)")
    parser.add_argument("--val-dir", help="class-per-folder validation data")
    parser.add_argument("--output-dir", help="run folder for checkpoints and metrics")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty --output-dir")
    parser.add_argument("--resume", metavar="RUN", help="continue the interrupted run in RUN with its own settings")
    parser.add_argument("--stop-after", type=int, metavar="N", help="end this invocation after N epochs")
    args, cfg, _ = parse_args(parser, argv)
    distributed.setup()
    try:
        if args.resume:
            cfg = resume_config(args.resume)
            out = Path(args.resume)
            train_dirs, val_dir = cfg.extra["train_dirs"], cfg.extra.get("val_dir")
        else:
            if not args.train_dir or not args.output_dir:
                parser.error("--train-dir and --output-dir are required (or --resume RUN)")
            out = prepare_output_dir(args.output_dir, args.overwrite)
            distributed.barrier()  # every rank has checked RUN before rank 0 writes into it
            train_dirs, val_dir = args.train_dir, args.val_dir
            cfg.extra["train_dirs"] = [str(Path(d).resolve()) for d in train_dirs]
            cfg.extra["val_dir"] = str(Path(val_dir).resolve()) if val_dir else None
        train = MugDataset(train_dirs, cfg.input_size, progress=distributed.is_main())
        val = MugDataset(val_dir, cfg.input_size, progress=distributed.is_main()) if val_dir else None
        if val is not None and val.num_classes != train.num_classes:
            raise DatasetError(f"{val_dir}: has {val.num_classes} classes, training data has {train.num_classes}")
        train_models(cfg, train_view(train, None, cfg),
                     TransformedSubset(val, transform=eval_transform()) if val is not None else None,
                     train.class_names, out, resume=bool(args.resume), stop_after=args.stop_after)
    except (DatasetError, FileExistsError, FileNotFoundError, WeightsUnavailable, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
