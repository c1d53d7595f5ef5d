"""The Vertex AI deploy: its steps printed (dry runs), and run against a fake gcloud over a state of
models, endpoints and objects (tests/fake_gcloud.py), which prints what the real gcloud prints."""

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from check_deployed_model.vertex_ai import DeployError, container_uri, deploy, deployments, find, teardown
from conftest import ROOT, run_main, run_module
from mug_errors import NotFound, SettingsError


def test_deploy_dry_run_returns_every_step(export, tmp_path):
    model_dir, _ = export
    logged = []
    steps = deploy("p", "europe-west1", "gs://b", str(model_dir), dry_run=True, log=lambda *a, **k: logged.append(a[0]))
    assert [s[:4] for s in steps] == [["gcloud", "storage", "cp", "-r"], ["gcloud", "ai", "models", "upload"],
                                      ["gcloud", "ai", "endpoints", "create"], ["gcloud", "ai", "endpoints", "deploy-model"]]
    assert steps[0][-1] == "gs://b/mug-model/" and "--container-image-uri=" + container_uri("europe-west1") in steps[1]
    assert steps[1][-1] == "--container-image-uri=europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
    older = deploy("p", "us-central1", "gs://b", str(model_dir), dry_run=True, log=lambda *a, **k: None, runtime="2.14")
    assert older[1][-1] == "--container-image-uri=us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-14:latest"
    gone = run_main("check_deployed_model.deploy", "--project", "p", "--bucket", "gs://b", "--model-dir",
                    str(model_dir), "--runtime", "2.12", "--dry-run")
    assert gone.returncode == 2 and "--runtime 2.12" in gone.stderr and "2.15, 2.14" in gone.stderr
    assert logged[0] == f"{model_dir}: serving contract checked" and len(logged) == 2 + len(steps)
    down = teardown("p", "europe-west1", "gs://b", dry_run=True, log=lambda *a, **k: None)
    assert [s[3] for s in down] == ["undeploy-model", "delete", "delete", "-r"] and down[2][2] == "models"
    assert down[-1] == ["gcloud", "storage", "rm", "-r", "gs://b/mug-model"]
    with pytest.raises(NotFound, match="saved_model.pb"):  # the contract is checked before anything is uploaded
        deploy("p", "europe-west1", "gs://b", str(tmp_path), dry_run=True)
    with pytest.raises(SettingsError, match="gs://"):
        deploy("p", "europe-west1", "b", str(model_dir), dry_run=True)
    bad = run_main("check_deployed_model.deploy", "--project", "p", "--bucket", "gs://b", "--model-dir",
                   str(tmp_path), "--dry-run")
    assert bad.returncode == 2 and "saved_model.pb" in bad.stderr and "Traceback" not in bad.stderr


def test_deploy_custom_builds_the_image_and_names_its_routes(export):
    """--runtime custom: Cloud Build makes the Dockerfile's image, the upload tells Vertex AI its
    routes and port, then the endpoint as with a prebuilt image; teardown deletes the image too."""
    model_dir, _ = export
    image = "europe-docker.pkg.dev/p/serving/mug:1"
    steps = deploy("p", "europe-west1", "gs://b", str(model_dir), dry_run=True, log=lambda *a, **k: None,
                   runtime="custom", image=image)
    assert [s[:3] for s in steps] == [["gcloud", "builds", "submit"], ["gcloud", "storage", "cp"],
                                      ["gcloud", "ai", "models"], ["gcloud", "ai", "endpoints"], ["gcloud", "ai", "endpoints"]]
    assert f"--tag={image}" in steps[0] and Path(steps[0][-1], "Dockerfile").is_file()
    assert steps[2][-4:] == [f"--container-image-uri={image}", "--container-health-route=/health",
                             "--container-predict-route=/predict", "--container-ports=8080"]
    assert [s[3] for s in steps[3:]] == ["create", "deploy-model"]
    down = teardown("p", "europe-west1", "gs://b", dry_run=True, log=lambda *a, **k: None, image=image)
    assert down[-1][:6] == ["gcloud", "artifacts", "docker", "images", "delete", image]
    for runtime, bad, said in (("custom", None, "needs --image"), ("custom", "docker.io/me/mug", "needs --image"),
                               ("2.15", image, "only --runtime custom builds")):
        with pytest.raises(SettingsError, match=said):
            deploy("p", "europe-west1", "gs://b", str(model_dir), dry_run=True, runtime=runtime, image=bad)
    printed = run_main("check_deployed_model.deploy", "--project", "p", "--bucket", "gs://b", "--model-dir",
                       str(model_dir), "--runtime", "custom", "--image", image, "--dry-run")
    assert printed.returncode == 0 and "[1/5] gcloud builds submit" in printed.stdout
    assert "--container-predict-route=/predict" in printed.stdout and "dry run: nothing was changed" in printed.stdout


FAKE_GCLOUD = ROOT / "tests" / "fake_gcloud.py"
WHERE = "projects/p/locations/europe-west1"


