"""Vertex AI deployment of an exported SavedModel through gcloud (the Google Cloud SDK, logged in;
`gcloud storage` copies): `deploy` and `teardown`, the jobs behind `check_deployed_model.deploy`, run
their steps one by one and return them.

The container is one of Vertex AI's prebuilt TensorFlow serving images (RUNTIMES): 2.15 (the TF the
export is built and checked with) or 2.14, past their end of support since 2026-01-14 and available
until 2027-01-14 (Vertex AI's framework support policy, as issues 47 and 53 quote it; these machines
cannot reach Google's page); or `custom`: the Dockerfile's image (the project's own server,
`check_deployed_model.local_server`), built and pushed with Cloud Build, the one way to serve after
that date. The export's contract is checked before anything is uploaded.

A deploy that stopped half-way leaves a model or an endpoint of its name: the next deploy reuses
what it finds (and says so) instead of making a second one. ML6 asks that the model be removed after
grading: `teardown` undeploys every deployed model, deletes the endpoint and the model and removes
the upload and the custom image, each of them that exists.

gcloud's `--format=value(...)` prints a line a resource, its fields separated by tabs and a list's
items joined with ';' (googlecloudsdk/core/resource/csv_printer.py, ValuePrinter); `gcloud_rows`
reads exactly that.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from datetime import date
from pathlib import Path
from typing import Callable, Sequence

from mug_errors import JobFailed, SettingsError
from serving.contract import check_contract

CONTAINER = "{region_prefix}-docker.pkg.dev/vertex-ai/prediction/{image}:latest"
# Vertex AI's prebuilt TensorFlow prediction images: out of support, and then gone (issues 47 and 53)
RUNTIMES = {"2.15": "tf2-cpu.2-15", "2.14": "tf2-cpu.2-14"}
SUPPORT_ENDED, AVAILABLE_UNTIL = date(2026, 1, 14), date(2027, 1, 14)
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


def runtime_dates(runtime: str, today: date) -> str:
    """What deploy says of a prebuilt runtime before its first step ("" for the custom image); from
    AVAILABLE_UNTIL on, a warning (Google may move the date: the deploy warns, it does not refuse)."""
    if runtime == CUSTOM:
        return ""
    said = (f"Vertex AI's prebuilt TF {runtime} image ({RUNTIMES[runtime]}): support ended {SUPPORT_ENDED}, "
            f"available until {AVAILABLE_UNTIL}")
    if today < AVAILABLE_UNTIL:
        return f"{said}; after that, --runtime {CUSTOM} serves it"
    return (f"warning: {said}, and today is {today}: the image may be gone. If the upload fails, deploy the "
            f"project's own server: --runtime {CUSTOM} --image REGION-docker.pkg.dev/PROJECT/REPOSITORY/mug-server")


def deploy_steps(project: str, region: str, bucket: str, model_dir: str, name: str, machine: str,
                 runtime: str = DEFAULT_RUNTIME, image: str | None = None) -> list[list[str]]:
    """The commands that (for a custom runtime) build and push the serving image, upload the export,
    register the model on its container, create an endpoint and deploy. The last names the model and
    the endpoint by the tokens MODEL_ID and ENDPOINT_ID, known once the two exist."""
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
        ["gcloud", "ai", "endpoints", "create", *common, f"--display-name={endpoint_name(name)}"],
        ["gcloud", "ai", "endpoints", "deploy-model", "ENDPOINT_ID", *common, "--model", "MODEL_ID",
         f"--display-name={name}", f"--machine-type={machine}", "--traffic-split=0=100"],
    ]


def teardown_steps(project: str, region: str, bucket: str, name: str, endpoint: str | None = "ENDPOINT_ID",
                   model: str | None = "MODEL_ID", deployed: Sequence[str] = ("DEPLOYED_ID",),
                   image: str | None = None) -> list[list[str]]:
    """The commands that undeploy every model `deployed` on `endpoint` and delete it, delete `model`
    (None: there is none to remove), remove the upload and (given) the custom serving image."""
    common = [f"--project={project}", f"--region={region}"]
    return [
        *(["gcloud", "ai", "endpoints", "undeploy-model", endpoint, *common, "--deployed-model-id", d]
          for d in (deployed if endpoint else ())),
        *([["gcloud", "ai", "endpoints", "delete", endpoint, *common, "--quiet"]] if endpoint else []),
        *([["gcloud", "ai", "models", "delete", model, *common, "--quiet"]] if model else []),
        ["gcloud", "storage", "rm", "-r", f"{bucket.rstrip('/')}/{name}"],
        *([["gcloud", "artifacts", "docker", "images", "delete", image, f"--project={project}", "--delete-tags",
            "--quiet"]] if image else []),
    ]


def endpoint_name(name: str) -> str:
    """The display name of the endpoint a deploy under `name` creates."""
    return f"{name}-endpoint"


class DeployError(JobFailed):
    """A gcloud call failed, or what it found is not one model or endpoint of that name."""


def gcloud_rows(args: list[str]) -> list[list[list[str]]]:
    """What `gcloud ARGS --format=value(F1,F2,...)` prints, as rows (a resource each) of columns (a field
    each) of items (a list field's, which gcloud joins with ';'; a plain field is one item, an empty
    one none). A DeployError with gcloud's own message if it fails."""
    try:
        proc = subprocess.run(["gcloud", *args], capture_output=True, text=True)
    except OSError as err:
        raise DeployError(f"cannot run gcloud ({err}): install the Google Cloud SDK and log in") from err
    if proc.returncode != 0:
        raise DeployError(f"gcloud {shlex.join(args)} failed: {proc.stderr.strip()[-2000:]}")
    return [[[item for item in column.split(";") if item] for column in line.split("\t")]
            for line in proc.stdout.splitlines() if line.strip()]


