"""A migrated database of this package's own (alias state is global to a database), and a
connection per test on a registry reset to the fresh-install state."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from servicekit.db import asyncpg_dsn
from tests.harness import IsolatedEnv, create_database, drop_database, migrate
from tests.registry.state import reset_registry


@pytest.fixture(scope="package")
def registry_db(infra: IsolatedEnv) -> Iterator[str]:
    database = f"{infra.database}_registry_{uuid.uuid4().hex[:6]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    create_database(database)
    try:
        migrate(url)
        yield asyncpg_dsn(url)
    finally:
        drop_database(database)


@pytest.fixture
async def conn(registry_db: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(registry_db)
    try:
        await reset_registry(c)
        yield c
    finally:
        await c.close()
