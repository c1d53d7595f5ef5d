"""An ensemble of K models: trained by seed, saved as one checkpoint, exported as one graph."""

import json

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader

from check_deployed_model.saved_model import SavedModelPredictor
from conftest import run_module
from convert.contract import check_contract
from convert.export_onnx import load_pixels, torch_probabilities
from torch_trainer.augment import TransformedSubset, eval_transform
from torch_trainer.data import MugDataset
from torch_trainer.model import Ensemble, MugClassifier, load_checkpoint

ARGS = ("--epochs", "2", "--weights", "none", "--batch-size", "16", "--ensemble", "2", "--swa-start", "0.5")


@pytest.fixture(scope="module")
def ensemble_run(data_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("ensemble") / "run"
    proc = run_module("torch_trainer.train", "--train-dir", str(data_root / "train"), "--val-dir",
                      str(data_root / "eval"), "--output-dir", str(run), *ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc.stdout


def test_members_train_with_their_own_seeds_and_save_as_one(ensemble_run, data_root):
    run, stdout = ensemble_run
    assert "member 2/2 (seed 1)" in stdout and "ensemble of 2: val acc" in stdout
    model, meta = load_checkpoint(run / "model.pt")
    assert isinstance(model, Ensemble) and meta["members"] == 2 and len(model.members) == 2
    members = [load_checkpoint(run / f"member{i}" / "model.pt")[0] for i in range(2)]
    assert all(isinstance(m, MugClassifier) for m in members)
    assert not torch.equal(members[0].net.fc.weight, members[1].net.fc.weight)
    x = torch.rand(5, 3, 64, 64)
    with torch.no_grad():
        mean = (members[0](x).softmax(1) + members[1](x).softmax(1)) / 2
        torch.testing.assert_close(model.probabilities(x), mean)
        torch.testing.assert_close(model(x).softmax(1), mean)  # forward: log of the mean, usable as logits
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["members"]) == 2 and metrics["complete"]
    assert [r["member"] for r in metrics["history"]] == [0, 0, 1, 1]
    eval_data = MugDataset(data_root / "eval")
    preds = model.probabilities(eval_data.images.float() / 255).argmax(1)
    assert metrics["val_predictions"] == preds.tolist()


def test_swa_batch_norm_is_recomputed_on_the_training_photos(ensemble_run, data_root):
    run, stdout = ensemble_run
    assert "batch-norm statistics of the averaged weights recomputed" in stdout
    member, _ = load_checkpoint(run / "member0" / "model.pt")
    again, _ = load_checkpoint(run / "member0" / "model.pt")
    photos = TransformedSubset(MugDataset(data_root / "train"), transform=eval_transform())
    update_bn(DataLoader(photos, batch_size=16), again)
    for name, buffer in member.state_dict().items():
        if "running_" in name:
            torch.testing.assert_close(buffer, again.state_dict()[name])
    # and they are not the (averaged) statistics of training: a fresh update from other data moves them
    update_bn(DataLoader(torch.rand(32, 3, 64, 64), batch_size=16), again)
    assert not torch.allclose(member.net.bn1.running_mean, again.net.bn1.running_mean)


def test_ensemble_exports_as_one_graph_with_parity(ensemble_run, data_root, tmp_path):
    run, _ = ensemble_run
    out = tmp_path / "export"
    proc = run_module("convert.to_savedmodel", "--checkpoint", str(run / "model.pt"), "--output-dir", str(out),
                      "--images", str(data_root / "eval"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "40 Conv2D" in proc.stdout  # two ResNet18s (20 convolutions each) in one graph
    check_contract(out)
    model, _ = load_checkpoint(run / "model.pt")
    files = sorted((data_root / "eval").rglob("*.jpg"))
    reference = torch_probabilities(model, load_pixels(files, 64))
    members = [load_checkpoint(run / f"member{i}" / "model.pt")[0] for i in range(2)]
    np.testing.assert_allclose(reference, np.mean([torch_probabilities(m, load_pixels(files, 64))
                                                   for m in members], 0), atol=1e-6)
    blobs = [f.read_bytes() for f in files]
    for loader in ("graph", "tf2"):
        got = SavedModelPredictor(out, loader).predict(blobs)
        np.testing.assert_allclose(got["PROBABILITIES"], reference, atol=1e-5)
        assert np.array_equal(got["CLASSES"], reference.argmax(1))


def test_interrupted_ensemble_resumes_to_the_same_model(ensemble_run, data_root, tmp_path):
    run, _ = ensemble_run
    part = tmp_path / "part"
    first = run_module("torch_trainer.train", "--train-dir", str(data_root / "train"), "--val-dir",
                       str(data_root / "eval"), "--output-dir", str(part), *ARGS, "--stop-after", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    # member 0 finished, member 1 stopped after its first epoch: no ensemble yet
    assert (part / "member0" / "model.pt").is_file() and not (part / "member1" / "model.pt").exists()
    assert not (part / "model.pt").exists() and f"--resume {part}" in first.stdout
    resumed = run_module("torch_trainer.train", "--resume", str(part))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "member 1/2: already trained" in resumed.stdout
    a = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(part / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_ensemble_size_is_a_clear_error(data_root, tmp_path):
    proc = run_module("torch_trainer.train", "--train-dir", str(data_root / "eval"), "--output-dir",
                      str(tmp_path / "run"), "--weights", "none", "--ensemble", "0")
    assert proc.returncode == 2 and "--ensemble" in proc.stderr and "Traceback" not in proc.stderr
