"""A SavedModel folder behind a storage URI, copied to local disk: what a Vertex AI custom container
does with $AIP_STORAGE_URI before it loads its model.

gs:// goes through Google's own `google-cloud-storage` client: on Vertex AI it signs in as the
container's service account, and it honours $STORAGE_EMULATOR_HOST, so the tests run the same code
against an emulator on loopback. (TensorFlow's GCS filesystem has no endpoint setting, and its listing
names a sub-folder with a trailing slash that a copy built on it turns into `//` object names.) Any
other scheme TensorFlow reads (ram://, s3:// with tensorflow-io) is copied with `tf.io.gfile`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from mug_errors import JobFailed, NotFound

MODEL_FILE = "saved_model.pb"


def split_gs(uri: str) -> tuple[str, str]:
    """(bucket, object prefix ending in "/" or "") of a gs://BUCKET[/PATH] URI."""
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    if not bucket:
        raise NotFound(f"{uri}: no bucket in the URI (gs://BUCKET/PATH)")
    path = path.strip("/")
    return bucket, f"{path}/" if path else ""


def copy_gcs_folder(uri: str, local: str | os.PathLike) -> Path:
    """Copy every object under gs://BUCKET/PATH into `local`, keeping the names below PATH; NotFound
    naming `uri` when the bucket is missing or holds no saved_model.pb there."""
    with warnings.catch_warnings():  # api_core's notice that Python 3.11 ends in 2027-10: the image pins it
        warnings.simplefilter("ignore", FutureWarning)
        from google.api_core import exceptions  # deferred: only a gs:// model needs the client
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage

    bucket, prefix = split_gs(uri)
    try:
        client = storage.Client()
        # "folders" made in the console are empty objects named PATH/; they hold nothing to copy
        blobs = {b.name[len(prefix):]: b for b in client.list_blobs(bucket, prefix=prefix) if not b.name.endswith("/")}
        if MODEL_FILE not in blobs:
            raise NotFound(f"{uri}: no {MODEL_FILE} (not a SavedModel folder; objects there: "
                           f"{', '.join(sorted(blobs)[:5]) or 'none'})")
        local = Path(local)
        for name, blob in sorted(blobs.items()):
            target = local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(os.fspath(target))
    except exceptions.NotFound as err:
        raise NotFound(f"{uri}: not found ({err.message})") from err
    except exceptions.Forbidden as err:
        raise JobFailed(f"{uri}: access denied ({err.message}): the container's service account needs "
                        f"roles/storage.objectViewer on gs://{bucket}") from err
    except DefaultCredentialsError as err:
        raise JobFailed(f"{uri}: no Google credentials to read it with ({err})") from err
    return local


def copy_tf_folder(uri: str, local: str | os.PathLike) -> Path:
    """Copy a folder on any filesystem TensorFlow reads into `local`."""
    import tensorflow as tf  # deferred: serving imports TensorFlow once, when it loads the model
    uri = uri.rstrip("/")
    if not tf.io.gfile.exists(f"{uri}/{MODEL_FILE}"):
        raise NotFound(f"{uri}: no {MODEL_FILE} (not a SavedModel folder)")
    local = Path(local)
    for root, _, files in tf.io.gfile.walk(uri):
        # some filesystems list a sub-folder as "name/": strip it, so no name holds "//"
        relative = root.rstrip("/")[len(uri):].strip("/")
        (local / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            tf.io.gfile.copy(f"{root.rstrip('/')}/{name}", os.fspath(local / relative / name), overwrite=True)
    return local


def local_model_dir(uri: str | os.PathLike, into: str | os.PathLike) -> str:
    """A local folder holding the SavedModel at `uri`: `uri` itself when it is a local folder, else a
    copy under `into` (gs:// with google-cloud-storage, other schemes with tf.io.gfile). NotFound
    naming `uri` when no saved_model.pb is there."""
    uri = os.fspath(uri)
    if "://" not in uri or uri.startswith("file://"):
        return uri.removeprefix("file://")
    local = Path(into) / "model"
    copy = copy_gcs_folder if uri.startswith("gs://") else copy_tf_folder
    return os.fspath(copy(uri, local))
