"""The options the Lite0 candidates train with: LP-FT's probe epochs, batch-norm statistics kept,
WiSE-FT's weight interpolation, and the probe's schedule (cosine under the warm-up)."""

import math

import pytest
import torch

from torch_trainer.augment import train_view
from torch_trainer.build import make_scheduler
from torch_trainer.config import TrainConfig
from torch_trainer.data import MugDataset
from torch_trainer.fit import Fitter

SMALL = dict(weights="none", batch_size=16, ensemble=1, amp="off")


@pytest.fixture(scope="module")
def photos(data_root):
    data = MugDataset(data_root / "eval")
    return train_view(data), len(data.class_names)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_probe_epochs_train_the_head_alone_then_everything(photos):
    fitter = Fitter(TrainConfig(epochs=2, probe_epochs=1, **SMALL), *photos)
    start = snapshot(fitter.model)
    fitter.train_one_epoch(1)
    probed = snapshot(fitter.model)
    changed = {k for k in start if not torch.equal(start[k], probed[k])}
    # only the head learned; the backbone's weights and batch-norm statistics are ImageNet's (here: init) still
    assert changed == {"net.fc.weight", "net.fc.bias"}
    fitter.train_one_epoch(2)
    tuned = snapshot(fitter.model)
    assert not torch.equal(tuned["net.conv1.weight"], probed["net.conv1.weight"])
    assert not torch.equal(tuned["net.bn1.running_mean"], probed["net.bn1.running_mean"])


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


def test_wise_ft_serves_the_mean_of_the_start_of_fine_tuning_and_its_end(photos):
    fitter = Fitter(TrainConfig(epochs=2, probe_epochs=1, wise_alpha=0.25, **SMALL), *photos)
    fitter.train_one_epoch(1)
    after_probe = snapshot(fitter.model)
    fitter.train_one_epoch(2)
    end = snapshot(fitter.model)
    fitter.apply_wise()
    served = fitter.model.state_dict()
    for key, value in served.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * after_probe[key] + 0.25 * end[key], msg=key)
        else:  # counters (num_batches_tracked) are the end's
            assert torch.equal(value, end[key])
    with pytest.raises(ValueError, match="--wise-alpha"):
        Fitter(TrainConfig(epochs=2, wise_alpha=0, **SMALL), *photos)
    with pytest.raises(ValueError, match="choose one"):
        Fitter(TrainConfig(epochs=2, wise_alpha=0.5, snapshots=2, **SMALL), *photos)


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
    with pytest.raises(ValueError, match="unknown schedule"):
        make_scheduler(optimizer, TrainConfig(schedule="linear"), 10)
