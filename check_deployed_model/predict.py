"""Send a request file to the model, locally or deployed, and print gcloud's prediction table.

    python -m check_deployed_model.predict --model-dir EXPORT --json-instances check_deployed_model/test.json
    python -m check_deployed_model.predict --model-dir EXPORT --json-request request.json --format json
    python -m check_deployed_model.predict --url http://127.0.0.1:8080/v1/models/mug:predict --json-instances FILE
    python -m check_deployed_model.predict --project P --region europe-west1 --endpoint ID --json-instances FILE
    python -m check_deployed_model.predict --project P --region europe-west1 --model M [--version V] --json-instances FILE
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


def cloud_url(project: str, region: str, endpoint: str | None, model: str | None, version: str | None) -> str:
    """The REST predict URL of a Vertex AI endpoint or of an AI Platform model (version)."""
    if endpoint:
        return (f"https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}"
                f"/endpoints/{endpoint}:predict")
    name = f"projects/{project}/models/{model}" + (f"/versions/{version}" if version else "")
    return f"https://{region}-ml.googleapis.com/v1/{name}:predict"


def post_remote(url: str, instances: list[Any], authorized: bool, timeout: float = 60) -> list[dict[str, Any]]:
    """POST {"instances": ...} to `url` (with application-default credentials when `authorized`)."""
    body = json.dumps({"instances": instances}).encode()
    if authorized:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
        from google.auth.transport.requests import AuthorizedSession
        try:
            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except DefaultCredentialsError as err:
            raise RequestError(f"no Google credentials: run `gcloud auth application-default login` ({err})") from err
        response = AuthorizedSession(credentials).post(url, data=body, timeout=timeout,
                                                       headers={"Content-Type": "application/json"})
        status, text = response.status_code, response.text
    else:
        import urllib.error
        import urllib.request
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode(errors="replace")
        except urllib.error.URLError as err:
            raise RequestError(f"{url}: {err.reason}") from err
    if status != 200:
        raise RequestError(f"{url}: HTTP {status}: {text[:500]}")
    try:
        return json.loads(text)["predictions"]
    except (json.JSONDecodeError, KeyError) as err:
        raise RequestError(f"{url}: the reply has no predictions: {text[:200]}") from err


def format_table(preds: Sequence[dict[str, Any]]) -> str:
    """gcloud's table: a `CLASSES  PROBABILITIES` header and a row per instance."""
    lines = ["CLASSES  PROBABILITIES"]
    for p in preds:
        lines.append(f"{p['CLASSES']:<7d}  {json.dumps(p['PROBABILITIES'])}")
    return "\n".join(lines)


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
    parser.add_argument("--loader", choices=("graph", "tf2"), default="graph",
                        help="with --model-dir: graph mode as gcloud/TF Serving (default) or TF2")
    args = parser.parse_args(argv)
    if args.project and not (args.endpoint or args.model):
        parser.error("--project needs --endpoint (Vertex AI) or --model [--version] (AI Platform)")
    try:
        if args.json_instances:
            instances = read_instances(args.json_instances, "instances")
        else:
            instances = read_instances(args.json_request, "request")
        if args.url or args.project:
            url = args.url or cloud_url(args.project, args.region, args.endpoint, args.model, args.version)
            preds = post_remote(url, instances, authorized=bool(args.project))
        else:
            preds = predict_local(args.model_dir, args.loader, instance_bytes(instances))
    except RequestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({"predictions": preds}))
    else:
        print(format_table(preds))
    return 0


def predict_local(model_dir: str, loader: str, blobs: list[bytes]) -> list[dict[str, Any]]:
    """Predictions of the SavedModel in `model_dir` for encoded images."""
    from check_deployed_model.saved_model import SavedModelPredictor
    try:
        predictor = SavedModelPredictor(model_dir, loader)
    except (FileNotFoundError, ValueError) as err:
        raise RequestError(str(err)) from err
    try:
        return predictions(predictor.predict(blobs))
    except Exception as err:  # tf.errors.InvalidArgumentError: bytes that are not an image
        raise RequestError(f"the model could not process the instances: {str(err).splitlines()[0]}") from err


if __name__ == "__main__":
    sys.exit(main())
