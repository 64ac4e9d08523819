"""The runner's reads of the registry, on real Postgres: `production` at start-up, and any alias or
version a run names (decision 0018)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from agent_runner.adapters.registry_reader import RegistryModels
from agent_runner.domain import RegistryUnavailableError
from modelregistry import BASE_VERSION, BUNDLED_URI, ModelFile
from modelregistry.write import register_candidate
from servicekit.db import asyncpg_dsn
from tests.harness import IsolatedEnv, create_database, drop_database, free_port, migrate


@contextlib.contextmanager
def migrated_database(infra: IsolatedEnv, purpose: str) -> Iterator[str]:
    """A migrated database of its own (the session's registry may have been moved by other tests)."""
    name = f"{infra.database}_{purpose}_{uuid.uuid4().hex[:6]}"
    create_database(name)
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        migrate(url)
        yield url
    finally:
        drop_database(name)


async def test_a_fresh_install_serves_the_bundled_base(infra: IsolatedEnv):
    with migrated_database(infra, "fresh") as url:
        production = await RegistryModels(url).production()
    assert production is not None
    assert (production.model_version, production.gguf_uri, production.alias) == (BASE_VERSION, BUNDLED_URI,
                                                                                  "production")
    assert len(production.sha256) == 64


async def test_a_run_may_name_an_alias_or_a_version_and_an_unknown_name_is_none(infra: IsolatedEnv):
    with migrated_database(infra, "lookup") as url:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await register_candidate(
                conn, version="v-lookup", base_model=BASE_VERSION, job_id="job-lookup", dataset_id=None,
                adapter_uri=None, lineage={}, quantization="Q4_K_M",
                files=[ModelFile("Q4_K_M", "s3://models/v-lookup.gguf", "cd" * 32, 123_456, "gguf")])
        finally:
            await conn.close()
        registry = RegistryModels(url)
        by_alias, by_version = await registry.lookup("candidate"), await registry.lookup("v-lookup")
        unknown, base = await registry.lookup("v-nope"), await registry.lookup(BASE_VERSION)
    assert by_alias is not None and by_version is not None
    assert (by_alias.model_version, by_alias.gguf_uri, by_alias.sha256, by_alias.size_bytes, by_alias.alias) == (
        "v-lookup", "s3://models/v-lookup.gguf", "cd" * 32, 123_456, "candidate")
    assert by_version.alias == "v-lookup" and by_version.same_artifact(by_alias)
    assert unknown is None
    assert base is not None and base.gguf_uri == BUNDLED_URI


async def test_a_database_without_the_registry_schema_is_unavailable(infra: IsolatedEnv):
    name = f"{infra.database}_noreg_{uuid.uuid4().hex[:6]}"
    create_database(name)
    try:
        with pytest.raises(RegistryUnavailableError, match="registry"):
            await RegistryModels(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}").production()
    finally:
        drop_database(name)


async def test_an_unreachable_database_is_unavailable():
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/agentloop"
    with pytest.raises(RegistryUnavailableError, match="cannot connect"):
        await RegistryModels(url, timeout_s=2).production()
