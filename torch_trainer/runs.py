"""A run: its teacher (when it names a recipe), then its families or its one ensemble of models, each
model trained by `torch_trainer.fit.fit`; the served average of them all.

A run folder holds RUN/config.json (the settings, for resuming), RUN/model.pt (what is exported) and
RUN/metrics.json; an ensemble's members train in RUN/memberI/, a family in RUN/FAMILY/ (its settings
as the run began in RUN/families.json), a recipe teacher in RUN/teacher/.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from mug_errors import SettingsError
from torch_trainer import distributed
from torch_trainer.build import pick_device
from torch_trainer.config import TrainConfig, family_config, family_name, load_recipe
from torch_trainer.distill import is_checkpoint
from torch_trainer.fit import fit, quiet
from torch_trainer.model import Ensemble, load_checkpoint, save_checkpoint, score_loader
from torch_trainer.run_folder import load_resume_state, resume_config


def train_models(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, class_names: list[str],
                 output_dir: str | Path, log=print, resume: bool = False, stop_after: int | None = None
                 ) -> dict[str, Any]:
    """A whole run: its teacher first when it names a recipe (`train_teacher`), then its families
    (`train_families`) or its one ensemble (`train_ensemble`); returns the metrics.

    RUN/config.json records `cfg` for `--resume`. With `resume`, what finished is kept and what was
    interrupted continues from its last.pt; `stop_after` counts epochs over the whole run.
    """
    out = Path(output_dir)
    log = log if distributed.is_main() else quiet
    check_ensemble(cfg)
    record_config(cfg, out)
    if cfg.teacher and not is_checkpoint(cfg.teacher):
        teacher = train_teacher(cfg, train_set, val_set, class_names, out / "teacher", log, resume, stop_after)
        if not teacher["complete"]:
            return teacher
        cfg = replace(cfg, teacher=str(out / "teacher" / "model.pt"))
        stop_after = None if stop_after is None else stop_after - teacher["epochs_run"]
    if cfg.families:
        return train_families(cfg, train_set, val_set, class_names, out, log, resume, stop_after)
    return train_ensemble(cfg, train_set, val_set, class_names, out, log, resume, stop_after)


def check_ensemble(cfg: TrainConfig) -> None:
    """SettingsError for an ensemble size or member sizes that do not fit, before anything is written."""
    if cfg.ensemble < 1:
        raise SettingsError(f"--ensemble must be at least 1, not {cfg.ensemble}")
    if cfg.member_image_sizes and len(cfg.member_image_sizes) != cfg.ensemble:
        raise SettingsError(f"--member-image-sizes: {len(cfg.member_image_sizes)} sizes for --ensemble {cfg.ensemble}")


def record_config(cfg: TrainConfig, out: Path) -> None:
    """RUN/config.json: what --resume reads back, without loading a checkpoint for it."""
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))


def train_ensemble(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, class_names: list[str],
                   out: Path, log, resume: bool, stop_after: int | None) -> dict[str, Any]:
    """`fit` one model, or with `cfg.ensemble` K > 1 K models as one ensemble, in `out`.

    Member i trains with seed `cfg.seed + i` in RUN/memberI/ (its own model.pt, last.pt and
    metrics.json); once all are trained RUN/model.pt holds the `Ensemble` (the mean of their
    probabilities) and RUN/metrics.json the members' metrics and the ensemble's validation."""
    check_ensemble(cfg)
    if cfg.teacher and not is_checkpoint(cfg.teacher):
        raise SettingsError(f"--teacher {cfg.teacher}: a family's teacher must be a trained model.pt; a recipe "
                            f"teacher is trained for a whole run, not for one family")
    if cfg.ensemble == 1:
        state = load_resume_state(out) if resume and (out / "last.pt").is_file() else None
        return fit(cfg, train_set, val_set, class_names, out, log=log, resume=state, stop_after=stop_after)
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
        member_cfg = replace(cfg, seed=cfg.seed + i, ensemble=1, member_image_sizes=[],
                             image_size=cfg.member_image_sizes[i] if cfg.member_image_sizes else cfg.image_size)
        state = load_resume_state(member_dir) if resume and (member_dir / "last.pt").is_file() else None
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
    ensemble = None
    if complete and distributed.is_main():
        # a member that is itself an ensemble (of snapshots) contributes each of its models
        ensemble = Ensemble([model for i in range(cfg.ensemble)
                             for model in load_checkpoint(out / f"member{i}" / "model.pt")[0].classifiers])
    return finish_ensemble(ensemble, metrics, members, cfg, val_set, class_names, out, log,
                           f"the ensemble of {cfg.ensemble} models", epoch=cfg.epochs)


def finish_ensemble(ensemble: Ensemble | None, metrics: dict[str, Any], parts: list[dict[str, Any]],
                    cfg: TrainConfig, val_set: Dataset | None, class_names: list[str], out: Path, log,
                    what: str, **extra: Any) -> dict[str, Any]:
    """The end of `train_models` for an ensemble (None until every part is trained, and on ranks
    other than 0): its validation beside its parts', RUN/model.pt, and RUN/metrics.json."""
    if ensemble is not None:
        if val_set is not None:
            device = pick_device(cfg.device)
            result = score_loader(ensemble.to(device), DataLoader(val_set, batch_size=cfg.batch_size), device)
            metrics.update(final_val_accuracy=result["accuracy"], val_predictions=result["preds"].tolist(),
                           val_targets=result["targets"].tolist())
            log(f"{what}: val acc {result['accuracy']:.4f} (its parts: "
                + ", ".join(f"{m['final_val_accuracy']:.4f}" for m in parts) + ")")
        save_checkpoint(out / "model.pt", ensemble, class_names, cfg.input_size, train_config=asdict(cfg), **extra)
        log(f"wrote {out / 'model.pt'}: {what}")
    if distributed.is_main():
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    distributed.barrier()
    return metrics


