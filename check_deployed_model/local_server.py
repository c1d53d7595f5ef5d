"""A local prediction server over an exported SavedModel, answering the Google Cloud request shapes.

    python -m check_deployed_model.local_server --model-dir EXPORT [--host 127.0.0.1] [--port 8080]

Routes (body `{"instances": [{"bytes": {"b64": "..."}}, ...]}`, reply `{"predictions": [...]}`):
  POST /v1/projects/{project}/models/{model}:predict                     AI Platform
  POST /v1/projects/{project}/models/{model}/versions/{version}:predict  AI Platform
  POST /v1/projects/{project}/locations/{location}/endpoints/{endpoint}:predict   Vertex AI
  POST /v1/models/{model}:predict                                        TensorFlow Serving REST
  GET  /health, GET /v1/models/{model}                                   readiness
  GET  /                                                                 a page to try a photo
The model is loaded once; each request's instances go through `serving_default` as one batch.
Bad input gets HTTP 400 with {"error": "..."}; like the hosted services, a body is at most
1.5 MB and a request holds at most --max-instances instances.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from check_deployed_model.app import create_app
from mug_errors import command
from serving.saved_model import SavedModelPredictor


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="exported SavedModel")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-instances", type=int, default=64, help="most instances per request")
    parser.add_argument("--model-name", default="mug")
    args = parser.parse_args(argv)
    predictor = SavedModelPredictor(args.model_dir, "graph")
    app = create_app(predictor, args.model_name, args.max_instances)
    print(f"serving {args.model_dir} on http://{args.host}:{args.port}/ (predict: POST /v1/models/{args.model_name}:predict)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