def model(n: int, name: str = "mug-model") -> dict:
    return {"name": f"{WHERE}/models/{n}", "displayName": name}


def endpoint(n: int, deployed=(), name: str = "mug-model-endpoint") -> dict:
    return {"name": f"{WHERE}/endpoints/{n}", "displayName": name,
            "deployedModels": [{"id": str(d), "model": f"{WHERE}/models/{m}"} for d, m in deployed]}


def fake_gcloud(tmp_path, monkeypatch, models=(), endpoints=(), objects=(), images=(), fail=()) -> Path:
    """`gcloud` on PATH: tests/fake_gcloud.py over a state file (returned) that holds what exists."""
    state = tmp_path / "gcloud-state.json"
    state.write_text(json.dumps({"models": list(models), "endpoints": list(endpoints), "objects": list(objects),
                                 "images": list(images), "fail": list(fail), "next_id": 100, "calls": []}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "gcloud"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_GCLOUD}" "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GCLOUD_STATE", str(state))
    return state


def read(state: Path) -> dict:
    return json.loads(state.read_text())


def test_the_fake_prints_lists_as_gcloud_does(tmp_path, monkeypatch):
    """gcloud's value() printer joins a list's items with ';' (and prints nothing for an empty list):
    two deployed models are two ids, never one '7;8'."""
    fake_gcloud(tmp_path, monkeypatch, endpoints=[endpoint(22, [(7, 11), (8, 12)]), endpoint(23)])
    proc = subprocess.run(["gcloud", "ai", "endpoints", "describe", "22", "--project=p", "--region=europe-west1",
                           "--format=value(deployedModels[].id)"], capture_output=True, text=True)
    assert proc.stdout == "7;8\n" and "Using endpoint [https://europe-west1-aiplatform" in proc.stderr
    assert deployments("p", "europe-west1", "22") == [("7", "11"), ("8", "12")]
    assert deployments("p", "europe-west1", "23") == []
    assert find("models", "p", "europe-west1", "mug-model") is None


STATES = {  # what a deploy that stopped half-way (or finished) leaves
    "nothing": dict(),
    "model only": dict(models=[model(11)], objects=["gs://b/mug-model/saved_model.pb"]),
    "model and endpoint": dict(models=[model(11)], endpoints=[endpoint(22)], objects=["gs://b/mug-model/saved_model.pb"]),
    "deployed twice": dict(models=[model(11), model(12, "other")], endpoints=[endpoint(22, [(7, 11), (8, 12)])],
                           objects=["gs://b/mug-model/saved_model.pb", "gs://b/other/saved_model.pb"]),
}


@pytest.mark.parametrize("state", list(STATES))
def test_teardown_removes_whatever_part_exists(tmp_path, monkeypatch, state):
    fake = fake_gcloud(tmp_path, monkeypatch, **STATES[state])
    logged = []
    steps = teardown("p", "europe-west1", "gs://b", log=lambda *a, **k: logged.append(a[0]))
    after = read(fake)
    assert [m["displayName"] for m in after["models"]] == (["other"] if state == "deployed twice" else [])
    assert after["endpoints"] == [] and after["objects"] == (["gs://b/other/saved_model.pb"] if state == "deployed twice" else [])
    undeployed = [s[s.index("--deployed-model-id") + 1] for s in steps if "undeploy-model" in s]
    assert undeployed == (["7", "8"] if state == "deployed twice" else [])
    if state in ("nothing", "model only"):
        assert any(line.startswith("no endpoint named mug-model-endpoint") for line in logged), logged
    if state == "nothing":
        assert any(line.startswith("no model named mug-model") for line in logged)
        assert any("nothing to remove: -gs://b/mug-model" in line for line in logged), logged


@pytest.mark.parametrize("state", list(STATES))
def test_a_deploy_from_each_state_ends_deployed_once(export, tmp_path, monkeypatch, state):
    """Whatever an earlier deploy left, the next one ends with one model and one endpoint of its name,
    the model deployed on it once, and makes only what was missing."""
    fake = fake_gcloud(tmp_path, monkeypatch, **STATES[state])
    before = read(fake)
    steps = deploy("p", "europe-west1", "gs://b", str(export[0]), log=lambda *a, **k: None)
    after = read(fake)
    mine = [m for m in after["models"] if m["displayName"] == "mug-model"]
    [ours] = [e for e in after["endpoints"] if e["displayName"] == "mug-model-endpoint"]
    assert len(mine) == 1 and [d["model"] for d in ours["deployedModels"]].count(mine[0]["name"]) == 1
    made = [s[3] for s in steps if s[1] == "ai"]
    assert made == [k for k, had in (("upload", before["models"]), ("create", before["endpoints"]),
                                     ("deploy-model", state == "deployed twice")) if not had]


def test_teardown_from_the_command_line_and_two_of_one_name(tmp_path, monkeypatch):
    fake = fake_gcloud(tmp_path, monkeypatch, **STATES["deployed twice"])
    proc = run_module("check_deployed_model.deploy", "--project", "p", "--bucket", "gs://b", "--teardown")
    assert proc.returncode == 0, proc.stderr
    assert "--deployed-model-id 7" in proc.stdout and "--deployed-model-id 8" in proc.stdout
    assert [c[:4] for c in read(fake)["calls"]][-1] == ["storage", "rm", "-r", "gs://b/mug-model"]

    two = tmp_path / "two"
    two.mkdir()
    fake = fake_gcloud(two, monkeypatch, models=[model(11), model(12)], endpoints=[endpoint(22, [(7, 11)])])
    proc = run_module("check_deployed_model.deploy", "--project", "p", "--bucket", "gs://b", "--teardown")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2 models named mug-model" in proc.stderr and "11, 12" in proc.stderr
    assert not any(c[1] in ("delete", "undeploy-model", "rm") for c in read(fake)["calls"])


def test_a_deploy_that_failed_half_way_is_picked_up(export, tmp_path, monkeypatch, capfd):
    """The endpoint step fails (a quota, a permission): the model is there. The next deploy reuses it,
    makes the endpoint and deploys; a third finds all in place and changes nothing."""
    model_dir, _ = export
    fake = fake_gcloud(tmp_path, monkeypatch, fail=["ai endpoints create"])
    logged = []
    log = lambda *a, **k: logged.append(a[0])  # noqa: E731
    with pytest.raises(DeployError, match=r"step 3 failed \(exit 1\): gcloud ai endpoints create"):
        deploy("p", "europe-west1", "gs://b", str(model_dir), log=log)
    assert "ERROR: (gcloud.ai.endpoints.create) PERMISSION_DENIED" in capfd.readouterr().err  # gcloud's own, as it ran
    state = read(fake)
    assert [m["displayName"] for m in state["models"]] == ["mug-model"] and state["endpoints"] == []
    state["fail"] = []
    fake.write_text(json.dumps(state))
    logged.clear()
    steps = deploy("p", "europe-west1", "gs://b", str(model_dir), log=log)
    assert any("skipped: model mug-model exists (id 101)" in line and "reusing it" in line for line in logged), logged
    assert [s[:4] for s in steps] == [["gcloud", "storage", "cp", "-r"], ["gcloud", "ai", "endpoints", "create"],
                                      ["gcloud", "ai", "endpoints", "deploy-model"]]
    assert steps[-1][4] == "102" and steps[-1][steps[-1].index("--model") + 1] == "101"
    state = read(fake)
    assert len(state["models"]) == 1 and len(state["endpoints"]) == 1
    assert state["endpoints"][0]["deployedModels"][0]["model"].endswith("/models/101")
    assert "--endpoint 102 --json-instances" in logged[-1]
    logged.clear()
    steps = deploy("p", "europe-west1", "gs://b", str(model_dir), log=log)
    assert [s[:3] for s in steps] == [["gcloud", "storage", "cp"]]
    assert any("model 101 is already deployed on endpoint 102" in line for line in logged)
    assert len(read(fake)["endpoints"][0]["deployedModels"]) == 1
    assert sum(c[:3] == ["ai", "models", "upload"] for c in read(fake)["calls"]) == 1


def test_placeholders_are_whole_tokens(export, tmp_path, monkeypatch):
    """A path that holds "_ID" (MY_IDEAS) is a path, not a place for an id."""
    model_dir, _ = export
    ideas = tmp_path / "MY_IDEAS" / "MODEL_ID"
    shutil.copytree(model_dir, ideas)
    fake = fake_gcloud(tmp_path, monkeypatch)
    steps = deploy("p", "europe-west1", "gs://b", str(ideas), log=lambda *a, **k: None)
    assert steps[0][4] == f"{ideas}/*"
    assert read(fake)["calls"][0][:3] == ["storage", "cp", "-r"]  # no look-up before the copy


def test_the_prebuilt_runtimes_dates_are_said_and_past_them_the_custom_runtime_named(export, tmp_path, monkeypatch):
    model_dir, _ = export
    logged = []
    deploy("p", "europe-west1", "gs://b", str(model_dir), dry_run=True, log=lambda *a, **k: logged.append(a[0]),
           today=date(2026, 12, 7))
    assert "support ended 2026-01-14, available until 2027-01-14" in logged[1] and "warning" not in logged[1]
    logged.clear()
    fake_gcloud(tmp_path, monkeypatch, fail=["ai models upload"])
    with pytest.raises(DeployError, match=r"(?s)step 2 failed.*--runtime custom --image"):
        deploy("p", "europe-west1", "gs://b", str(model_dir), log=lambda *a, **k: logged.append(a[0]),
               today=date(2027, 1, 14))
    assert logged[1].startswith("warning: Vertex AI's prebuilt TF 2.15 image") and "may be gone" in logged[1]
    logged.clear()
    deploy("p", "europe-west1", "gs://b", str(model_dir), dry_run=True, log=lambda *a, **k: logged.append(a[0]),
           runtime="custom", image="europe-docker.pkg.dev/p/serving/mug:1", today=date(2027, 2, 1))
    assert not any("available until" in line for line in logged)