def train_families(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, class_names: list[str],
                   out: Path, log, resume: bool, stop_after: int | None) -> dict[str, Any]:
    """`train_models` for a recipe of families: each family (a recipe of its own, with the command
    line's flags on top) trains in RUN/FAMILY/; RUN/model.pt is the `Ensemble` of the family models,
    so each family's mean weighs the same however many models it has."""
    names = [family_name(f) for f in cfg.families]
    if len(set(names)) != len(names):
        raise SettingsError(f"recipe {cfg.recipe}: two families share a name ({', '.join(names)})")
    # each family's settings as the run began, so that a resumed run does not read today's recipe files
    recorded = out / "families.json"
    if resume and recorded.is_file():
        configs = [TrainConfig(**values) for values in json.loads(recorded.read_text())]
    else:
        configs = [family_config(cfg, family) for family in cfg.families]
        if distributed.is_main():
            recorded.write_text(json.dumps([asdict(c) for c in configs], indent=2))
    families, ran = [], 0
    for k, (family_cfg, name) in enumerate(zip(configs, names)):
        if stop_after is not None and ran >= stop_after:
            log(f"stopping after {ran} epoch(s) as asked; continue with --resume {out}")
            break
        if family_cfg.input_size != cfg.input_size:  # the photos were loaded once, at the run's input size
            raise SettingsError(f"family {name}: input size {family_cfg.input_size}, but the run loads its photos "
                                f"at {cfg.input_size} (the serving input); image_size sets what a network sees")
        log(f"family {k + 1}/{len(names)}: {name} ({family_cfg.ensemble} x {family_cfg.arch} at "
            f"{family_cfg.image_size} px, weights {family_cfg.weights}) in {out / name}")
        finished = out / name / "metrics.json"
        metrics = json.loads(finished.read_text()) if resume and finished.is_file() else {}
        if metrics.get("complete"):
            log(f"family {name}: already trained ({out / name / 'model.pt'})")
        else:
            record_config(family_cfg, out / name)
            metrics = train_ensemble(family_cfg, train_set, val_set, class_names, out / name, log, resume,
                                     None if stop_after is None else stop_after - ran)
            ran += metrics["epochs_run"]
        families.append(dict(metrics, family=name))
        if not metrics["complete"]:
            break
    complete = len(families) == len(names) and all(m["complete"] for m in families)
    metrics = {"families": families, "train_seconds": sum(m["train_seconds"] for m in families),
               "history": [dict(row, family=m["family"]) for m in families for row in m["history"]],
               "num_train": len(train_set), "num_val": len(val_set) if val_set is not None else 0,
               "class_names": class_names, "config": asdict(cfg), "epochs_run": ran, "complete": complete,
               "weights_sources": {m["family"]: family_sources(m) for m in families},
               "final_val_accuracy": None, "val_predictions": None, "val_targets": None}
    ensemble = None
    if complete and distributed.is_main():
        ensemble = Ensemble([load_checkpoint(out / name / "model.pt")[0] for name in names])
    return finish_ensemble(ensemble, metrics, families, cfg, val_set, class_names, out, log,
                           f"{len(names)} families, each family's mean weighing the same", families=names)


def train_teacher(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, class_names: list[str],
                  out: Path, log, resume: bool, stop_after: int | None) -> dict[str, Any]:
    """Train the recipe that `cfg.teacher` names (with the run's data and seed, none of its flags)
    into `out`, unless a resumed run finished it already; returns its metrics."""
    teacher_cfg = resume_config(out) if resume and (out / "config.json").is_file() else replace(
        load_recipe(cfg.teacher), seed=cfg.seed, train_dirs=cfg.train_dirs, val_dir=cfg.val_dir, val_files=cfg.val_files)
    if teacher_cfg.input_size != cfg.input_size or teacher_cfg.teacher:
        raise SettingsError(f"--teacher {cfg.teacher}: a teacher loads photos at the student's input size "
                            f"({cfg.input_size}) and is not distilled itself")
    finished = out / "metrics.json"
    if resume and finished.is_file() and json.loads(finished.read_text()).get("complete"):
        log(f"teacher {cfg.teacher}: already trained ({out / 'model.pt'})")
        return dict(json.loads(finished.read_text()), epochs_run=0)
    log(f"teacher: recipe {cfg.teacher} in {out}, then the student distilled from it")
    return train_models(teacher_cfg, train_set, val_set, class_names, out, log=log,
                        resume=resume and (out / "config.json").is_file(), stop_after=stop_after)


def family_sources(metrics: dict[str, Any]) -> list[str]:
    """Where each model of a run's metrics started from (an ensemble's members in order)."""
    if "weights_source" in metrics:
        return [metrics["weights_source"]]
    return [source for m in metrics.get("members", []) for source in family_sources(m)]
