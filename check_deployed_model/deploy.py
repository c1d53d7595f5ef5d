"""Deploy an exported SavedModel on Vertex AI, or tear it down.

    python -m check_deployed_model.deploy --project P --region europe-west1 --bucket gs://B --model-dir EXPORT [--dry-run]
    python -m check_deployed_model.deploy --project P --region europe-west1 --bucket gs://B --teardown [--dry-run]

Runs gcloud (Google Cloud SDK, logged in) step by step and prints each command first; `--dry-run`
only prints them. The container is Vertex AI's prebuilt TF 2.15 serving image (`--runtime 2.14`: the
other one offered; both out of support since 2026-01-14 and available until 2027-01-14, which the
deploy says before its first step), or with `--runtime custom --image URI` the Dockerfile's server,
built and pushed with Cloud Build first; the export's contract is checked before anything is uploaded.
A deploy that stopped half-way is picked up: a model or endpoint of its name is reused, saying so. ML6
asks that the model be removed after grading: `--teardown` undeploys and deletes the endpoint and
model and removes the upload, each that exists (`check_deployed_model.vertex_ai` does the jobs).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from check_deployed_model.vertex_ai import CUSTOM, DEFAULT_RUNTIME, RUNTIMES, deploy, teardown
from mug_errors import command


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", default="europe-west1")
    parser.add_argument("--bucket", required=True, help="gs://bucket (or gs://bucket/prefix)")
    parser.add_argument("--model-dir", help="exported SavedModel to deploy")
    parser.add_argument("--name", default="mug-model", help="display name of model and endpoint")
    parser.add_argument("--machine-type", default="n1-standard-2")
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, metavar="|".join([*RUNTIMES, CUSTOM]),
                        help=f"Vertex AI's prebuilt TensorFlow serving image ({' or '.join(RUNTIMES)}, default "
                             f"%(default)s), or {CUSTOM}: the Dockerfile's server, built with Cloud Build into --image")
    parser.add_argument("--image", help="with --runtime custom: REGION-docker.pkg.dev/PROJECT/REPOSITORY/NAME[:TAG] "
                                        "(built and pushed by deploy, deleted by --teardown)")
    parser.add_argument("--teardown", action="store_true", help="undeploy and delete everything --name created")
    parser.add_argument("--dry-run", action="store_true", help="print the steps, touch nothing")
    args = parser.parse_args(argv)
    if args.teardown:
        teardown(args.project, args.region, args.bucket, args.name, args.dry_run, image=args.image)
    elif not args.model_dir:
        parser.error("--model-dir is required to deploy")
    else:
        deploy(args.project, args.region, args.bucket, args.model_dir, args.name, args.machine_type, args.dry_run,
               runtime=args.runtime, image=args.image)
    if args.dry_run:
        print("dry run: nothing was changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
