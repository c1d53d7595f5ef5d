"""An ensemble of K models: trained by seed, saved as one checkpoint. (Its export as one graph of
networks at two input sizes: the main job's, tests/test_trainer.py.)"""

import json

import pytest
import torch

from conftest import run_main, run_module
from torch_trainer.classifier.photos import MugDataset
from torch_trainer.classifier.network import Ensemble, MugClassifier, load_checkpoint

# two members, the second at 128 px: one checkpoint holds members of different input sizes
ARGS = ("--epochs", "2", "--weights", "none", "--batch-size", "16", "--ensemble", "2", "--member-resolutions", "64", "128")


@pytest.fixture(scope="module")
def ensemble_run(data_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("ensemble") / "run"
    proc = run_module("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(data_root / "train"), "--val-dir",
                      str(data_root / "eval"), "--output-dir", str(run), *ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc.stdout


def test_members_train_with_their_own_seeds_and_save_as_one(ensemble_run, data_root):
    run, stdout = ensemble_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert [m["config"]["seed"] for m in metrics["members"]] == [0, 1] and metrics["final_val_accuracy"] is not None
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


def test_interrupted_ensemble_resumes_to_the_same_model(ensemble_run, data_root, tmp_path):
    run, _ = ensemble_run
    part = tmp_path / "part"
    first = run_main("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(data_root / "train"), "--val-dir",
                       str(data_root / "eval"), "--output-dir", str(part), *ARGS, "--stop-after", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    # member 0 finished, member 1 stopped after its first epoch: no ensemble yet
    assert (part / "member0" / "model.pt").is_file() and not (part / "member1" / "model.pt").exists()
    assert not (part / "model.pt").exists() and f"--resume {part}" in first.stdout
    resumed = run_main("torch_trainer.train", "--resume", str(part))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "model 1/2: already trained" in resumed.stdout
    a = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(part / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_ensemble_size_is_a_clear_error(data_root, tmp_path):
    proc = run_main("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--output-dir",
                    str(tmp_path / "run"), "--weights", "none", "--ensemble", "0")
    assert proc.returncode == 2 and "--ensemble" in proc.stderr and "Traceback" not in proc.stderr


def test_snapshots_are_the_weights_at_the_end_of_each_cosine_cycle(data_root, tmp_path):
    # 32 pictures in batches of 8: 4 steps an epoch; 4 epochs = 4 steps of warm-up + 3 cycles of 4,
    # so the cycles end with epochs 2, 3 and 4, where last.pt holds the raw weights
    run = tmp_path / "run"
    args = ["--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--epochs", "4", "--snapshots", "3", "--ensemble", "1",
            "--weights", "none", "--batch-size", "8", "--output-dir", str(run)]
    raw = []
    for step_args in (args + ["--stop-after", "2"], ["--resume", str(run), "--stop-after", "1"], ["--resume", str(run)]):
        proc = run_main("torch_trainer.train", *step_args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        raw.append(torch.load(run / "last.pt", weights_only=True)["training_state"]["model"])
    assert json.loads((run / "metrics.json").read_text())["snapshot_steps"] == [8, 12, 16]
    model, meta = load_checkpoint(run / "model.pt")
    assert isinstance(model, Ensemble) and meta["members"] == 3
    for member, state in zip(model.members, raw):
        for name, value in member.state_dict().items():
            assert torch.equal(value, state[name]), name
    assert not torch.equal(raw[0]["net.fc.weight"], raw[2]["net.fc.weight"])


def test_member_resolutions_must_match_the_ensemble(data_root, tmp_path):
    wrong = run_main("torch_trainer.train", "--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--output-dir",
                     str(tmp_path / "wrong"), "--weights", "none", "--ensemble", "3", "--member-resolutions", "64")
    assert wrong.returncode == 2 and "--member-resolutions: 1 sizes for --ensemble 3" in wrong.stderr
