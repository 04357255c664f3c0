"""The Cloud Storage behaviour the product relies on, stated through the real Python client.

These tests pass against Cloud Storage itself and against our patched emulator
(``emulators/storage_server.py``); run them against another emulator with
``STORAGE_EMULATOR_HOST=http://host:port``. Every test works in a fresh bucket.
"""

from __future__ import annotations

import io
import json

import pytest
from google.api_core import exceptions

BODY = json.dumps({"items": [{"id": "a"}], "count": 1}).encode()


def upload(bucket, name, data=BODY, content_type="application/json", cache_control=None, **kw):
    blob = bucket.blob(name)
    blob.cache_control = cache_control
    blob.upload_from_string(data, content_type=content_type, **kw)
    return blob


def download_response(storage_client, blob):
    """The raw HTTP download, to see the headers a browser or a function gets."""
    response = storage_client._http.get(blob.media_link)
    response.raise_for_status()
    return response


@pytest.mark.parametrize("resumable", [False, True], ids=["multipart", "resumable"])
def test_content_type_and_cache_control_round_trip(bucket, storage_client, resumable):
    name = "snapshots/users.json"
    blob = bucket.blob(name)
    blob.cache_control = "public, max-age=60"
    if resumable:
        blob.chunk_size = 256 * 1024
        blob.upload_from_file(io.BytesIO(BODY), content_type="application/json", size=None)
    else:
        blob.upload_from_string(BODY, content_type="application/json")

    stored = bucket.get_blob(name)
    assert stored.content_type == "application/json"
    assert stored.cache_control == "public, max-age=60"
    assert stored.size == len(BODY)
    response = download_response(storage_client, stored)
    assert response.content == BODY
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert stored.download_as_bytes() == BODY


def test_create_only_upload_refuses_to_overwrite(bucket):
    upload(bucket, "a.json", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        upload(bucket, "a.json", data=b"{}", if_generation_match=0)
    assert bucket.blob("a.json").download_as_bytes() == BODY


def test_create_only_resumable_upload_refuses_to_overwrite(bucket):
    upload(bucket, "a.json")
    blob = bucket.blob("a.json")
    blob.chunk_size = 256 * 1024
    with pytest.raises(exceptions.PreconditionFailed):
        blob.upload_from_file(
            io.BytesIO(b"{}"), content_type="application/json", size=None, if_generation_match=0
        )
    assert bucket.blob("a.json").download_as_bytes() == BODY


def test_generation_grows_on_every_overwrite_and_guards_writes(bucket):
    first = upload(bucket, "a.json")
    second = upload(bucket, "a.json", data=b"[1]")
    third = upload(bucket, "a.json", data=b"[2]", if_generation_match=second.generation)
    assert first.generation < second.generation < third.generation
    assert third.metageneration == 1
    with pytest.raises(exceptions.PreconditionFailed):
        upload(bucket, "a.json", data=b"[3]", if_generation_match=second.generation)
    with pytest.raises(exceptions.PreconditionFailed):
        upload(bucket, "a.json", data=b"[3]", if_generation_not_match=third.generation)
    assert bucket.get_blob("a.json").generation == third.generation
    assert bucket.blob("a.json").download_as_bytes() == b"[2]"


def test_preconditions_on_reads_patches_and_deletes(bucket):
    current = upload(bucket, "a.json")
    stale = current.generation - 1
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("a.json").download_as_bytes(if_generation_match=stale)
    assert bucket.blob("a.json").download_as_bytes(if_generation_match=current.generation) == BODY

    blob = bucket.get_blob("a.json")
    blob.cache_control = "no-store"
    blob.patch(if_metageneration_match=1)
    assert bucket.get_blob("a.json").metageneration == 2
    blob.cache_control = "no-cache"
    with pytest.raises(exceptions.PreconditionFailed):
        blob.patch(if_metageneration_match=1)
    assert bucket.get_blob("a.json").cache_control == "no-store"

    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("a.json").delete(if_generation_match=stale)
    bucket.blob("a.json").delete(if_generation_match=current.generation)
    assert bucket.get_blob("a.json") is None
