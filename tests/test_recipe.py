"""The training recipe's tools: shoots, cross-scene validation, evaluation, resume, repeatability."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from draw_mug import CLASS_NAMES, draw_mug
from conftest import run_main
from torch_trainer.data import MugDataset
from torch_trainer.config import Family, RunConfig, TrainConfig
from torch_trainer.recipes import load_recipe
from torch_trainer.cross_scene import score_report, summary_lines, validate
from torch_trainer.report import format_classification_report
from torch_trainer.shoots import find_shoots

BACKGROUNDS = [(60, 60, 70), (190, 170, 140)]


@pytest.fixture(scope="module")
def two_shoots(tmp_path_factory):
    """8 pictures per class on each of two backgrounds, like ML6's two shoots per class."""
    root = tmp_path_factory.mktemp("shoots")
    for label, name in enumerate(CLASS_NAMES):
        (root / name).mkdir()
        for i in range(16):
            draw_mug(label, seed=i, background=BACKGROUNDS[i // 8]).save(root / name / f"{i}.jpg", quality=95)
    return root


def test_find_shoots_separates_backgrounds(two_shoots):
    data = MugDataset(two_shoots)
    shoots = find_shoots(data.images, data.targets)
    for label in range(4):
        per_class = shoots[data.targets.numpy() == label]
        names = [p.stem for p in np.array(data.paths)[data.targets.numpy() == label]]
        by_bg = {int(n) // 8: set() for n in names}
        for n, s in zip(names, per_class):
            by_bg[int(n) // 8].add(int(s))
        assert all(len(v) == 1 for v in by_bg.values()) and by_bg[0] != by_bg[1]


def test_validate_reports_every_fold(two_shoots, tmp_path):
    out = tmp_path / "report"
    proc = run_main("torch_trainer.validate", "--recipe", "exposure-ens3", "--data-dir", str(two_shoots), "--output-dir", str(out),
                      "--epochs", "1", "--ensemble", "1", "--weights", "none", "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [(r["seed"], r["fold"]) for r in report["runs"]] == [(0, "fold0"), (0, "fold1")]
    assert report["shoot_sizes"] == {name: [8, 8] for name in CLASS_NAMES}
    assert sum(map(sum, report["pooled"]["confusion"])) == 64
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "leave out one shoot of every class" in (out / "report.md").read_text()


def test_class_shoot_folds_hold_out_one_class_shoot_each():
    from torch_trainer.shoots import folds
    targets = np.repeat([0, 1, 2, 3], 4)
    shoots = np.tile([0, 0, 1, 1], 4)
    held = folds(shoots, targets, "class-shoot")
    assert [name for name, _ in held] == [f"class{c}_shoot{k}" for c in range(4) for k in range(2)]
    for (name, mask), (c, k) in zip(held, [(c, k) for c in range(4) for k in range(2)]):
        assert mask.sum() == 2 and set(targets[mask]) == {c} and set(shoots[mask]) == {k}
    assert np.array_equal(np.sum([m for _, m in held], 0), np.ones(16))  # every image held out once
    assert [m.sum() for _, m in folds(shoots, targets, "shoot")] == [8, 8]
    with pytest.raises(ValueError, match="protocol"):
        folds(shoots, targets, "random")


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
    # a run recorded before SWA, LP-FT and WiSE-FT were retired resumes when it left them off, and is
    # refused, naming the setting, when it used one
    from torch_trainer.run_folder import resume_config
    run = tmp_path / "old"
    run.mkdir()
    old = dict(asdict(TrainConfig()), recipe="exposure-ens3", families=[], ensemble=3, member_image_sizes=[],
               train_dirs=["/data"], val_dir=None, val_files=[], overrides={}, family_overrides={},
               swa_start=0.0, probe_epochs=0, wise_alpha=1.0, workers=0)
    (run / "config.json").write_text(json.dumps(old))
    assert resume_config(run) == RunConfig([Family("exposure-ens3", [TrainConfig(seed=s) for s in (0, 1, 2)])],
                                           "exposure-ens3", train_dirs=["/data"])
    (run / "config.json").write_text(json.dumps(dict(old, wise_alpha=0.5)))
    with pytest.raises(ValueError, match="sets wise_alpha, an option that has been retired"):
        resume_config(run)
    # a families run of then: its flat settings (the first family's) and each family's in families.json
    (run / "config.json").write_text(json.dumps(dict(old, recipe="two", families=["exposure-ens3", "lite0-ens2"])))
    with pytest.raises(FileNotFoundError, match="families.json"):
        resume_config(run)
    lite = dict(old, recipe="lite0-ens2", ensemble=2, arch="efficientnet_lite0", image_size=128, seed=4)
    (run / "families.json").write_text(json.dumps([dict(old, seed=4), lite]))
    assert [(f.name, [(m.arch, m.image_size, m.seed) for m in f.models]) for f in resume_config(run).families] == [
        ("exposure-ens3", [("resnet18", 64, 4), ("resnet18", 64, 5), ("resnet18", 64, 6)]),
        ("lite0-ens2", [("efficientnet_lite0", 128, 4), ("efficientnet_lite0", 128, 5)])]


def test_same_seed_same_model_other_seed_differs(data_root, tmp_path):
    common = ["--recipe", "exposure-ens3", "--train-dir", str(data_root / "eval"), "--epochs", "1", "--ensemble", "1", "--weights", "none", "--batch-size", "8"]
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        proc = run_main("torch_trainer.train", *common, "--seed", seed, "--output-dir", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr[-3000:]
    w = {n: torch.load(tmp_path / n / "model.pt", weights_only=True)["state_dict"]["net.fc.weight"] for n in "abc"}
    assert torch.equal(w["a"], w["b"]) and not torch.equal(w["a"], w["c"])


def test_bench_ensemble_scores_each_seed_and_their_average(two_shoots, tmp_path):
    from torch_trainer.model import class_probabilities, load_checkpoint
    out = tmp_path / "report"
    run = load_recipe("exposure-ens3", {"epochs": 1, "ensemble": 1, "weights": "none", "batch_size": 16})
    summary = validate(run, two_shoots, out, seeds=(0, 1), log=lambda *a: None)
    assert summary == json.loads((out / "report.json").read_text())
    runs = {(r["seed"], r["fold"]): r["accuracy"] for r in summary["runs"]}
    proc = run_main("torch_trainer.ensemble_accuracy", "--report", str(out), "--data-dir", str(two_shoots), "--sizes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "ensemble.json").read_text())
    assert "\n".join(summary_lines(result)) in proc.stdout  # what it prints is what it wrote
    assert result["seeds"] == [0, 1]
    data = MugDataset(two_shoots)
    shoots = find_shoots(data.images, data.targets)
    for k, fold in enumerate(("fold0", "fold1")):
        row = result["folds"][fold]
        # each run's model scores what validate reported for it
        assert row["run"] == pytest.approx([runs[(0, fold)], runs[(1, fold)]])
        held = torch.from_numpy(shoots == k)
        probs = [class_probabilities(load_checkpoint(out / f"seed{s}_{fold}" / "model.pt")[0], data.images[held]) for s in (0, 1)]
        assert row["ensemble2"] == [float(((probs[0] + probs[1]).argmax(1) == data.targets[held].numpy()).mean())]
    (out / "seed1_fold1" / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="seed1_fold1"):
        score_report(out, two_shoots, sizes=(2,))


def test_validate_refuses_seeds_whose_ensembles_overlap(two_shoots, tmp_path):
    proc = run_main("torch_trainer.validate", "--recipe", "exposure-ens3", "--data-dir", str(two_shoots),
                    "--output-dir", str(tmp_path / "report"), "--seeds", "0", "1")
    assert proc.returncode == 2 and "trains models S..S+2" in proc.stderr and "e.g. 0 3" in proc.stderr
    assert not (tmp_path / "report").exists()


def test_a_recipe_of_families_trains_each_family_and_resumes(data_root, tmp_path):
    recipe = tmp_path / "two.json"
    recipe.write_text(json.dumps({"families": ["exposure-ens3", {"recipe": "exposure-ens3", "image_size": 32}]}))
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
    assert a["families"] == b["families"] == ["exposure-ens3", "exposure-ens3-image_size=32"]
    assert a["member_image_sizes"] == [64, 32]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    metrics = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert metrics["complete"] and [m["family"] for m in metrics["families"]] == a["families"]
