"""A run: its teacher first (when it names a recipe), then each family's models, one by one
(`torch_trainer.training.fit.fit`), then the served average (`average`): each family's mean, and
the mean of the families, so that each family weighs the same however many models it has.

A run folder holds RUN/config.json (the plan, `RunPlan.record`) and RUN/data.json (what the run
found, `RunData.record`), which --resume reads, RUN/model.pt (what is exported) and
RUN/metrics.json. With several families, family F lives in RUN/F/; with several models, model i
of a family in its folder's memberI/; a folder of one model holds that model's checkpoints
(model.pt, last.pt, best.pt). A recipe teacher trains in RUN/teacher/.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from mug_errors import SettingsError
from torch_trainer.classifier.network import Ensemble, load_checkpoint, save_checkpoint, score_loader
from torch_trainer.settings.plan import Family, RunPlan, family_summary
from torch_trainer.settings.recipes import load_recipe
from torch_trainer.training import distributed
from torch_trainer.training.build import pick_device
from torch_trainer.training.data import RunData
from torch_trainer.training.distill import is_checkpoint
from torch_trainer.training.fit import fit, quiet
from torch_trainer.training.folder import load_resume_state, read_run, write_run


def train_run(plan: RunPlan, data: RunData, train_set: Dataset, val_set: Dataset | None, class_names: list[str],
              output_dir: str | Path, log=print, resume: bool = False, stop_after: int | None = None
              ) -> dict[str, Any]:
    """Train every model of `plan` on `train_set` (what `data` records) into `output_dir` and average
    them; returns the run's metrics.

    With `resume`, a model that finished is kept and one that was interrupted continues from its
    last.pt; `stop_after` counts epochs over the whole run (the teacher's too)."""
    out = Path(output_dir)
    log = log if distributed.is_main() else quiet
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        write_run(out, plan, data)
    record = {"run": plan.record(), "data": data.record()}  # what each checkpoint and metrics.json carries
    teachers = sorted({m.teacher for m in plan.models if m.teacher and not is_checkpoint(m.teacher)})
    run = plan  # what trains: the plan, once a recipe teacher has trained with its model.pt in its place
    if len(teachers) > 1:
        raise SettingsError(f"--teacher: one recipe teacher a run, not {', '.join(teachers)}")
    if teachers:
        teacher = train_teacher(plan, data, teachers[0], train_set, val_set, class_names, out / "teacher", log,
                                resume, stop_after)
        if not teacher["complete"]:
            return teacher
        path = str(out / "teacher" / "model.pt")
        run = plan.with_models(lambda m: replace(m, teacher=path) if m.teacher == teachers[0] else m)
        stop_after = None if stop_after is None else stop_after - teacher["epochs_run"]
    families, ran = [], 0
    for k, family in enumerate(run.families):
        folder = out / family.name if len(run.families) > 1 else out
        log(f"family {k + 1}/{len(run.families)}: {family_summary(family)}")
        metrics = train_family(family, run, record, train_set, val_set, class_names, folder, log, resume,
                               None if stop_after is None else stop_after - ran)
        if metrics is None:  # stopped before its first model
            break
        ran += metrics["epochs_run"]
        families.append(metrics)
        if not metrics["complete"]:
            break
    if len(run.families) == 1:
        return families[0] if families else {"complete": False, "epochs_run": 0, "history": []}
    return average([dict(m, family=f.name) for m, f in zip(families, run.families)], len(run.families), "family",
                   run, record, val_set, class_names, out, log,
                   f"{len(run.families)} families, each family's mean weighing the same",
                   families=[f.name for f in run.families])


def train_family(family: Family, run: RunPlan, record: dict[str, Any], train_set: Dataset, val_set: Dataset | None,
                 class_names: list[str], folder: Path, log, resume: bool, stop_after: int | None
                 ) -> dict[str, Any] | None:
    """Each model of `family` in turn (`fit`; model i in FOLDER/memberI/, a lone model in FOLDER), then
    their mean (`average`); returns the family's metrics, or None when `stop_after` came first. `record`
    (the run's plan and data) goes into every checkpoint."""
    if resume and finished(folder):
        log(f"family {family.name}: already trained ({folder / 'model.pt'})")
        return read_metrics(folder)
    parts, ran = [], 0
    for i, model in enumerate(family.models):
        model_dir = folder / f"member{i}" if len(family.models) > 1 else folder
        if resume and finished(model_dir):
            log(f"model {i + 1}/{len(family.models)}: already trained ({model_dir / 'model.pt'})")
            parts.append(read_metrics(model_dir))
            continue
        if stop_after is not None and ran >= stop_after:
            log(f"stopping after {ran} epoch(s) as asked")
            break
        state = load_resume_state(model_dir) if resume and (model_dir / "last.pt").is_file() else None
        log(f"model {i + 1}/{len(family.models)} of {family.name} (seed {model.seed}) in {model_dir}")
        metrics = fit(model, train_set, val_set, class_names, model_dir, log=log, resume=state,
                      stop_after=None if stop_after is None else stop_after - ran, record=record)
        ran += metrics["epochs_run"]
        parts.append(metrics)
        if not metrics["complete"]:
            break
    if not parts or len(family.models) == 1:
        return parts[0] if parts else None
    return average(parts, len(family.models), "member", run, record, val_set, class_names, folder, log,
                   f"family {family.name}, the mean of {len(family.models)} models")


def finished(folder: Path) -> bool:
    """Whether `folder` holds a finished model or average (its metrics.json says complete)."""
    return (folder / "metrics.json").is_file() and read_metrics(folder).get("complete", False)


def read_metrics(folder: Path) -> dict[str, Any]:
    """FOLDER/metrics.json, with no epochs run by this invocation."""
    return dict(json.loads((folder / "metrics.json").read_text()), epochs_run=0)


def average(parts: list[dict[str, Any]], expected: int, kind: str, run: RunPlan, record: dict[str, Any],
            val_set: Dataset | None, class_names: list[str], out: Path, log, what: str,
            **extra: Any) -> dict[str, Any]:
    """The mean of a family's models (`kind` "member", in OUT/memberI/) or of the run's families
    (`kind` "family", in OUT/NAME/), once all `expected` parts are complete: validated beside its
    parts, in OUT/model.pt; OUT/metrics.json holds the parts' metrics either way; `record` (the
    run's plan and data) goes into its checkpoint."""
    complete = len(parts) == expected and all(p["complete"] for p in parts)
    metrics = {f"{kind}s" if kind == "member" else "families": parts,
               "train_seconds": sum(p["train_seconds"] for p in parts),
               "history": [dict(row, **{kind: p.get("family", i)}) for i, p in enumerate(parts) for row in p["history"]],
               "num_train": parts[0]["num_train"], "num_val": parts[0]["num_val"], "class_names": class_names,
               **record, "epochs_run": sum(p["epochs_run"] for p in parts), "complete": complete,
               "weights_sources": [s for p in parts for s in p["weights_sources"]],
               "final_val_accuracy": None, "val_predictions": None, "val_targets": None}
    if complete and distributed.is_main():
        if kind == "member":  # a model that is itself an ensemble (of snapshots) gives each of its models
            ensemble = Ensemble([leaf for i in range(expected)
                                 for leaf in load_checkpoint(out / f"member{i}" / "model.pt")[0].classifiers])
        else:
            ensemble = Ensemble([load_checkpoint(out / p["family"] / "model.pt")[0] for p in parts])
        if val_set is not None:
            device = pick_device(run.models[0].device)
            loader = DataLoader(val_set, batch_size=run.models[0].batch_size)
            result = score_loader(ensemble.to(device), loader, device)
            metrics.update(final_val_accuracy=result["accuracy"], val_predictions=result["preds"].tolist(),
                           val_targets=result["targets"].tolist())
            log(f"{what}: val acc {result['accuracy']:.4f} (its parts: "
                + ", ".join(f"{p['final_val_accuracy']:.4f}" for p in parts) + ")")
        save_checkpoint(out / "model.pt", ensemble.cpu(), class_names, run.input_size, **record, **extra)
        log(f"wrote {out / 'model.pt'}: {what}")
    if distributed.is_main():
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    distributed.barrier()
    return metrics


def train_teacher(plan: RunPlan, data: RunData, recipe: str, train_set: Dataset, val_set: Dataset | None,
                  class_names: list[str], out: Path, log, resume: bool, stop_after: int | None) -> dict[str, Any]:
    """Train `recipe` (with the run's data and seed, none of its flags) into `out` as the teacher of
    the run's distilled models, unless a resumed run finished it already; returns its metrics."""
    started = resume and (out / "config.json").is_file()
    teacher = read_run(out)[0] if started else load_recipe(recipe).reseeded(plan.seed)
    if teacher.input_size != plan.input_size or any(m.teacher for m in teacher.models):
        raise SettingsError(f"--teacher {recipe}: a teacher loads photos at the student's input size "
                            f"({plan.input_size}) and is not distilled itself")
    if resume and finished(out):
        log(f"teacher {recipe}: already trained ({out / 'model.pt'})")
        return read_metrics(out)
    log(f"teacher: recipe {recipe} in {out}, then the student distilled from it")
    return train_run(teacher, data, train_set, val_set, class_names, out, log=log, resume=started,
                     stop_after=stop_after)
