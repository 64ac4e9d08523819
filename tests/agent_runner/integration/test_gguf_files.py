"""Deployed GGUFs made local from the real S3 (SeaweedFS): cached per sha256, checked, shared
safely by two loaders on one cache directory (as replicas sharing a volume do)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path

import pytest

from agent_runner.adapters.model_loaders import GgufFiles
from agent_runner.domain import ModelLoadError
from agent_runner.model_slot import DesiredModel
from contracts import utcnow
from servicekit.artifacts import ArtifactStore
from tests.harness import IsolatedEnv


@pytest.fixture(scope="module")
def store(infra: IsolatedEnv) -> ArtifactStore:
    return ArtifactStore(infra.s3.endpoint, infra.s3.access_key, infra.s3.secret_key, infra.bucket)


async def uploaded(store: ArtifactStore, size: int = 8 << 20) -> tuple[str, str]:
    data = os.urandom(size)  # the loader only moves and hashes bytes; llama.cpp never sees these
    uri = await store.put_bytes(f"models/files-test-{uuid.uuid4().hex[:6]}/model-Q4_K_M.gguf", data)
    return uri, hashlib.sha256(data).hexdigest()


def wanted(uri: str, sha256: str) -> DesiredModel:
    return DesiredModel("v-files", uri, sha256, "production", utcnow())


async def test_two_loaders_sharing_a_cache_download_once_and_agree(store, tmp_path: Path):
    uri, sha = await uploaded(store)
    a, b = GgufFiles(store, tmp_path), GgufFiles(store, tmp_path)
    first, second = await asyncio.gather(a.local_path(wanted(uri, sha)), b.local_path(wanted(uri, sha)))
    assert first == second == tmp_path / sha / "model-Q4_K_M.gguf"
    assert hashlib.sha256(first.read_bytes()).hexdigest() == sha
    assert sorted(p.name for p in (tmp_path / sha).iterdir()) == ["model-Q4_K_M.gguf", "model-Q4_K_M.gguf.verified"]


async def test_a_checksum_mismatch_is_a_load_error_and_leaves_nothing_cached(store, tmp_path: Path):
    uri, _ = await uploaded(store, size=1 << 20)
    with pytest.raises(ModelLoadError, match="does not match"):
        await GgufFiles(store, tmp_path).local_path(wanted(uri, "0" * 64))
    assert list((tmp_path / ("0" * 64)).iterdir()) == []


async def test_a_missing_object_is_a_load_error_naming_it(store, tmp_path: Path):
    uri = store.uri(f"models/absent-{uuid.uuid4().hex[:6]}.gguf")
    with pytest.raises(ModelLoadError, match="absent"):
        await GgufFiles(store, tmp_path).local_path(wanted(uri, "1" * 64))
