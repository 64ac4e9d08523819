"""The engine currently serving runs, held so that it can be replaced atomically.

A run leases the slot's engine once at its start (`with slot.lease() as engine:`) and keeps that
object to the end, so swapping the slot never disturbs a run in flight: it finishes on the engine
it started with. The slot counts the leases per engine, so a replaced engine is closed only once
its last run has finished (`retire`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from contracts import utcnow

from .domain import EngineError
from .ports import Engine


@dataclass(frozen=True)
class DesiredModel:
    """A model version this runner is asked to serve (`model.deployed`, or `production` at start-up)."""

    model_version: str
    gguf_uri: str
    sha256: str
    alias: str
    requested_at: datetime
    ollama_model: str | None = None
    size_bytes: int = 0  # the GGUF's size where the registry knows it (0: unknown)

    def same_artifact(self, other: DesiredModel | None) -> bool:
        return other is not None and (other.model_version, other.sha256) == (self.model_version, self.sha256)


@dataclass
class ReloadStatus:
    """What the last reloads did, for /health/detailed."""

    loading: str | None = None  # the version being loaded right now
    last_reload_at: datetime | None = None
    last_reload_s: float | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_error_version: str | None = None
    reloads: int = 0
    failures: int = 0


class Leases:
    """Runs in flight per engine. An engine taken out of service closes once its last run has
    finished (`retire`); until then it counts as draining."""

    def __init__(self) -> None:
        self._count: dict[int, int] = {}  # id(engine) -> runs in flight on it
        self._drained: dict[int, asyncio.Event] = {}  # retired engines still in use

    @contextlib.contextmanager
    def hold(self, engine: Engine) -> Iterator[Engine]:
        """`engine`, counted as in use until the block ends."""
        key = id(engine)
        self._count[key] = self._count.get(key, 0) + 1
        try:
            yield engine
        finally:
            left = self._count[key] - 1
            if left:
                self._count[key] = left
            else:
                del self._count[key]
                if (drained := self._drained.pop(key, None)) is not None:
                    drained.set()

    def in_flight(self, engine: Engine) -> int:
        return self._count.get(id(engine), 0)

    async def retire(self, engine: Engine) -> None:
        """Close an engine no new run can lease, once the runs that hold it have finished."""
        key = id(engine)
        if self._count.get(key):
            drained = self._drained.setdefault(key, asyncio.Event())
            await drained.wait()
        await engine.close()

    @property
    def draining(self) -> int:
        """Retired engines that still have runs in flight."""
        return len(self._drained)


class ModelSlot:
    def __init__(self, engine: Engine | None = None) -> None:
        self._engine = engine
        self.desired: DesiredModel | None = None
        self.status = ReloadStatus()
        self._leases = Leases()

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise EngineError("no model loaded yet")
        return self._engine

    def lease(self) -> contextlib.AbstractContextManager[Engine]:
        """The serving engine, counted as in use until the block ends."""
        return self._leases.hold(self.engine)

    def in_flight(self, engine: Engine) -> int:
        return self._leases.in_flight(engine)

    def swap(self, engine: Engine) -> Engine | None:
        """Serve `engine` from now on; returns the previous one for the caller to `retire`."""
        previous, self._engine = self._engine, engine
        return previous

    async def retire(self, engine: Engine) -> None:
        """Close a replaced engine once the runs that leased it have finished."""
        if engine is self._engine:
            raise ValueError("the serving engine cannot be retired; swap it out first")
        await self._leases.retire(engine)

    @property
    def draining(self) -> int:
        """Replaced engines that still have runs in flight."""
        return self._leases.draining

    def want(self, model_version: str, gguf_uri: str, sha256: str, alias: str,
             ollama_model: str | None = None) -> DesiredModel:
        """Record the version this runner should serve. Loading it is the reload step."""
        self.desired = DesiredModel(model_version, gguf_uri, sha256, alias, utcnow(), ollama_model)
        return self.desired

    def describe(self) -> dict[str, object]:
        desired, engine, status = self.desired, self._engine, self.status
        serving = engine.model_version if engine is not None else None
        return {
            "model_version": serving,
            "engine": engine.name if engine is not None else None,
            "in_flight": self.in_flight(engine) if engine is not None else 0,
            "draining_engines": self.draining,
            "desired_model_version": desired.model_version if desired else None,
            "desired_alias": desired.alias if desired else None,
            "desired_requested_at": desired.requested_at.isoformat() if desired else None,
            "reload_pending": bool(desired and desired.model_version != serving),
            "reload_loading": status.loading,
            "last_reload_at": _iso(status.last_reload_at),
            "last_reload_s": status.last_reload_s,
            "last_reload_error": status.last_error,
            "last_reload_error_at": _iso(status.last_error_at),
            "last_reload_error_version": status.last_error_version,
            "reloads": status.reloads,
            "reload_failures": status.failures,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
