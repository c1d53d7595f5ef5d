"""Sending a predict request over HTTP: to the local server, TF Serving or a Google Cloud endpoint."""

from __future__ import annotations

from typing import Any

import requests

from check_deployed_model.protocol import RequestError


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
