"""Vertex AI deployment of an exported SavedModel (prebuilt TensorFlow serving container) through
gcloud (the Google Cloud SDK, logged in; `gcloud storage` copies): `deploy` and `teardown`, the jobs
behind `check_deployed_model.deploy`, run their steps one by one and return them.

The container is one of Vertex AI's prebuilt TensorFlow serving images (RUNTIMES): 2.15 (the TF the
export is built and checked with) or 2.14, both available until 2027-01-14 (2.12 ended 2025-06-30,
2.13 2025-11-28); or `custom`: the Dockerfile's image (the project's own server,
`check_deployed_model.local_server`), built and pushed with Cloud Build. The dates are Vertex AI's
list of prebuilt prediction containers as issue 47 quotes it on 2026-12-06 (these machines cannot
reach Google's page to read it again). The export's contract is checked before anything is uploaded.
ML6 asks that the model be removed after grading: `teardown` undeploys every deployed model, deletes
the endpoint and the model and removes the upload.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from mug_errors import JobFailed, SettingsError
from serving.contract import check_contract

CONTAINER = "{region_prefix}-docker.pkg.dev/vertex-ai/prediction/{image}:latest"
# Vertex AI's prebuilt TensorFlow prediction images, each available until 2027-01-14 (issue 47)
RUNTIMES = {"2.15": "tf2-cpu.2-15", "2.14": "tf2-cpu.2-14"}
DEFAULT_RUNTIME = "2.15"
CUSTOM = "custom"  # the Dockerfile's image, built with Cloud Build: for after 2027-01-14, or any host
# what the upload tells Vertex AI about the custom container (it hands them back as $AIP_HEALTH_ROUTE,
# $AIP_PREDICT_ROUTE and $AIP_HTTP_PORT, which check_deployed_model.local_server reads)
CONTAINER_ROUTES = {"health": "/health", "predict": "/predict", "port": "8080"}
IMAGE = re.compile(r"^[a-z0-9-]+-docker\.pkg\.dev/[^/\s]+/[^/\s]+/[^/\s:]+(:[\w.-]+)?$")
ROOT = Path(__file__).resolve().parent.parent  # the build context: the Dockerfile and what it copies


def container_uri(region: str, runtime: str = DEFAULT_RUNTIME) -> str:
    """The prebuilt TF serving image of `runtime` in `region`'s Artifact Registry (us, europe or asia)."""
    if runtime not in RUNTIMES:
        raise SettingsError(f"--runtime {runtime}: Vertex AI's prebuilt TensorFlow serving images are "
                            f"{', '.join(RUNTIMES)} (TF 2.12 and 2.13 are no longer offered), or {CUSTOM} "
                            f"for the Dockerfile's image")
    prefix = region.split("-")[0] if region.split("-")[0] in ("europe", "asia") else "us"
    return CONTAINER.format(region_prefix=prefix, image=RUNTIMES[runtime])


def check_image(runtime: str, image: str | None) -> None:
    """SettingsError unless a custom runtime names an Artifact Registry image and a prebuilt one none."""
    if runtime != CUSTOM:
        container_uri("us", runtime)
        if image:
            raise SettingsError(f"--image {image}: only --runtime {CUSTOM} builds an image")
    elif not image or not IMAGE.match(image):
        raise SettingsError(f"--runtime {CUSTOM} needs --image REGION-docker.pkg.dev/PROJECT/REPOSITORY/NAME[:TAG] "
                            f"(an Artifact Registry repository of yours), not {image!r}")


