"""The training loop of one model (`fit`, with its `Fitter`), checkpointed into a run folder that an
interrupted run resumes from; `torch_trainer.training.run` puts models together into a run.

A model's folder holds model.pt (the model to export), last.pt (with optimiser state), best.pt (best
validation accuracy, when there is validation data) and metrics.json.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from mug_errors import SettingsError
from torch_trainer.training import distributed
from torch_trainer.training.augment import BatchAugment
from torch_trainer.training.build import autocast_dtype, build_model, make_optimizer, make_scheduler, make_train_loader, \
    pick_device, seed_everything, snapshot_steps
from torch_trainer.settings.plan import TrainConfig
from torch_trainer.training.distill import load_teacher, soft_target_loss
from torch_trainer.classifier.network import Ensemble, save_checkpoint, score_loader


class Fitter:
    """Everything one run changes as it goes: the model, its snapshots, the optimiser, the schedule
    and the random streams, with the steps a run is made of (an epoch, a checkpoint, a resume)."""

    def __init__(self, cfg: TrainConfig, train_set: Dataset, num_classes: int):
        self.cfg = cfg
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.device)
        # the teacher's probabilities on each augmented batch are the targets (distillation)
        self.teacher = load_teacher(cfg.teacher, self.device) if cfg.teacher else None
        self.model = build_model(cfg, num_classes).to(self.device)
        self.augment = BatchAugment(cfg)
        self.amp_dtype = autocast_dtype(cfg, self.device)
        # on the CPU channels-last is on with bf16 (1.08x over bf16 alone here); in float32 it was slower
        # on the Intel Xeon without AMX, so CPUs without bf16 hardware keep the default layout
        self.channels_last = cfg.channels_last == "on" or (
            cfg.channels_last == "auto" and (self.device.type == "cuda" or self.amp_dtype == torch.bfloat16))
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # every rank augments differently; DDP makes the weights identical anyway
        seed_everything(cfg.seed + distributed.rank())
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.loader = make_train_loader(train_set, cfg, self.generator, self.device)
        self.optimizer = make_optimizer(self.model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, len(self.loader))
        self.snapshot_at = snapshot_steps(cfg, len(self.loader)) if cfg.snapshots > 1 else []
        self.snapshots: list[dict[str, torch.Tensor]] = []  # the weights at the end of each cosine cycle
        self._snapshot_ensemble: Ensemble | None = None  # made once, when the last cycle ends
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step_model = self.model
        if distributed.world_size() > 1:
            self.step_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    @property
    def final(self) -> torch.nn.Module:
        """The model that validation and the checkpoints see: the snapshot ensemble once every
        cycle has ended, else the model."""
        if self._snapshot_ensemble is None and self.snapshot_at and len(self.snapshots) == len(self.snapshot_at):
            members = []
            for state in self.snapshots:
                member = copy.deepcopy(self.model)
                member.load_state_dict(state)
                members.append(member.eval())
            self._snapshot_ensemble = Ensemble(members)
        return self._snapshot_ensemble if self._snapshot_ensemble is not None else self.model

    def set_mode(self) -> None:
        """Train mode, but with `freeze_bn` the batch-norm statistics stay those it started with."""
        self.model.train()
        if self.cfg.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_one_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training data; returns the epoch's row of the history."""
        cfg, device = self.cfg, self.device
        self.set_mode()
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(epoch)
        t0, loss_sum, correct, seen = time.time(), 0.0, 0, 0
        bar = tqdm(self.loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, unit="batch", mininterval=1.0,
                   disable=not distributed.is_main())
        for images, labels in bar:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            images = self.augment(images)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                logits = self.step_model(images)
                if self.teacher is None:
                    loss = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
                else:
                    with torch.no_grad():
                        targets = self.teacher.probabilities(images).float()
                    loss = soft_target_loss(logits, targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.scheduler.last_epoch in self.snapshot_at:
                self.snapshots.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        loss_sum, correct, seen = distributed.sum_across(loss_sum, correct, seen)
        seconds = time.time() - t0
        return {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                "images": seen, "lr": self.optimizer.param_groups[-1]["lr"], "epoch_seconds": seconds,
                "images_per_second": seen / seconds}

    def state(self, history: list[dict[str, Any]], best_acc: float, epoch: int,
              rng_states: list[torch.Tensor]) -> dict[str, Any]:
        """What last.pt needs to continue the model's training exactly where it stopped; `rng_states` is
        every rank's random stream (`distributed.all_gather`), which each rank's augmentation draws from."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "snapshots": self.snapshots,
                "scaler": self.scaler.state_dict(), "generator": self.generator.get_state(),
                "torch_rng": rng_states, "history": history, "best_acc": best_acc, "epoch": epoch}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `state` saved in last.pt."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.snapshots, self._snapshot_ensemble = state["snapshots"], None
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        streams = state["torch_rng"]
        if len(streams) != distributed.world_size():
            raise SettingsError(f"--resume: the run was trained by {len(streams)} process(es), this is "
                                f"{distributed.world_size()}; resume it with as many")
        torch.set_rng_state(streams[distributed.rank()])


def fit(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, class_names: list[str],
        output_dir: str | Path, log=print, resume: dict[str, Any] | None = None,
        stop_after: int | None = None, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a model on `train_set`, checkpoint it to `output_dir`, return the metrics.

    `resume` is the `training_state` of a last.pt: training continues where it stopped, with the
    same optimiser, schedule, snapshots and random streams, so the result is the one an
    uninterrupted run gives. `stop_after` ends this invocation after that many epochs. `record`
    is the run's ({"run": its plan, "data": what it found}), kept in the checkpoints and metrics
    beside the model's settings.
    """
    out = Path(output_dir)
    main_rank = distributed.is_main()
    log = log if main_rank else quiet
    fitter = Fitter(cfg, train_set, len(class_names))
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size,
                            pin_memory=fitter.device.type == "cuda") if val_set is not None else None
    meta = dict(train_config=asdict(cfg), **(record or {}))
    history, best_acc, first_epoch, result = [], -1.0, 1, None
    if resume is not None:
        fitter.restore(resume)
        history, best_acc, first_epoch = resume["history"], resume["best_acc"], resume["epoch"] + 1
        log(f"resuming {out} after epoch {resume['epoch']}")
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
    log(f"training {cfg.arch} at {cfg.resolution} px from {fitter.model.weights_source} weights on {len(train_set)} images ({', '.join(class_names)}), "
        f"validating on {len(val_set) if val_set is not None else 0}, device {fitter.device}, "
        f"{distributed.world_size()} process(es) x {torch.get_num_threads()} threads, "
        f"amp {fitter.amp_dtype or 'off'}, channels-last {'on' if fitter.channels_last else 'off'}, "
        + (f"{cfg.snapshots} snapshots (steps {', '.join(map(str, fitter.snapshot_at))})" if fitter.snapshot_at else
           "one model") + (f", distilled from {cfg.teacher}" if cfg.teacher else ""))
    start, ran = time.time(), 0
    for epoch in range(first_epoch, cfg.epochs + 1):
        if stop_after is not None and ran >= stop_after:
            log(f"stopping after {ran} epoch(s) as asked")
            break
        row = fitter.train_one_epoch(epoch)
        line = f"epoch {epoch:3d}/{cfg.epochs}  loss {row['train_loss']:.4f}  train acc {row['train_accuracy']:.4f}"
        if val_loader is not None and main_rank:
            result = score_loader(fitter.final, val_loader, fitter.device)
            row.update(val_loss=result["loss"], val_accuracy=result["accuracy"])
            line += f"  val loss {result['loss']:.4f}  val acc {result['accuracy']:.4f}"
            if result["accuracy"] > best_acc:
                best_acc = result["accuracy"]
                save_checkpoint(out / "best.pt", fitter.final, class_names, cfg.input_size, epoch=epoch, **meta)
        log(line + f"  ({row['epoch_seconds']:.1f}s)")
        history.append(row)
        ran += 1
        rng_states = distributed.all_gather(torch.get_rng_state())  # a collective: every rank takes part
        if main_rank:
            save_checkpoint(out / "last.pt", fitter.final, class_names, cfg.input_size, epoch=epoch,
                            training_state=fitter.state(history, best_acc, epoch, rng_states), **meta)

    complete = bool(history) and history[-1]["epoch"] == cfg.epochs
    metrics = {"history": history, "weights_sources": [fitter.model.weights_source],
               "amp": str(fitter.amp_dtype).removeprefix("torch.") if fitter.amp_dtype else "off",
               "channels_last": fitter.channels_last, "snapshot_steps": fitter.snapshot_at,
               "train_seconds": sum(r["epoch_seconds"] for r in history),
               "final_val_accuracy": history[-1].get("val_accuracy") if history else None,
               "best_val_accuracy": best_acc if val_loader is not None else None,
               "num_train": len(train_set), "num_val": len(val_set) if val_set is not None else 0,
               "class_names": class_names, "config": asdict(cfg), **(record or {}), "world_size": distributed.world_size(),
               # the final model's validation predictions, for per-class reports without a second pass
               "val_predictions": result["preds"].tolist() if result is not None else None,
               "val_targets": result["targets"].tolist() if result is not None else None,
               "epochs_run": ran, "complete": complete}
    if main_rank:
        if complete:
            save_checkpoint(out / "model.pt", fitter.final, class_names, cfg.input_size, epoch=cfg.epochs, **meta)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    distributed.barrier()
    log(f"done in {time.time() - start:.0f}s; wrote "
        f"{out / 'model.pt' if complete else out / 'last.pt'} and {out / 'metrics.json'}")
    return metrics


def quiet(*args: Any, **kwargs: Any) -> None:
    """The log of ranks other than 0."""
