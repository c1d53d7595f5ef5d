"""A prediction server over an exported SavedModel, answering the Google Cloud request shapes: here on
loopback, or in a container (Dockerfile) under Vertex AI's custom-container contract.

    python -m check_deployed_model.local_server --model-dir EXPORT [--host 127.0.0.1] [--port 8080]

Routes (body `{"instances": [{"bytes": {"b64": "..."}}, ...]}`, reply `{"predictions": [...]}`):
  POST /v1/projects/{project}/models/{model}:predict                     AI Platform
  POST /v1/projects/{project}/models/{model}/versions/{version}:predict  AI Platform
  POST /v1/projects/{project}/locations/{location}/endpoints/{endpoint}:predict   Vertex AI
  POST /v1/models/{model}:predict                                        TensorFlow Serving REST
  POST $AIP_PREDICT_ROUTE, GET $AIP_HEALTH_ROUTE                         Vertex AI custom container
  GET  /health, GET /v1/models/{model}                                   readiness
  GET  /                                                                 a page to try a photo
Vertex AI's variables give the defaults: the port $AIP_HTTP_PORT (else 8080), the model
$AIP_STORAGE_URI (a gs:// folder, copied to a local folder first; else $MODEL_DIR). The model is
loaded once; each request's instances go through `serving_default` as one batch. Bad input gets
HTTP 400 with {"error": "..."}; like the hosted services, a body is at most 1.5 MB and a request
holds at most --max-instances instances. It binds 127.0.0.1 unless --host says otherwise (the
container's command says 0.0.0.0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import uvicorn

from check_deployed_model.server.app import create_app
from mug_errors import SettingsError, command
from serving.saved_model import SavedModelPredictor, local_model_dir


def env_port() -> int:
    """$AIP_HTTP_PORT, Vertex AI's port for the container (8080 when unset)."""
    value = os.environ.get("AIP_HTTP_PORT", "8080")
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SettingsError(f"AIP_HTTP_PORT={value!r}: must be a port number")
    return int(value)


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=os.environ.get("AIP_STORAGE_URI") or os.environ.get("MODEL_DIR"),
                        help="exported SavedModel: a folder or a gs:// URL (default: $AIP_STORAGE_URI, else $MODEL_DIR)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    parser.add_argument("--port", type=int, default=None, help="default: $AIP_HTTP_PORT, else 8080")
    parser.add_argument("--max-instances", type=int, default=64, help="most instances per request")
    parser.add_argument("--model-name", default="mug")
    args = parser.parse_args(argv)
    if not args.model_dir:
        parser.error("--model-dir is required (or set AIP_STORAGE_URI or MODEL_DIR)")
    port = args.port if args.port is not None else env_port()
    # Vertex AI's routes for a custom container, beside the server's own
    health = [os.environ["AIP_HEALTH_ROUTE"]] if os.environ.get("AIP_HEALTH_ROUTE") else []
    predict = [os.environ["AIP_PREDICT_ROUTE"]] if os.environ.get("AIP_PREDICT_ROUTE") else []
    with tempfile.TemporaryDirectory(prefix="model-") as copy:
        predictor = SavedModelPredictor(local_model_dir(args.model_dir, copy))
        app = create_app(predictor, args.model_name, args.max_instances, health, predict)
        route = predict[0] if predict else f"/v1/models/{args.model_name}:predict"
        print(f"serving {args.model_dir} on http://{args.host}:{port}/ (predict: POST {route})", flush=True)
        uvicorn.run(app, host=args.host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
