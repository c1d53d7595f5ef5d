"""Predictions for a request's instances: from a SavedModel in this process (`predict_local`), or
over HTTP from the local server, TF Serving or a Google Cloud endpoint (`post_predict`); `predict`
picks one (the job behind `check_deployed_model.predict`)."""

from __future__ import annotations

from typing import Any

import requests

from check_deployed_model.protocol import RequestError, instance_bytes, predictions
from serving.contract import GRAPH
from serving.saved_model import SavedModelPredictor


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


def predict_local(model_dir: str, loader: str, blobs: list[bytes]) -> list[dict[str, Any]]:
    """Predictions of the SavedModel in `model_dir` for encoded images."""
    predictor = SavedModelPredictor(model_dir, loader)
    try:  # bytes that are not an image raise ImageDecodeError, a user's error; anything else keeps its traceback
        return predictions(predictor.predict(blobs))
    finally:
        predictor.close()


def predict(instances: list[Any], model_dir: str | None = None, loader: str = GRAPH, url: str | None = None,
            project: str | None = None, region: str = "europe-west1", endpoint: str | None = None,
            model: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
    """The predictions for `instances` from one target: the SavedModel in `model_dir` (this
    process), a predict `url` (no credentials), or a Google Cloud `project`'s Vertex AI `endpoint`
    or AI Platform `model` [`version`] (application-default credentials)."""
    if model_dir:
        return predict_local(model_dir, loader, instance_bytes(instances))
    if project:
        url = cloud_url(project, region, endpoint, model, version)
    return post_predict(url, instances, authorized=bool(project))
