import hashlib
import json
import shutil

from conftest import run_module
from serving.contract import check_contract
from serving.saved_model import SavedModelPredictor
from torch_trainer.config import TrainConfig
from trainer.job import parse_job_args

FAST = ("--epochs", "2", "--ensemble", "1", "--weights", "none", "--batch-size", "16", "--some-gcloud-flag", "x")


def digest(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_jobs_run_the_default_recipe_unless_told():
    args, cfg = parse_job_args([], "test")
    assert cfg == TrainConfig() and (args.data_dir, args.job_dir) == ("data", "output")
    _, cfg = parse_job_args(["--recipe", "snapshot3", "--epochs", "3"], "test")
    assert (cfg.recipe, cfg.ensemble, cfg.snapshots, cfg.epochs) == ("snapshot3", 1, 3, 3)


def test_final_task_exports_and_never_overwrites(data_root, tmp_path):
    job = tmp_path / "job"
    first = run_module("trainer.final_task", "--data-dir", str(data_root), "--job-dir", str(job), *FAST)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "ignoring arguments this job does not use: --some-gcloud-flag x" in first.stdout
    export = job / "exported_model"
    check_contract(export)
    out = SavedModelPredictor(export, "graph").predict([(data_root / "eval/2blue/3.jpg").read_bytes()])
    assert out["PROBABILITIES"].shape == (1, 4)
    before = digest(export)

    second = run_module("trainer.final_task", "--data-dir", str(data_root), "--job-dir", str(job), *FAST)
    assert second.returncode == 0, second.stderr[-3000:]
    stamped = [p for p in job.iterdir() if p.name.startswith("exported_model_")]
    assert len(stamped) == 1, list(job.iterdir())
    check_contract(stamped[0])
    assert digest(export) == before
    assert f"SavedModel written to {stamped[0]}" in second.stdout


def test_final_task_without_eval_trains_on_train_alone(data_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(data_root / "train", data / "train")
    proc = run_module("trainer.final_task", "--data-dir", str(data), "--job-dir", str(tmp_path / "job"),
                      "--epochs", "1", "--ensemble", "1", "--weights", "none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no eval split" in proc.stdout and "training resnet18 on 96 images" in proc.stdout
    check_contract(tmp_path / "job" / "exported_model")


def test_task_reports_per_class_on_eval(data_root, tmp_path):
    proc = run_module("trainer.task", "--data-dir", str(data_root), "--job-dir", str(tmp_path), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validating on 32" in proc.stdout and "precision" in proc.stdout
    report = json.loads((tmp_path / "task_run" / "eval_report.json").read_text())
    assert list(report["per_class"]) == ["0white", "1black", "2blue", "3transparent"]
    assert report["images"] == 32 and sum(map(sum, report["confusion"])) == 32
    assert [row["support"] for row in report["per_class"].values()] == [sum(row) for row in report["confusion"]]
    assert f"accuracy {report['accuracy']:.4f} on 32 images" in proc.stdout


def test_task_carves_validation_without_eval(data_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(data_root / "train", data / "train")
    proc = run_module("trainer.task", "--data-dir", str(data), "--job-dir", str(tmp_path / "job"), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no eval split" in proc.stdout and "groups of near-identical frames" in proc.stdout


def test_missing_data_says_how_to_get_it(tmp_path):
    proc = run_module("trainer.final_task", "--data-dir", str(tmp_path / "data"), "--job-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "gsutil" in proc.stderr and str(tmp_path / "data") in proc.stderr