def find(kind: str, project: str, region: str, display_name: str) -> str | None:
    """The id of the one Vertex AI model or endpoint (`kind`: models or endpoints) named `display_name`,
    None when there is none.

    Display names need not be unique on Vertex AI: several of one name is an error that lists them,
    rather than acting on whichever gcloud lists first."""
    rows = gcloud_rows(["ai", kind, "list", f"--project={project}", f"--region={region}",
                        f"--filter=displayName={display_name}", "--format=value(name,displayName)"])
    # the filter is gcloud's own pattern match: keep the exact name only
    ids = [row[0][0].rsplit("/", 1)[-1] for row in rows if len(row) > 1 and row[1] == [display_name]]
    if len(ids) > 1:
        raise DeployError(f"{len(ids)} {kind} named {display_name} in {project}/{region} ({', '.join(ids)}): "
                          f"delete the extra ones or deploy under another --name")
    return ids[0] if ids else None


def deployments(project: str, region: str, endpoint: str) -> list[tuple[str, str]]:
    """(deployed model id, model id) of every model deployed on `endpoint`."""
    rows = gcloud_rows(["ai", "endpoints", "describe", endpoint, f"--project={project}", f"--region={region}",
                        "--format=value(deployedModels[].id,deployedModels[].model)"])
    pairs = []
    for row in rows:
        ids, models = (row + [[], []])[:2]
        pairs += [(d, m.rsplit("/", 1)[-1]) for d, m in zip(ids, models)]
    return pairs


def check_bucket(bucket: str) -> None:
    """SettingsError unless `bucket` is a gs:// URL (gcloud storage would read anything else as a local path)."""
    if not bucket.startswith("gs://"):
        raise SettingsError(f"--bucket {bucket}: must be a gs:// URL")


class Steps:
    """Numbered steps, each printed before it runs (or, in a dry run, instead)."""

    def __init__(self, total: int, dry_run: bool, log: Callable[..., None]):
        self.total, self.dry_run, self.log, self.done = total, dry_run, log, []
        self.n = 0

    def run(self, step: list[str], absent: Sequence[str] = ()) -> None:
        """Run `step`; with `absent`, a failure whose message holds one of them means there was
        nothing to act on, and is said and passed over."""
        self.n += 1
        self.log(f"[{self.n}/{self.total}] {shlex.join(step)}", flush=True)
        self.done.append(step)
        if self.dry_run:
            return
        try:
            proc = subprocess.run(step, stderr=subprocess.PIPE if absent else None, text=True)
        except OSError as err:
            raise DeployError(f"step {self.n} failed: {err}") from err
        if proc.returncode == 0:
            return
        said = (proc.stderr or "").strip()
        if said and any(marker in said for marker in absent):
            self.log(f"      nothing to remove: {said.splitlines()[-1]}", flush=True)
            return
        raise DeployError(f"step {self.n} failed (exit {proc.returncode}): {shlex.join(step)}"
                          + (f": {said[-1500:]}" if said else ""))

    def skip(self, why: str) -> None:
        self.n += 1
        self.log(f"[{self.n}/{self.total}] skipped: {why}", flush=True)


def fill(step: list[str], ids: dict[str, str]) -> list[str]:
    """`step` with each whole token that is a placeholder (MODEL_ID, ENDPOINT_ID) replaced by its id."""
    return [ids.get(token, token) for token in step]


