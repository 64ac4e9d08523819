"""ModelRegistry on the registry's read model (schema `registry`, written by the exporter only),
through `modelregistry`'s read functions on a small asyncpg pool of the gateway's own."""

from __future__ import annotations

import asyncpg

from modelregistry import Canary, ModelVersion, get_aliases, get_canary, get_version, list_versions, running_canary
from servicekit.db import AsyncpgPool


class PostgresModelRegistry:
    def __init__(self, database_url: str, *, max_size: int = 2) -> None:
        self._db = AsyncpgPool(database_url, what="the registry pool", max_size=max_size)
        self.open, self.close = self._db.open, self._db.close

    @property
    def pool(self) -> asyncpg.Pool:
        return self._db.pool

    async def versions(self) -> list[ModelVersion]:
        return await list_versions(self.pool)

    async def version(self, version: str) -> ModelVersion | None:
        return await get_version(self.pool, version)

    async def aliases(self) -> dict[str, str]:
        return await get_aliases(self.pool)

    async def canary(self, canary_id: str | None = None) -> Canary | None:
        return await get_canary(self.pool, canary_id)

    async def running_canary(self) -> Canary | None:
        return await running_canary(self.pool)
