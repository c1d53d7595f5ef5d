"""The request side of the Google Cloud predict protocol: request files, instances, replies, URLs.

Shared by the `predict` CLI and the local `serve`r.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Sequence

import requests


class RequestError(ValueError):
    """A request file or instance is malformed; the message says where."""


def read_instances(path: str | Path, fmt: str) -> list[Any]:
    """Instances of a request file: `instances` = one JSON value per line, `request` = {"instances": [...]}."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise RequestError(f"{path}: {err.strerror}") from err
    if fmt == "instances":
        instances = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    instances.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise RequestError(f"{path}:{n}: not valid JSON: {err.msg}") from err
    else:
        try:
            body = json.loads(text)
        except json.JSONDecodeError as err:
            raise RequestError(f"{path}: not valid JSON: {err.msg} (line {err.lineno})") from err
        if not isinstance(body, dict) or "instances" not in body:
            raise RequestError(f"{path}: expected an object with an \"instances\" list")
        instances = body["instances"]
        if not isinstance(instances, list):
            raise RequestError(f"{path}: \"instances\" must be a list")
    if not instances:
        raise RequestError(f"{path}: holds no instances")
    return instances


def instance_bytes(instances: Sequence[Any]) -> list[bytes]:
    """The image bytes of `{"bytes": {"b64": ...}}` instances."""
    blobs = []
    for i, inst in enumerate(instances):
        b64 = inst.get("bytes") if isinstance(inst, dict) else None
        b64 = b64.get("b64") if isinstance(b64, dict) else None
        if not isinstance(b64, str):
            raise RequestError(f"instances[{i}]: expected {{\"bytes\": {{\"b64\": \"...\"}}}}")
        try:
            blobs.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError) as err:
            raise RequestError(f"instances[{i}].bytes.b64: invalid base64: {err}") from err
    return blobs


def predictions(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Batched signature outputs -> one JSON-ready dict per instance, as the services return them."""
    n = len(outputs["CLASSES"])
    return [{"CLASSES": int(outputs["CLASSES"][i]),
             "PROBABILITIES": [float(p) for p in outputs["PROBABILITIES"][i]]} for i in range(n)]


def cloud_url(project: str, region: str, endpoint: str | None, model: str | None, version: str | None) -> str:
    """The REST predict URL of a Vertex AI endpoint or of an AI Platform model (version)."""
    if endpoint:
        return (f"https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}"
                f"/endpoints/{endpoint}:predict")
    name = f"projects/{project}/models/{model}" + (f"/versions/{version}" if version else "")
    return f"https://{region}-ml.googleapis.com/v1/{name}:predict"


def post_predict(url: str, instances: list[Any], authorized: bool, timeout: float = 60) -> list[dict[str, Any]]:
    """POST {"instances": ...} to `url` and return its predictions (with application-default
    credentials when `authorized`: google-auth's session is a `requests` session that signs)."""
    if authorized:
        import google.auth  # deferred: only a cloud endpoint needs credentials
        from google.auth.exceptions import DefaultCredentialsError
        from google.auth.transport.requests import AuthorizedSession
        try:
            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except DefaultCredentialsError as err:
            raise RequestError(f"no Google credentials: run `gcloud auth application-default login` ({err})") from err
        session = AuthorizedSession(credentials)
    else:
        session = requests.Session()
    try:
        with session:
            response = session.post(url, json={"instances": instances}, timeout=timeout)
    except requests.RequestException as err:
        raise RequestError(f"{url}: {err}") from err
    if response.status_code != 200:
        raise RequestError(f"{url}: HTTP {response.status_code}: {response.text[:500]}")
    try:
        return response.json()["predictions"]
    except (ValueError, KeyError) as err:
        raise RequestError(f"{url}: the reply has no predictions: {response.text[:200]}") from err