def deploy(project: str, region: str, bucket: str, model_dir: str, name: str = "mug-model",
           machine: str = "n1-standard-2", dry_run: bool = False, log: Callable[..., None] = print,
           runtime: str = DEFAULT_RUNTIME, image: str | None = None, today: date | None = None) -> list[list[str]]:
    """Check the export's contract, then upload it to BUCKET/NAME, register the model on `runtime`'s
    prebuilt TF image (or, for `custom`, on `image`, built from the Dockerfile with Cloud Build
    first), create an endpoint and deploy the model on it; returns the commands run (printed first,
    or only printed with `dry_run`). A model or endpoint of its name that an earlier deploy left is
    reused, and a model already deployed there is left as it is."""
    check_bucket(bucket)
    check_image(runtime, image)  # a wrong runtime or image stops it before anything is checked or copied
    check_contract(model_dir)
    log(f"{model_dir}: serving contract checked")
    today = today or date.today()
    notice = runtime_dates(runtime, today)
    if notice:
        log(notice)
    every = deploy_steps(project, region, bucket, model_dir, name, machine, runtime, image)
    *first, upload, create, attach = every
    steps = Steps(len(every), dry_run, log)
    if dry_run:
        for step in every:
            steps.run(step)
        return steps.done
    for step in first:
        steps.run(step)
    model = find("models", project, region, name)
    if model:
        steps.skip(f"model {name} exists (id {model}), left by an earlier deploy: reusing it as it was uploaded "
                   f"(to serve this export instead, --teardown first or deploy under another --name)")
    else:
        try:
            steps.run(upload)
        except DeployError as err:
            if runtime != CUSTOM and today >= AVAILABLE_UNTIL:
                raise DeployError(f"{err}\nthe prebuilt TF {runtime} image was available until {AVAILABLE_UNTIL}: "
                                  f"deploy with --runtime {CUSTOM} --image REGION-docker.pkg.dev/PROJECT/REPOSITORY/"
                                  f"mug-server (the project's own server)") from err
            raise
        model = must_find("models", project, region, name)
    endpoint = find("endpoints", project, region, endpoint_name(name))
    if endpoint:
        steps.skip(f"endpoint {endpoint_name(name)} exists (id {endpoint}), left by an earlier deploy: reusing it")
    else:
        steps.run(create)
        endpoint = must_find("endpoints", project, region, endpoint_name(name))
    if model in {m for _, m in deployments(project, region, endpoint)}:
        steps.skip(f"model {model} is already deployed on endpoint {endpoint}")
    else:
        steps.run(fill(attach, {"MODEL_ID": model, "ENDPOINT_ID": endpoint}))
    log(f"deployed: model {model} on endpoint {endpoint} ({endpoint_name(name)}). Predict with\n"
        f"  python -m check_deployed_model.predict --project {project} --region {region} --endpoint {endpoint} "
        f"--json-instances check_deployed_model/test.json\nremove it all with the same deploy command and --teardown")
    return steps.done


def must_find(kind: str, project: str, region: str, display_name: str) -> str:
    """The id of what a step just made; a DeployError if gcloud does not list it."""
    found = find(kind, project, region, display_name)
    if not found:
        raise DeployError(f"gcloud lists no {kind[:-1]} named {display_name} in {project}/{region} after making it")
    return found


# what gcloud says when there is nothing to remove (googlecloudsdk's storage and artifacts errors)
NO_OBJECTS = ("matched no objects",)
NO_IMAGE = ("NOT_FOUND", "not found")


def teardown(project: str, region: str, bucket: str, name: str = "mug-model", dry_run: bool = False,
             log: Callable[..., None] = print, image: str | None = None) -> list[list[str]]:
    """Undeploy every model on NAME's endpoint, delete the endpoint and the model, remove the upload
    and (given) the custom serving image, each of them that exists (a deploy that stopped half-way
    leaves only some); returns the commands run. The ids are looked up before anything is removed."""
    check_bucket(bucket)
    if image:
        check_image(CUSTOM, image)
    if dry_run:
        steps = teardown_steps(project, region, bucket, name, image=image)
    else:
        endpoint = find("endpoints", project, region, endpoint_name(name))
        model = find("models", project, region, name)
        deployed = [d for d, _ in deployments(project, region, endpoint)] if endpoint else []
        for kind, what, found in (("endpoint", endpoint_name(name), endpoint), ("model", name, model)):
            if not found:
                log(f"no {kind} named {what} in {project}/{region}: nothing of it to remove")
        steps = teardown_steps(project, region, bucket, name, endpoint, model, deployed, image)
    run = Steps(len(steps), dry_run, log)
    for step in steps:
        run.run(step, NO_OBJECTS if step[1] == "storage" else NO_IMAGE if step[1] == "artifacts" else ())
    return run.done
