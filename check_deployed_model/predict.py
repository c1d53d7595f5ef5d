"""Send a request file to the model, locally or deployed, and print gcloud's prediction table.

    python -m check_deployed_model.predict --model-dir EXPORT --json-instances check_deployed_model/test.json
    python -m check_deployed_model.predict --model-dir EXPORT --json-request request.json --format json
    python -m check_deployed_model.predict --url http://127.0.0.1:8080/v1/models/mug:predict --json-instances FILE
    python -m check_deployed_model.predict --project P --region europe-west1 --endpoint ID --json-instances FILE
    python -m check_deployed_model.predict --project P --region europe-west1 --model M [--version V] --json-instances FILE
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from check_deployed_model.cloud import predict
from check_deployed_model.protocol import format_table, read_instances
from mug_errors import command
from serving.contract import GRAPH, LOADERS


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-dir", help="exported SavedModel, run in this process")
    target.add_argument("--url", help="a predict URL (the local server, TF Serving), no credentials")
    target.add_argument("--project", help="Google Cloud project of a deployed model (application-default credentials)")
    parser.add_argument("--region", default="europe-west1")
    parser.add_argument("--endpoint", help="Vertex AI endpoint id")
    parser.add_argument("--model", help="AI Platform model name")
    parser.add_argument("--version", help="AI Platform model version")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--json-instances", help="one instance per line (gcloud ai-platform predict)")
    source.add_argument("--json-request", help='{"instances": [...]} (gcloud ai endpoints predict)')
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--loader", choices=LOADERS, default=GRAPH,
                        help="with --model-dir: graph mode as gcloud/TF Serving (default) or TF2")
    args = parser.parse_args(argv)
    if args.project and not (args.endpoint or args.model):
        parser.error("--project needs --endpoint (Vertex AI) or --model [--version] (AI Platform)")
    if args.json_instances:
        instances = read_instances(args.json_instances, "instances")
    else:
        instances = read_instances(args.json_request, "request")
    preds = predict(instances, args.model_dir, args.loader, args.url, args.project, args.region, args.endpoint,
                    args.model, args.version)
    print(json.dumps({"predictions": preds}) if args.format == "json" else format_table(preds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
