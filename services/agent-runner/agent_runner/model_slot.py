"""The engine currently serving runs, held so that it can be replaced atomically.

A run takes `slot.engine` once at its start and keeps that object to the end, so swapping the
slot never disturbs a run in flight: it finishes on the engine it started with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts import utcnow

from .ports import Engine


@dataclass(frozen=True)
class DesiredModel:
    """A model version the registry asked this runner to serve (`model.deployed`)."""

    model_version: str
    gguf_uri: str
    sha256: str
    alias: str
    requested_at: datetime


class ModelSlot:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.desired: DesiredModel | None = None

    @property
    def engine(self) -> Engine:
        return self._engine

    def swap(self, engine: Engine) -> Engine:
        """Serve `engine` from now on; returns the previous one for the caller to close once idle."""
        previous, self._engine = self._engine, engine
        return previous

    def want(self, model_version: str, gguf_uri: str, sha256: str, alias: str) -> DesiredModel:
        """Record the version the registry wants served. Loading it is the hot-reload step."""
        self.desired = DesiredModel(model_version, gguf_uri, sha256, alias, utcnow())
        return self.desired

    def describe(self) -> dict[str, object]:
        desired = self.desired
        return {
            "model_version": self._engine.model_version,
            "engine": self._engine.name,
            "desired_model_version": desired.model_version if desired else None,
            "desired_alias": desired.alias if desired else None,
            "desired_requested_at": desired.requested_at.isoformat() if desired else None,
            "reload_pending": bool(desired and desired.model_version != self._engine.model_version),
        }
