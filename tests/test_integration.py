"""One short epoch on ML6's real training images, export, and ML6's own request files.

The default's ResNet18 family alone: its Lite0 family, from the packaged weights, trains and exports
with it in tests/test_trainer.py (drawn photos), and here would add a minute of 128 px training.

The images live outside the project: $FIND_ML6_MUG_SHARED (set by .ci/run), else ../shared.
In CI a missing folder is a failure, not a skip.
"""

import json
import os
from pathlib import Path

import pytest

from conftest import EXPORT_CHECKS, ROOT, run_module
from torch_trainer.settings.plan import DEFAULT_RECIPE
from torch_trainer.settings.recipes import load_recipe

SHARED = Path(os.environ.get("FIND_ML6_MUG_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="module")
def shared():
    if not (SHARED / "mug-data" / "train").is_dir():
        message = f"{SHARED}/mug-data/train not found: set FIND_ML6_MUG_SHARED to the shared folder"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SHARED


@pytest.fixture(scope="module")
def real_export(shared, tmp_path_factory):
    job = tmp_path_factory.mktemp("real-job")
    # the default's ResNet18 family, shortened to one model of one epoch from random init
    proc = run_module("trainer.final_task", "--data-dir", str(shared / "mug-data"), "--job-dir", str(job),
                      "--recipe", "shifts-resnet3", "--epochs", "1", "--ensemble", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((job / "checkpoint" / "metrics.json").read_text())
    assert metrics["num_train"] == 2000 and metrics["weights_sources"] == ["random"]
    assert "shifts-resnet3" in [family.name for family in load_recipe(DEFAULT_RECIPE).families]
    return job / "exported_model"


def test_real_parity_report(real_export):
    report = json.loads((real_export / "assets.extra" / "export_report.json").read_text())
    for key in EXPORT_CHECKS:
        assert report[key]["max_abs_dprob"] <= 1e-5 and report[key]["class_agreement"] == 1.0, (key, report[key])
        assert report[key]["images"] == 64


def test_ml6_request_files(real_export, shared):
    replies = []
    for flag, name in (("--json-instances", "test.json"), ("--json-request", "test_request.json")):
        proc = run_module("check_deployed_model.predict", "--model-dir", str(real_export), flag,
                          str(shared / "check_deployed_model" / name), "--format", "json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        (pred,) = json.loads(proc.stdout)["predictions"]
        assert 0 <= pred["CLASSES"] <= 3 and len(pred["PROBABILITIES"]) == 4
        assert pred["CLASSES"] == max(range(4), key=pred["PROBABILITIES"].__getitem__)
        replies.append(pred)
    assert replies[0] == replies[1]  # the same image in both files
