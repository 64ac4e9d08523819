"""The registry's read model (schema `registry`, written by the exporter) as the runner reads it:
the `production` version at start-up, any alias or version a run asks for, and the running
canary."""

from __future__ import annotations

import asyncpg

from contracts import utcnow
from modelregistry import Canary, resolve, running_canary
from servicekit.db import asyncpg_dsn

from ..domain import RegistryUnavailableError
from ..model_slot import DesiredModel


class RegistryModels:
    def __init__(self, database_url: str, *, timeout_s: float = 10.0) -> None:
        self.dsn = asyncpg_dsn(database_url)
        self.timeout_s = timeout_s

    async def production(self) -> DesiredModel | None:
        return await self.lookup("production")

    async def canary(self) -> Canary | None:
        """The running canary (decision 0020), or None."""
        return await self._read(running_canary)

    async def lookup(self, name: str) -> DesiredModel | None:
        """An alias (production, candidate, previous) or a version → its GGUF; None when unknown."""
        version = await self._read(lambda conn: resolve(conn, name))
        if version is None:
            return None
        gguf = version.gguf()
        if gguf is None:
            raise RegistryUnavailableError(
                f"{name} version {version.version} has no GGUF for its quant {version.quantization!r}"
                if name != version.version else
                f"version {version.version} has no GGUF for its quant {version.quantization!r}"
            )
        return DesiredModel(version.version, gguf.uri, gguf.sha256, name, utcnow(), size_bytes=gguf.size_bytes)

    async def _read(self, query):  # noqa: ANN001, ANN202 - a registry read function on one connection
        try:
            conn = await asyncpg.connect(self.dsn, timeout=self.timeout_s)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise RegistryUnavailableError(f"cannot connect: {exc}") from exc
        try:
            return await query(conn)
        except asyncpg.PostgresError as exc:  # e.g. the registry schema is not migrated
            raise RegistryUnavailableError(str(exc)) from exc
        finally:
            await conn.close()
