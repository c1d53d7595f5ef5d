"""Vertex AI deployment of an exported SavedModel (prebuilt TensorFlow serving container) through
gsutil and gcloud (the Google Cloud SDK, logged in): `deploy` and `teardown`, the jobs behind
`check_deployed_model.deploy`, run their steps one by one and return them.

The container is TF 2.12, the newest prebuilt TF serving image; the export's contract is checked
before anything is uploaded. ML6 asks that the model be removed after grading: `teardown`
undeploys every deployed model, deletes the endpoint and the model and removes the upload.
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Callable, Sequence

from mug_errors import JobFailed, SettingsError
from serving.contract import check_contract

CONTAINER = "{region_prefix}-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-12:latest"


def container_uri(region: str) -> str:
    prefix = region.split("-")[0] if region.split("-")[0] in ("europe", "asia") else "us"
    return CONTAINER.format(region_prefix=prefix)


def deploy_steps(project: str, region: str, bucket: str, model_dir: str, name: str, machine: str) -> list[list[str]]:
    """The commands that upload, register, create an endpoint and deploy."""
    target = f"{bucket.rstrip('/')}/{name}"
    common = [f"--project={project}", f"--region={region}"]
    return [
        ["gsutil", "-m", "cp", "-r", f"{model_dir.rstrip('/')}/*", f"{target}/"],
        ["gcloud", "ai", "models", "upload", *common, f"--display-name={name}", f"--artifact-uri={target}",
         f"--container-image-uri={container_uri(region)}"],
        ["gcloud", "ai", "endpoints", "create", *common, f"--display-name={name}-endpoint"],
        ["gcloud", "ai", "endpoints", "deploy-model", "ENDPOINT_ID", *common, "--model=MODEL_ID",
         f"--display-name={name}", f"--machine-type={machine}", "--traffic-split=0=100"],
    ]


def teardown_steps(project: str, region: str, bucket: str, name: str,
                   deployed: Sequence[str] = ("DEPLOYED_ID",)) -> list[list[str]]:
    """The commands that undeploy every model `deployed` on the endpoint, delete it, the model and the upload."""
    common = [f"--project={project}", f"--region={region}"]
    return [
        *(["gcloud", "ai", "endpoints", "undeploy-model", "ENDPOINT_ID", *common, f"--deployed-model-id={d}"]
          for d in deployed),
        ["gcloud", "ai", "endpoints", "delete", "ENDPOINT_ID", *common, "--quiet"],
        ["gcloud", "ai", "models", "delete", "MODEL_ID", *common, "--quiet"],
        ["gsutil", "-m", "rm", "-r", f"{bucket.rstrip('/')}/{name}"],
    ]


class DeployError(JobFailed):
    """A gcloud call failed, or what it found is not one model or endpoint of that name."""


def gcloud_values(args: list[str]) -> list[str]:
    """The values a `gcloud ... --format=value(...)` call prints; a DeployError with gcloud's own message if it fails."""
    try:
        proc = subprocess.run(["gcloud", *args], capture_output=True, text=True)
    except OSError as err:
        raise DeployError(f"cannot run gcloud ({err}): install the Google Cloud SDK and log in") from err
    if proc.returncode != 0:
        raise DeployError(f"gcloud {shlex.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout.split()


def lookup(kind: str, project: str, region: str, display_name: str) -> str:
    """The id of the one Vertex AI model or endpoint (`kind`: models or endpoints) named `display_name`.

    Display names need not be unique on Vertex AI: several of one name is an error that lists them,
    rather than acting on whichever gcloud lists first."""
    names = gcloud_values(["ai", kind, "list", f"--project={project}", f"--region={region}",
                           f"--filter=displayName={display_name}", "--format=value(name)"])
    ids = [n.rsplit("/", 1)[-1] for n in names]
    if not ids:
        raise DeployError(f"no {kind[:-1]} named {display_name} in {project}/{region}")
    if len(ids) > 1:
        raise DeployError(f"{len(ids)} {kind} named {display_name} in {project}/{region} ({', '.join(ids)}): "
                          f"delete the extra ones or deploy under another --name")
    return ids[0]


def deployed_models(project: str, region: str, endpoint: str) -> list[str]:
    """The ids of every model deployed on `endpoint`."""
    return gcloud_values(["ai", "endpoints", "describe", endpoint, f"--project={project}", f"--region={region}",
                          "--format=value(deployedModels[].id)"])


def check_bucket(bucket: str) -> None:
    """SettingsError unless `bucket` is a gs:// URL (gsutil would read anything else as a local path)."""
    if not bucket.startswith("gs://"):
        raise SettingsError(f"--bucket {bucket}: must be a gs:// URL")


def lookup_ids(project: str, region: str, name: str) -> dict[str, str]:
    """{"ENDPOINT_ID": ..., "MODEL_ID": ...} of the endpoint and model that `deploy` made under `name`."""
    return {"ENDPOINT_ID": lookup("endpoints", project, region, f"{name}-endpoint"),
            "MODEL_ID": lookup("models", project, region, name)}


def run_steps(steps: list[list[str]], ids: Callable[[], dict[str, str]], dry_run: bool = False,
              log: Callable[..., None] = print) -> list[list[str]]:
    """Run (with `dry_run`, only print) each step in turn; a step that names ENDPOINT_ID or MODEL_ID
    gets the ids `ids()` looks up, once, when the first such step is reached (they exist only once
    the upload and create steps have run). Returns the steps as run."""
    found: dict[str, str] = {}
    done = []
    for n, step in enumerate(steps, 1):
        if not dry_run and any("_ID" in a for a in step):
            found = found or ids()
            for key, value in found.items():
                step = [a.replace(key, value) for a in step]
        log(f"[{n}/{len(steps)}] {shlex.join(step)}", flush=True)
        done.append(step)
        if dry_run:
            continue
        try:
            subprocess.run(step, check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            raise DeployError(f"step {n} failed: {err}") from err
    return done


def deploy(project: str, region: str, bucket: str, model_dir: str, name: str = "mug-model",
           machine: str = "n1-standard-2", dry_run: bool = False, log: Callable[..., None] = print) -> list[list[str]]:
    """Check the export's contract, then upload it to BUCKET/NAME, register the model, create an
    endpoint and deploy the model on it; returns the commands run (printed first, or only printed
    with `dry_run`)."""
    check_bucket(bucket)
    check_contract(model_dir)
    log(f"{model_dir}: serving contract checked")
    return run_steps(deploy_steps(project, region, bucket, model_dir, name, machine),
                     lambda: lookup_ids(project, region, name), dry_run, log)


def teardown(project: str, region: str, bucket: str, name: str = "mug-model", dry_run: bool = False,
             log: Callable[..., None] = print) -> list[list[str]]:
    """Undeploy every model on NAME's endpoint, delete the endpoint and the model, remove the
    upload; returns the commands run. The ids are looked up before anything is removed."""
    check_bucket(bucket)
    ids = {} if dry_run else lookup_ids(project, region, name)
    deployed = ("DEPLOYED_ID",) if dry_run else deployed_models(project, region, ids["ENDPOINT_ID"])
    return run_steps(teardown_steps(project, region, bucket, name, deployed), lambda: ids, dry_run, log)
