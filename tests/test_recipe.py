"""The training recipe's tools: evaluation, resume, repeatability, recipes of families."""

import json
from dataclasses import asdict

import pytest
import torch

from conftest import run_main
from torch_trainer.settings.plan import TrainConfig
from torch_trainer.classifier.report import format_classification_report



def test_evaluate_checkpoint_and_savedmodel_agree(trained_run, export, data_root, tmp_path):
    model_dir, _ = export
    reports = []
    for flag, value, out in (("--checkpoint", trained_run / "model.pt", tmp_path / "ckpt"),
                             ("--model-dir", model_dir, tmp_path / "saved")):
        proc = run_main("check_deployed_model.evaluate", flag, str(value), "--data-dir", str(data_root / "eval"),
                        "--output-dir", str(out))
        assert proc.returncode == 0, proc.stderr[-3000:]
        for png in ("confusion.png", "misclassified.png"):
            assert (out / png).read_bytes()[:4] == b"\x89PNG"
        reports.append(json.loads((out / "report.json").read_text()))
        assert format_classification_report(reports[-1]) in proc.stdout  # what it prints is the report it wrote
    # the eval set holds one 96x80 PNG per class, resized slightly differently by TF: allow one flip
    assert abs(reports[0]["accuracy"] - reports[1]["accuracy"]) <= 1 / 32
    assert len(reports[0]["misclassified"]) == round((1 - reports[0]["accuracy"]) * 32)


def test_resume_gives_the_uninterrupted_result(data_root, tmp_path):
    common = ["--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--epochs", "2", "--weights", "none", "--batch-size", "8"]
    full = run_main("torch_trainer.train", *common, "--output-dir", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    part = run_main("torch_trainer.train", *common, "--output-dir", str(tmp_path / "part"), "--stop-after", "1")
    assert part.returncode == 0 and "--resume" in part.stdout
    assert not (tmp_path / "part" / "model.pt").exists()
    # a flag beside --resume would be ignored: it is refused, and the run is left as it was
    refused = run_main("torch_trainer.train", "--resume", str(tmp_path / "part"), "--epochs", "5", "--lr", "1")
    assert refused.returncode == 2 and "--epochs, --lr would be ignored" in refused.stderr
    resumed = run_main("torch_trainer.train", "--resume", str(tmp_path / "part"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the default trains three models one after another: the stop came inside the first
    history = json.loads((tmp_path / "part" / "metrics.json").read_text())["history"]
    assert [(r["member"], r["epoch"]) for r in history] == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]


def test_a_retired_option_is_refused_with_what_to_do(data_root, tmp_path, capsys):
    from torch_trainer.train import main
    with pytest.raises(SystemExit) as stop:
        main(["--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--epochs", "1",
              "--swa-start", "0.5", "--output-dir", str(tmp_path / "run")])
    assert stop.value.code == 2 and "unrecognized arguments: --swa-start" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # a run folder of another version (its plan with the data beside it in one file) is refused by --resume,
    # naming the folder, and nothing is trained
    from torch_trainer.training.folder import read_run
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(dict(asdict(TrainConfig()), recipe="exposure-ens3", train_dirs=["/d"])))
    with pytest.raises(FileNotFoundError, match="data.json not found"):
        read_run(run)
    (run / "data.json").write_text(json.dumps({"train_dirs": ["/d"]}))
    with pytest.raises(ValueError, match=f"{run}: not a run record of this version"):
        read_run(run)
    proc = run_main("torch_trainer.train", "--resume", str(run))
    assert proc.returncode == 2 and "not a run record of this version" in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "data.json"]


def test_same_seed_same_model_other_seed_differs(data_root, tmp_path):
    common = ["--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--epochs", "1", "--ensemble", "1", "--weights", "none", "--batch-size", "8"]
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        proc = run_main("torch_trainer.train", *common, "--seed", seed, "--output-dir", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr[-3000:]
    w = {n: torch.load(tmp_path / n / "model.pt", weights_only=True)["state_dict"]["net.fc.weight"] for n in "abc"}
    assert torch.equal(w["a"], w["b"]) and not torch.equal(w["a"], w["c"])


def test_a_recipe_of_families_trains_each_family_and_resumes(data_root, tmp_path):
    recipe = tmp_path / "two.json"
    recipe.write_text(json.dumps({"families": ["exposure-ens3", {"recipe": "exposure-ens3", "resolution": 32}]}))
    common = ["--recipe", str(recipe), "--train-dir", str(data_root / "eval"), "--epochs", "1", "--ensemble", "1",
              "--batch-size", "16"]
    full = run_main("torch_trainer.train", *common, "--output-dir", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    part = run_main("torch_trainer.train", *common, "--output-dir", str(tmp_path / "part"), "--stop-after", "1")
    assert part.returncode == 0, part.stderr[-3000:]
    assert (tmp_path / "part" / "exposure-ens3" / "model.pt").is_file() and not (tmp_path / "part" / "model.pt").exists()
    resumed = run_main("torch_trainer.train", "--resume", str(tmp_path / "part"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=True)
    assert a["families"] == b["families"] == ["exposure-ens3", "exposure-ens3-resolution=32"]
    assert a["member_resolutions"] == [64, 32]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    metrics = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert metrics["complete"] and [m["family"] for m in metrics["families"]] == a["families"]
