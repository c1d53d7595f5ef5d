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


def teardown_steps(project: str, region: str, bucket: str, name: str) -> list[list[str]]:
    common = [f"--project={project}", f"--region={region}"]
    return [
        ["gcloud", "ai", "endpoints", "undeploy-model", "ENDPOINT_ID", *common, "--deployed-model-id=DEPLOYED_ID"],
        ["gcloud", "ai", "endpoints", "delete", "ENDPOINT_ID", *common, "--quiet"],
        ["gcloud", "ai", "models", "delete", "MODEL_ID", *common, "--quiet"],
        ["gsutil", "-m", "rm", "-r", f"{bucket.rstrip('/')}/{name}"],
    ]


def lookup(kind: str, project: str, region: str, display_name: str) -> str:
    """The id of the Vertex AI model or endpoint with `display_name` (gcloud list)."""
    out = subprocess.run(["gcloud", "ai", kind, "list", f"--project={project}", f"--region={region}",
                          f"--filter=displayName={display_name}", "--format=value(name)"],
                         capture_output=True, text=True, check=True).stdout.split()
    if not out:
        raise RuntimeError(f"no {kind[:-1]} named {display_name} in {project}/{region}")
    return out[0].rsplit("/", 1)[-1]


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
    if args.teardown:
        steps = teardown_steps(args.project, args.region, args.bucket, args.name)
    else:
        if not args.model_dir:
            parser.error("--model-dir is required to deploy")
        try:
            check_contract(args.model_dir)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{args.model_dir}: serving contract checked")
        steps = deploy_steps(args.project, args.region, args.bucket, args.model_dir, args.name, args.machine_type)
    ids: dict[str, str] = {}
    for n, step in enumerate(steps, 1):
        print(f"[{n}/{len(steps)}] {shlex.join(step)}", flush=True)
        if args.dry_run:
            continue
        if any(a in ("ENDPOINT_ID", "MODEL_ID", "DEPLOYED_ID") or "MODEL_ID" in a or "DEPLOYED_ID" in a for a in step):
            ids.setdefault("ENDPOINT_ID", lookup("endpoints", args.project, args.region, f"{args.name}-endpoint"))
            ids.setdefault("MODEL_ID", lookup("models", args.project, args.region, args.name))
            if args.teardown and "DEPLOYED_ID" not in ids:
                ids["DEPLOYED_ID"] = subprocess.run(
                    ["gcloud", "ai", "endpoints", "describe", ids["ENDPOINT_ID"], f"--project={args.project}",
                     f"--region={args.region}", "--format=value(deployedModels[0].id)"],
                    capture_output=True, text=True, check=True).stdout.strip()
            for key, value in ids.items():
                step = [a.replace(key, value) for a in step]
        try:
            subprocess.run(step, check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            print(f"error: step {n} failed: {err}", file=sys.stderr)
            return 2
    if args.dry_run:
        print("dry run: nothing was changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
