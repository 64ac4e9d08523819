"""local_gguf_path against the session's SeaweedFS: download once, verify, refuse a mismatch."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from modelregistry import ChecksumMismatchError, ModelFile, ModelFileError, local_gguf_path
from servicekit.artifacts import ArtifactStore
from tests.harness import IsolatedEnv


@pytest.fixture(scope="module")
def store(infra: IsolatedEnv) -> ArtifactStore:
    return ArtifactStore(infra.s3.endpoint, infra.s3.access_key, infra.s3.secret_key, infra.bucket)


async def _uploaded(store: ArtifactStore, data: bytes) -> str:
    return await store.put_bytes(f"models/test-{uuid.uuid4().hex[:8]}/model-Q4_K_M.gguf", data)


async def test_downloads_once_into_the_cache_and_verifies(store: ArtifactStore, tmp_path: Path) -> None:
    data = b"GGUF" + uuid.uuid4().bytes * 64
    uri = await _uploaded(store, data)
    f = ModelFile("Q4_K_M", uri, hashlib.sha256(data).hexdigest(), len(data), "gguf")
    path = local_gguf_path(f, tmp_path, store)
    assert path.read_bytes() == data and path.name == "model-Q4_K_M.gguf"
    store.client.remove_object(store.bucket, store.key_of(uri))
    assert local_gguf_path(f, tmp_path, store) == path  # served from the cache: S3 is not asked again


async def test_a_mismatching_download_raises_and_leaves_nothing(store: ArtifactStore, tmp_path: Path) -> None:
    uri = await _uploaded(store, b"tampered bytes")
    f = ModelFile("Q4_K_M", uri, hashlib.sha256(b"the registered bytes").hexdigest(), 20, "gguf")
    with pytest.raises(ChecksumMismatchError, match="does not match"):
        local_gguf_path(f, tmp_path, store)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


async def test_a_missing_object_or_unknown_scheme_is_a_clear_error(store: ArtifactStore, tmp_path: Path) -> None:
    missing = ModelFile("Q4_K_M", store.uri("models/nothing/here.gguf"), "0" * 64, 1, "gguf")
    with pytest.raises(ModelFileError, match="download failed"):
        local_gguf_path(missing, tmp_path, store)
    with pytest.raises(ModelFileError, match="not an s3:// URI"):
        local_gguf_path(ModelFile("Q4_K_M", "http://x/v.gguf", "0" * 64, 1, "gguf"), tmp_path, store)
