"""Run a request file through the exported SavedModel and print gcloud's prediction table.

    python -m check_deployed_model.predict --model-dir EXPORT --json-instances check_deployed_model/test.json
    python -m check_deployed_model.predict --model-dir EXPORT --json-request request.json --format json
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from pathlib import Path
from typing import Any, Sequence


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


def format_table(preds: Sequence[dict[str, Any]]) -> str:
    """gcloud's table: a `CLASSES  PROBABILITIES` header and a row per instance."""
    lines = ["CLASSES  PROBABILITIES"]
    for p in preds:
        lines.append(f"{p['CLASSES']:<7d}  {json.dumps(p['PROBABILITIES'])}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="exported SavedModel folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--json-instances", help="one instance per line (gcloud ai-platform predict)")
    source.add_argument("--json-request", help='{"instances": [...]} (gcloud ai endpoints predict)')
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--loader", choices=("graph", "tf2"), default="graph",
                        help="TensorFlow loader: graph mode as gcloud/TF Serving (default) or TF2")
    args = parser.parse_args(argv)
    try:
        if args.json_instances:
            instances = read_instances(args.json_instances, "instances")
        else:
            instances = read_instances(args.json_request, "request")
        blobs = instance_bytes(instances)
    except RequestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from check_deployed_model.saved_model import SavedModelPredictor
    try:
        predictor = SavedModelPredictor(args.model_dir, args.loader)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        preds = predictions(predictor.predict(blobs))
    except Exception as err:  # tf.errors.InvalidArgumentError: bytes that are not an image
        print(f"error: the model could not process the instances: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({"predictions": preds}))
    else:
        print(format_table(preds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
