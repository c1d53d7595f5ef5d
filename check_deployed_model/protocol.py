"""The Google Cloud predict protocol's shapes: request files and bodies, instances, replies.

One set of checks for a request, whether it comes from a file (`predict`) or over HTTP (`serve`).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Sequence

from mug_errors import InputError
from serving.contract import CLASSES, INPUT, PROBABILITIES


class RequestError(InputError):
    """A request file or instance is malformed; the message says where."""


def request_instances(payload: Any, where: str) -> list[Any]:
    """The instances of a `{"instances": [...]}` request; RequestError, naming `where`, otherwise."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise RequestError(f'{where}: expected an object with an "instances" list')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError(f'{where}: "instances" must be a list')
    if not instances:
        raise RequestError(f'{where}: "instances" is empty')
    return instances


def parse_body(body: bytes, where: str = "request body") -> list[Any]:
    """The instances of a request body (JSON bytes)."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RequestError(f"{where}: malformed JSON: {err}") from err
    return request_instances(payload, where)


def read_instances(path: str | Path, fmt: str) -> list[Any]:
    """Instances of a request file: `instances` = one JSON value per line, `request` = {"instances": [...]}."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise RequestError(f"{path}: {err.strerror}") from err
    if fmt == "request":
        try:
            return request_instances(json.loads(text), str(path))
        except json.JSONDecodeError as err:
            raise RequestError(f"{path}: not valid JSON: {err.msg} (line {err.lineno})") from err
    instances = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                instances.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise RequestError(f"{path}:{n}: not valid JSON: {err.msg}") from err
    if not instances:
        raise RequestError(f"{path}: holds no instances")
    return instances


def instance(blob: bytes) -> dict:
    """One prediction instance for encoded image bytes."""
    return {INPUT: {"b64": base64.b64encode(blob).decode("ascii")}}


def read_files(paths: Sequence[str | Path]) -> list[bytes]:
    """The bytes of each image file, sent as they are; RequestError names a file that cannot be read."""
    blobs = []
    for path in paths:
        try:
            blobs.append(Path(path).read_bytes())
        except OSError as err:
            raise RequestError(f"{path}: {err.strerror}") from err
    return blobs


def render(blobs: Sequence[bytes], fmt: str) -> str:
    """The request file's text for `blobs` in format `instances` or `request`."""
    instances = [instance(b) for b in blobs]
    if fmt == "instances":
        return "".join(json.dumps(i) + "\n" for i in instances)
    return json.dumps({"instances": instances}) + "\n"


def instance_bytes(instances: Sequence[Any]) -> list[bytes]:
    """The image bytes of `{"bytes": {"b64": ...}}` instances."""
    blobs = []
    for i, inst in enumerate(instances):
        b64 = inst.get(INPUT) if isinstance(inst, dict) else None
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
    n = len(outputs[CLASSES])
    return [{CLASSES: int(outputs[CLASSES][i]), PROBABILITIES: [float(p) for p in outputs[PROBABILITIES][i]]}
            for i in range(n)]


def format_table(preds: Sequence[dict[str, Any]]) -> str:
    """gcloud's table: a `CLASSES  PROBABILITIES` header and a row per instance."""
    lines = [f"{CLASSES}  {PROBABILITIES}"]
    for p in preds:
        lines.append(f"{p[CLASSES]:<7d}  {json.dumps(p[PROBABILITIES])}")
    return "\n".join(lines)
