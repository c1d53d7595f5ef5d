"""The local prediction server's ASGI app (`create_app`): the Google Cloud and TF Serving predict
routes over a SavedModel, a readiness route and a page to try a photo. The app may start before its
model is there (`app.state.predictor` None, set once loaded), so that it answers Vertex AI's probes
while TensorFlow loads: until then health and predict answer HTTP 503 with the reason. Bad input (a
request that does not parse, an instance that is not an image) gets HTTP 400 with {"error": "..."};
anything else is a fault of the server: HTTP 500, its traceback in the server's log. Like the hosted
services, a body is at most 1.5 MB and a request holds at most `max_instances` instances.
`check_deployed_model.local_server` runs it with uvicorn."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from check_deployed_model.protocol import RequestError, instance_bytes, parse_body, predictions
from serving.saved_model import ImageDecodeError

MAX_BODY_BYTES = 1_500_000
PAGE = Path(__file__).with_name("page.html")
log = logging.getLogger(__name__)


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; RequestError past `limit` bytes. An oversized body is still read (and
    dropped) up to 8x the limit, so that the client gets the 400 instead of a broken pipe."""
    body, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            body += chunk
        elif size > 8 * limit:
            break
    if size > limit:
        raise RequestError(f"request body is over the limit of {limit} bytes")
    return bytes(body)


def parse_request(body: bytes, max_instances: int) -> list[bytes]:
    """Image bytes of a predict request body; RequestError says what is wrong."""
    instances = parse_body(body)
    if len(instances) > max_instances:
        raise RequestError(f"{len(instances)} instances; the limit is {max_instances} per request")
    return instance_bytes(instances)


def not_ready(state: Any) -> str:
    """Why the app cannot answer yet ("" once its model is loaded)."""
    if state.predictor is not None:
        return ""
    return state.failure or f"the model is loading ({time.monotonic() - state.since:.0f} s so far)"


def create_app(predictor: Any = None, model_name: str = "mug", max_instances: int = 64,
               health_routes: Sequence[str] = (), predict_routes: Sequence[str] = (),
               max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The ASGI app around a loaded `SavedModelPredictor` (or anything with `.predict(list[bytes])`),
    or, with None, one that answers 503 until `app.state.predictor` is set (`app.state.failure`
    says why a load failed); `health_routes` and `predict_routes` add paths of those kinds (Vertex
    AI's $AIP_HEALTH_ROUTE and $AIP_PREDICT_ROUTE for a custom container)."""

    async def predict(request: Request) -> JSONResponse:
        reason = not_ready(request.app.state)
        if reason:
            return error(f"not ready: {reason}; GET /health answers 200 once the model is loaded", 503)
        try:
            blobs = parse_request(await read_body(request, max_body_bytes), max_instances)
        except RequestError as err:
            return error(str(err))
        model = request.app.state.predictor
        try:
            return JSONResponse({"predictions": predictions(await run_in_threadpool(model.predict, blobs))})
        except ImageDecodeError as err:
            return error(str(err))
        except Exception:  # a bug, not the client's doing: logged whole, answered as such
            log.exception("predict failed on %d instance(s)", len(blobs))
            return error("internal error: the server failed to answer (its log has the traceback)", 500)

    async def health(request: Request) -> JSONResponse:
        reason = not_ready(request.app.state)
        if reason:
            return JSONResponse({"status": "not ready", "model": model_name, "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok", "model": model_name})

    async def model_status(request: Request) -> JSONResponse:  # TF Serving's GET /v1/models/{model}
        state = "AVAILABLE" if request.app.state.predictor is not None else "LOADING"
        return JSONResponse({"model_version_status": [{"version": "1", "state": state}]})

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.read_text())

    routes = [
        Route("/", page),
        Route("/health", health),
        Route("/v1/models/{model}", model_status),
        Route("/v1/models/{model}:predict", predict, methods=["POST"]),
        Route("/v1/projects/{project}/models/{model}:predict", predict, methods=["POST"]),
        Route("/v1/projects/{project}/models/{model}/versions/{version}:predict", predict, methods=["POST"]),
        Route("/v1/projects/{project}/locations/{location}/endpoints/{endpoint}:predict", predict, methods=["POST"]),
        *(Route(path, health) for path in health_routes),
        *(Route(path, predict, methods=["POST"]) for path in predict_routes),
    ]
    app = Starlette(routes=routes)
    app.state.predictor, app.state.failure, app.state.since = predictor, "", time.monotonic()
    return app
