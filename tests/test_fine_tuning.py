"""The options the pretrained family and the candidates train with: batch-norm statistics kept, the
Lite0s' schedule (cosine under the warm-up), and distillation from a teacher."""

import json
import math

import pytest
import torch

from torch_trainer.training.augment import train_view
from torch_trainer.training.build import make_scheduler
from torch_trainer.settings.plan import Family, RunPlan, TrainConfig
from torch_trainer.classifier.photos import MugDataset
from torch_trainer.training.distill import soft_target_loss
from torch_trainer.training.fit import Fitter
from torch_trainer.classifier.network import Ensemble, MugClassifier, load_checkpoint, save_checkpoint

SMALL = dict(weights="none", batch_size=16, amp="off")


@pytest.fixture(scope="module")
def photos(data_root):
    data = MugDataset(data_root / "eval")
    return train_view(data), len(data.class_names)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_freeze_bn_keeps_the_starting_statistics_and_trains_the_rest(photos):
    frozen = Fitter(TrainConfig(epochs=1, freeze_bn=True, **SMALL), *photos)
    free = Fitter(TrainConfig(epochs=1, **SMALL), *photos)
    before = snapshot(frozen.model)
    frozen.train_one_epoch(1)
    free.train_one_epoch(1)
    after = snapshot(frozen.model)
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert not torch.equal(free.model.state_dict()["net.bn1.running_mean"], before["net.bn1.running_mean"])
    # the scale and shift of batch norm still learn
    assert not torch.equal(before["net.bn1.weight"], after["net.bn1.weight"])


def test_a_student_learns_from_its_teachers_probabilities_on_the_augmented_batch(photos, tmp_path, monkeypatch):
    """--teacher: the loss of every step is the cross-entropy against the teacher's probabilities on
    the very pictures the student sees (augmented), not against the labels."""
    torch.manual_seed(5)
    teacher = Ensemble([MugClassifier("resnet18", 4, 64).eval() for _ in range(2)])
    save_checkpoint(tmp_path / "teacher.pt", teacher, ["a", "b", "c", "d"], 64)
    seen = []

    def spy(logits, targets):
        seen.append(targets)
        return soft_target_loss(logits, targets)

    monkeypatch.setattr("torch_trainer.training.fit.soft_target_loss", spy)
    augmented = []
    fitter = Fitter(TrainConfig(epochs=1, teacher=str(tmp_path / "teacher.pt"), **SMALL), *photos)
    original = fitter.augment
    fitter.augment = lambda images: augmented.append(original(images)) or augmented[-1]
    fitter.train_one_epoch(1)
    assert len(seen) == len(augmented) == len(fitter.loader) > 1
    for images, targets in zip(augmented, seen):
        with torch.no_grad():
            torch.testing.assert_close(targets, teacher.probabilities(images))
    # soft targets, not one-hot labels: the teacher's probabilities, rows summing to 1
    assert all(((t > 0.01) & (t < 0.99)).any() for t in seen)
    # the loss is the cross-entropy against them: minimal (the teacher's entropy) at the teacher's own logits
    logits = torch.randn(6, 4)
    probs = logits.softmax(1)
    entropy = -(probs * probs.log()).sum(1).mean()
    torch.testing.assert_close(soft_target_loss(logits, probs), entropy)
    assert soft_target_loss(torch.randn(6, 4), probs) > entropy
    # a teacher that is not there is a clear error
    with pytest.raises(FileNotFoundError, match="--teacher: .*nothing.pt is not a file"):
        Fitter(TrainConfig(epochs=1, teacher=str(tmp_path / "nothing.pt"), **SMALL), *photos)


def test_cosine_under_warmup_is_the_probes_schedule():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = TrainConfig(epochs=4, warmup_epochs=1, schedule="cosine-under-warmup")
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=10)
    seen = []
    for _ in range(40):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [1e-3 * min(1, (s + 1) / 10) * 0.5 * (1 + math.cos(math.pi * s / 40)) for s in range(40)]
    assert seen == pytest.approx(expected)
    # unlike warmup-then-cosine, the cosine has already fallen when the warm-up ends
    assert seen[9] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 9 / 40)))
    with pytest.raises(ValueError, match=r"schedule \(--schedule\) must be one of warmup-then-cosine"):
        make_scheduler(optimizer, TrainConfig(schedule="linear"), 10)


def test_a_teacher_named_by_recipe_is_trained_first_and_a_stopped_run_resumes(data_root, tmp_path):
    from torch_trainer.training import jobs
    teacher = tmp_path / "teacher.json"
    teacher.write_text(json.dumps({"epochs": 1, "ensemble": 2, "batch_size": 16, "amp": "off"}))
    student = RunPlan([Family("student", [TrainConfig(epochs=1, teacher=str(teacher), **SMALL)])], "student")
    out = tmp_path / "run"
    first = jobs.train(student, out, data_root / "eval", stop_after=2, log=lambda *a: None)
    # the stop came after the teacher's two members, before the student
    assert not first["complete"] and (out / "teacher" / "model.pt").is_file() and not (out / "model.pt").exists()
    metrics = jobs.resume(out, log=lambda *a: None)
    assert metrics["complete"] and metrics["config"]["teacher"] == str(out / "teacher" / "model.pt")
    model, meta = load_checkpoint(out / "model.pt")
    assert isinstance(model, MugClassifier)  # only the student is served
    # the run's record: the recipe
    assert json.loads((out / "config.json").read_text())["families"][0]["models"][0]["teacher"] == str(teacher)
