"""The runner's start-up read of the registry's `production` version, on real Postgres."""

from __future__ import annotations

import uuid

import pytest

from agent_runner.adapters.registry_reader import RegistryProduction
from agent_runner.domain import RegistryUnavailableError
from modelregistry import BASE_VERSION, BUNDLED_URI
from tests.harness import IsolatedEnv, create_database, drop_database, free_port, migrate


async def test_a_fresh_install_serves_the_bundled_base(infra: IsolatedEnv):
    # A database of its own: the session's registry may have been moved by other tests.
    name = f"{infra.database}_fresh_{uuid.uuid4().hex[:6]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    create_database(name)
    try:
        migrate(url)
        production = await RegistryProduction(url).production()
    finally:
        drop_database(name)
    assert production is not None
    assert (production.model_version, production.gguf_uri, production.alias) == (BASE_VERSION, BUNDLED_URI,
                                                                                  "production")
    assert len(production.sha256) == 64


async def test_a_database_without_the_registry_schema_is_unavailable(infra: IsolatedEnv):
    name = f"{infra.database}_noreg_{uuid.uuid4().hex[:6]}"
    create_database(name)
    try:
        with pytest.raises(RegistryUnavailableError, match="registry"):
            await RegistryProduction(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}").production()
    finally:
        drop_database(name)


async def test_an_unreachable_database_is_unavailable():
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/agentloop"
    with pytest.raises(RegistryUnavailableError, match="cannot connect"):
        await RegistryProduction(url, timeout_s=2).production()