def deploy_steps(project: str, region: str, bucket: str, model_dir: str, name: str, machine: str,
                 runtime: str = DEFAULT_RUNTIME, image: str | None = None) -> list[list[str]]:
    """The commands that (for a custom runtime) build and push the serving image, upload the export,
    register the model on its container, create an endpoint and deploy."""
    target = f"{bucket.rstrip('/')}/{name}"
    common = [f"--project={project}", f"--region={region}"]
    build, container = [], [f"--container-image-uri={container_uri(region, runtime) if runtime != CUSTOM else image}"]
    if runtime == CUSTOM:
        build = [["gcloud", "builds", "submit", f"--project={project}", f"--region={region}", f"--tag={image}",
                  str(ROOT)]]
        container += [f"--container-health-route={CONTAINER_ROUTES['health']}",
                      f"--container-predict-route={CONTAINER_ROUTES['predict']}",
                      f"--container-ports={CONTAINER_ROUTES['port']}"]
    return [
        *build,
        ["gcloud", "storage", "cp", "-r", f"{model_dir.rstrip('/')}/*", f"{target}/"],
        ["gcloud", "ai", "models", "upload", *common, f"--display-name={name}", f"--artifact-uri={target}", *container],
        ["gcloud", "ai", "endpoints", "create", *common, f"--display-name={name}-endpoint"],
        ["gcloud", "ai", "endpoints", "deploy-model", "ENDPOINT_ID", *common, "--model=MODEL_ID",
         f"--display-name={name}", f"--machine-type={machine}", "--traffic-split=0=100"],
    ]


def teardown_steps(project: str, region: str, bucket: str, name: str,
                   deployed: Sequence[str] = ("DEPLOYED_ID",), image: str | None = None) -> list[list[str]]:
    """The commands that undeploy every model `deployed` on the endpoint, delete it, the model, the
    upload and (given) the custom serving image."""
    common = [f"--project={project}", f"--region={region}"]
    return [
        *(["gcloud", "ai", "endpoints", "undeploy-model", "ENDPOINT_ID", *common, f"--deployed-model-id={d}"]
          for d in deployed),
        ["gcloud", "ai", "endpoints", "delete", "ENDPOINT_ID", *common, "--quiet"],
        ["gcloud", "ai", "models", "delete", "MODEL_ID", *common, "--quiet"],
        ["gcloud", "storage", "rm", "-r", f"{bucket.rstrip('/')}/{name}"],
        *([["gcloud", "artifacts", "docker", "images", "delete", image, f"--project={project}", "--delete-tags",
            "--quiet"]] if image else []),
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
    """SettingsError unless `bucket` is a gs:// URL (gcloud storage would read anything else as a local path)."""
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
           machine: str = "n1-standard-2", dry_run: bool = False, log: Callable[..., None] = print,
           runtime: str = DEFAULT_RUNTIME, image: str | None = None) -> list[list[str]]:
    """Check the export's contract, then upload it to BUCKET/NAME, register the model on `runtime`'s
    prebuilt TF image (or, for `custom`, on `image`, built from the Dockerfile with Cloud Build
    first), create an endpoint and deploy the model on it; returns the commands run (printed first,
    or only printed with `dry_run`)."""
    check_bucket(bucket)
    check_image(runtime, image)  # a wrong runtime or image stops it before anything is checked or copied
    check_contract(model_dir)
    log(f"{model_dir}: serving contract checked")
    return run_steps(deploy_steps(project, region, bucket, model_dir, name, machine, runtime, image),
                     lambda: lookup_ids(project, region, name), dry_run, log)


def teardown(project: str, region: str, bucket: str, name: str = "mug-model", dry_run: bool = False,
             log: Callable[..., None] = print, image: str | None = None) -> list[list[str]]:
    """Undeploy every model on NAME's endpoint, delete the endpoint and the model, remove the
    upload and (given) the custom serving image; returns the commands run. The ids are looked up
    before anything is removed."""
    check_bucket(bucket)
    if image:
        check_image(CUSTOM, image)
    ids = {} if dry_run else lookup_ids(project, region, name)
    deployed = ("DEPLOYED_ID",) if dry_run else deployed_models(project, region, ids["ENDPOINT_ID"])
    return run_steps(teardown_steps(project, region, bucket, name, deployed, image), lambda: ids, dry_run, log)
