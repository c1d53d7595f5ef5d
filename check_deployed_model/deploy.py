"""Deploy an exported SavedModel on Vertex AI (prebuilt TensorFlow serving container), or tear it down.

    python -m check_deployed_model.deploy --project P --region europe-west1 --bucket gs://B --model-dir EXPORT [--dry-run]
    python -m check_deployed_model.deploy --project P --region europe-west1 --bucket gs://B --teardown [--dry-run]

Runs gsutil and gcloud (Google Cloud SDK, logged in) step by step and prints each command first;
`--dry-run` only prints them. The container is TF 2.12, the newest prebuilt TF serving image; the
export's contract is checked before anything is uploaded. ML6 asks that the model be removed
after grading: `--teardown` undeploys and deletes the endpoint and model and removes the upload.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from typing import Sequence

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


class DeployError(RuntimeError):
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", default="europe-west1")
    parser.add_argument("--bucket", required=True, help="gs://bucket (or gs://bucket/prefix)")
    parser.add_argument("--model-dir", help="exported SavedModel to deploy")
    parser.add_argument("--name", default="mug-model", help="display name of model and endpoint")
    parser.add_argument("--machine-type", default="n1-standard-2")
    parser.add_argument("--teardown", action="store_true", help="undeploy and delete everything --name created")
    parser.add_argument("--dry-run", action="store_true", help="print the steps, touch nothing")
    args = parser.parse_args(argv)
    if not args.bucket.startswith("gs://"):
        parser.error("--bucket must be a gs:// URL")
    ids: dict[str, str] = {}
    try:
        if args.teardown:
            deployed: Sequence[str] = ("DEPLOYED_ID",)
            if not args.dry_run:  # the ids exist already: look them up before anything is removed
                ids["ENDPOINT_ID"] = lookup("endpoints", args.project, args.region, f"{args.name}-endpoint")
                ids["MODEL_ID"] = lookup("models", args.project, args.region, args.name)
                deployed = deployed_models(args.project, args.region, ids["ENDPOINT_ID"])
            steps = teardown_steps(args.project, args.region, args.bucket, args.name, deployed)
        else:
            if not args.model_dir:
                parser.error("--model-dir is required to deploy")
            check_contract(args.model_dir)
            print(f"{args.model_dir}: serving contract checked")
            steps = deploy_steps(args.project, args.region, args.bucket, args.model_dir, args.name, args.machine_type)
        for n, step in enumerate(steps, 1):
            if not args.dry_run and any("_ID" in a for a in step):
                # the model and endpoint ids exist only once the upload and create steps have run
                if not ids:
                    ids["ENDPOINT_ID"] = lookup("endpoints", args.project, args.region, f"{args.name}-endpoint")
                    ids["MODEL_ID"] = lookup("models", args.project, args.region, args.name)
                for key, value in ids.items():
                    step = [a.replace(key, value) for a in step]
            print(f"[{n}/{len(steps)}] {shlex.join(step)}", flush=True)
            if args.dry_run:
                continue
            try:
                subprocess.run(step, check=True)
            except (OSError, subprocess.CalledProcessError) as err:
                raise DeployError(f"step {n} failed: {err}") from err
    except (FileNotFoundError, ValueError, DeployError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print("dry run: nothing was changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
