"""ModelRegistry on the registry's read model (schema `registry`, written by the exporter only),
through `modelregistry`'s read functions on a small asyncpg pool of the gateway's own."""

from __future__ import annotations

import asyncpg

from modelregistry import ModelVersion, get_aliases, get_version, list_versions
from servicekit.db import asyncpg_pool


class PostgresModelRegistry:
    def __init__(self, database_url: str, *, max_size: int = 2) -> None:
        self.database_url = database_url
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg_pool(self.database_url, min_size=0, max_size=self.max_size)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the registry pool is not open (start-up hook not run)")
        return self._pool

    async def versions(self) -> list[ModelVersion]:
        return await list_versions(self.pool)

    async def version(self, version: str) -> ModelVersion | None:
        return await get_version(self.pool, version)

    async def aliases(self) -> dict[str, str]:
        return await get_aliases(self.pool)
