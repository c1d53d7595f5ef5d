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
$AIP_STORAGE_URI (a gs:// folder, copied to a local folder first; else $MODEL_DIR). It listens at
once and loads the model beside it (Vertex AI probes a container while it starts): until the model is
loaded, health and predict answer 503 with the reason; a model that cannot be loaded ends the server
with exit 2, naming the URI. SIGTERM ends it (exit 0) once its requests are answered, the copy removed.
Each request's instances go through `serving_default` as one batch. Bad input gets
HTTP 400 with {"error": "..."}; like the hosted services, a body is at most 1.5 MB and a request
holds at most --max-instances instances. It binds 127.0.0.1 unless --host says otherwise (the
container's command says 0.0.0.0).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import traceback

import uvicorn

from check_deployed_model.server.app import create_app
from mug_errors import MugError, SettingsError, command
from serving.saved_model import SavedModelPredictor
from serving.storage import local_model_dir


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
    app = create_app(None, args.model_name, args.max_instances, health, predict)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=port, log_level="warning"))
    failed: list[BaseException] = []
    # uvicorn ends on SIGTERM (how Vertex AI and docker stop a container) and then raises the signal again:
    # under Python's default action the process would die there, leaving the model's copy on disk
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="model-", ignore_cleanup_errors=True) as copy:
        loading = threading.Thread(target=load, args=(app, server, args.model_dir, copy, failed), daemon=True)
        loading.start()
        route = predict[0] if predict else f"/v1/models/{args.model_name}:predict"
        print(f"serving {args.model_dir} on http://{args.host}:{port}/ (predict: POST {route}); loading the model",
              flush=True)
        server.run()
    if failed:
        raise failed[0]
    return 0


def load(app, server: uvicorn.Server, uri: str, into: str, failed: list) -> None:
    """Copy (for a storage URI) and load the model, then hand it to `app`; a failure is kept in
    `failed` and stops `server`, so that the process exits with it instead of serving 503 for ever."""
    started = time.monotonic()
    try:
        app.state.predictor = SavedModelPredictor(local_model_dir(uri, into))
    except BaseException as err:  # re-raised by main once the server has stopped
        if not isinstance(err, MugError):  # a bug keeps its traceback in the log
            traceback.print_exc()
        app.state.failure = f"the model could not be loaded: {err}"
        failed.append(err)
        server.should_exit = True
        return
    print(f"model ready: {uri} loaded in {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
