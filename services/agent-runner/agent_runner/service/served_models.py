"""Use case: the engine a run executes on (decision 0018).

A run that names no model, `production`, or the version production is, runs on the slot's engine
(hot-reloaded by `ReloadModel`). Any other alias or version (`candidate`, an older version) is
looked up in the registry and loaded on the run's demand, beside production, when this runner
may hold it:

- at most `capacity` such versions at once (`RUNNER__EXTRA_MODELS`; 0 turns them off); the least
  recently used one makes room, and closes once the runs that hold it have finished;
- only when the host has the memory: its available memory, less the GGUF's size, must stay above
  `reserve_bytes`; otherwise the run is refused with both numbers;
- only on engines that load models (llama.cpp, Ollama); the openai and scripted engines serve
  what their server or script serves.

Runs that ask for the same version at once share one load. A run the runner cannot serve fails
with `model_not_served` and the reason; it never silently runs on another model.

A run that names no model is routed by the registry's running canary (decision 0020): the
canary's hash of the run id picks its share, which loads the canary's version the same way. A
runner that cannot serve that version (no room under the memory check, extra models off, a load
that fails) refuses the canary: it says why in its log, /health/detailed and
`agent_runner_canary_runs_total{route="refused"}`, and those runs run on production. It tries
the canary's version again at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from modelregistry import Canary
from servicekit.logs import log_fields

from ..domain import ModelLoadError, ModelNotServedError, RegistryUnavailableError
from ..metrics import RunnerMetrics
from ..model_slot import DesiredModel, Leases, ModelSlot
from ..ports import CanarySource, Engine, EngineLoader, ModelLookup

logger = logging.getLogger("agent_runner.models")

PRODUCTION = "production"
MiB = 1024 * 1024


@dataclass
class _Loaded:
    engine: Engine
    model: DesiredModel


class ServedModels:
    def __init__(self, slot: ModelSlot, loader: EngineLoader | None = None, registry: ModelLookup | None = None,
                 metrics: RunnerMetrics | None = None, *, capacity: int = 0, reserve_bytes: int = 0,
                 available_bytes: Callable[[], int | None] = lambda: None, lookup_ttl_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, canaries: CanarySource | None = None) -> None:
        """Without a loader and a registry (or with capacity 0) it serves production only."""
        self.slot = slot
        self.loader = loader
        self.registry = registry
        self.metrics = metrics
        self.capacity = capacity
        self.reserve_bytes = reserve_bytes
        self.available_bytes = available_bytes
        self.lookup_ttl_s = lookup_ttl_s
        self._clock = clock
        self._leases = Leases()
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # version -> engine, least recently used first
        self._loading: dict[str, asyncio.Task[Engine]] = {}
        self._lookups: dict[str, tuple[float, DesiredModel | None]] = {}
        self._retiring: set[asyncio.Task] = set()
        self.canaries = canaries
        self._canary: tuple[float, Canary | None] | None = None
        self.canary_refusal: dict[str, str] | None = None  # the running canary this runner refused, and why
        self._refused_at = 0.0
        self.refusal_retry_s = 60.0  # a refused canary is tried again after this long (memory may be freed)

    async def lease(self, asked: str | None, run_id: str | None = None) -> contextlib.AbstractContextManager[Engine]:
        """The engine for a run's `options.model`, held until the returned block ends; raises
        ModelNotServedError with the reason when this runner cannot serve it. A run that names
        no model goes where the running canary routes its id."""
        serving = self.slot.engine.model_version
        if asked is None and run_id is not None and (routed := await self._canary_lease(run_id)) is not None:
            return routed
        if asked is None or asked in (PRODUCTION, serving):
            return self.slot.lease()
        if self.loader is None or not self.loader.reloads:
            raise ModelNotServedError(
                f"this runner's {self.slot.engine.name} engine serves {serving} only; options.model asked for "
                f"{asked!r}: leave options.model out")
        if self.capacity <= 0 or self.registry is None or self.metrics is None:
            raise ModelNotServedError(
                f"this runner serves production ({serving}) only (RUNNER__EXTRA_MODELS=0); options.model asked "
                f"for {asked!r}")
        model = await self._lookup(asked)
        if model.model_version == self.slot.engine.model_version:
            return self.slot.lease()
        engine = await self._engine_for(model)
        return self._leases.hold(engine)

    async def _canary_lease(self, run_id: str) -> contextlib.AbstractContextManager[Engine] | None:
        """The canary's version for a run its hash routes there; None for production."""
        canary = await self._running_canary()
        if canary is None or not canary.routes(run_id) or canary.version == self.slot.engine.model_version:
            return None
        refused = self.canary_refusal
        if (refused is not None and refused["canary_id"] == canary.canary_id
                and self._clock() - self._refused_at < self.refusal_retry_s):
            if self.metrics is not None:  # refused lately: no new load (a download, a failed load) per run
                self.metrics.canary_runs.labels(route="refused").inc()
            return None
        try:
            lease = await self.lease(canary.version)
        except ModelNotServedError as exc:
            self._refuse(canary, str(exc))
            return None
        if self.canary_refusal is not None and self.canary_refusal["canary_id"] == canary.canary_id:
            self.canary_refusal = None  # it loads now (memory was freed, a failed load worked)
        if self.metrics is not None:
            self.metrics.canary_runs.labels(route="candidate").inc()
        return lease

    async def _running_canary(self) -> Canary | None:
        """The registry's running canary, read at most every `lookup_ttl_s`; an unreadable
        registry keeps the last answer (runs go on; the next read tries again)."""
        if self.canaries is None:
            return None
        now = self._clock()
        if self._canary is not None and now - self._canary[0] < self.lookup_ttl_s:
            return self._canary[1]
        try:
            canary = await self.canaries.canary()
        except RegistryUnavailableError as exc:
            logger.warning("the running canary cannot be read (%s); routing as before", exc)
            canary = self._canary[1] if self._canary is not None else None
        self._canary = (now, canary)
        return canary

    def _refuse(self, canary: Canary, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.canary_runs.labels(route="refused").inc()
        if self.canary_refusal is None or self.canary_refusal["canary_id"] != canary.canary_id:
            logger.warning("this runner refuses canary %s of %s; its runs run on production: %s", canary.canary_id,
                           canary.version, reason, extra=log_fields(canary_id=canary.canary_id,
                                                                    model_version=canary.version))
        self.canary_refusal = {"canary_id": canary.canary_id, "model_version": canary.version, "reason": reason}
        self._refused_at = self._clock()

    async def _lookup(self, asked: str) -> DesiredModel:
        """The registry's answer for `asked`, cached for `lookup_ttl_s` (an alias may move)."""
        now = self._clock()
        cached = self._lookups.get(asked)
        if cached is not None and now - cached[0] < self.lookup_ttl_s:
            model = cached[1]
        else:
            try:
                model = await self.registry.lookup(asked)
            except RegistryUnavailableError as exc:
                raise ModelNotServedError(f"options.model {asked!r}: the model registry cannot be read: {exc}") from exc
            self._lookups[asked] = (now, model)
        if model is None:
            raise ModelNotServedError(f"options.model {asked!r} is neither an alias nor a version in the registry")
        return model

    async def _engine_for(self, model: DesiredModel) -> Engine:
        version = model.model_version
        loaded = self._loaded.get(version)
        if loaded is not None and loaded.model.same_artifact(model):
            self._loaded.move_to_end(version)
            return loaded.engine
        task = self._loading.get(version)
        if task is None:
            task = asyncio.create_task(self._load(model), name=f"load-{version}")
            self._loading[version] = task
            task.add_done_callback(lambda _: self._loading.pop(version, None))
        # Shielded: a run cancelled while it waits must not cancel the load other runs wait for.
        return await asyncio.shield(task)

    async def _load(self, model: DesiredModel) -> Engine:
        version = model.model_version
        fields = log_fields(model_version=version, gguf_uri=model.gguf_uri)
        if (stale := self._loaded.pop(version, None)) is not None:  # the same version, rebuilt (new sha256)
            self._retire(stale)
        while len(self._loaded) >= self.capacity:
            _, oldest = self._loaded.popitem(last=False)
            logger.info("model %s makes room for %s (RUNNER__EXTRA_MODELS=%d)", oldest.model.model_version, version,
                        self.capacity, extra=fields)
            self._retire(oldest)
        self._check_memory(model)
        logger.info("loading model %s beside production %s for the runs that ask for it", version,
                    self.slot.engine.model_version, extra=fields)
        t0 = time.perf_counter()
        try:
            engine = await self.loader.load(model)
        except ModelLoadError as exc:
            self.metrics.extra_model_loaded("failed", time.perf_counter() - t0, len(self._loaded))
            logger.error("model %s did not load: %s", version, exc, extra=fields)
            raise ModelNotServedError(f"model {version} could not be loaded: {exc}") from exc
        seconds = time.perf_counter() - t0
        self._loaded[version] = _Loaded(engine, model)
        self.metrics.extra_model_loaded("ok", seconds, len(self._loaded))
        logger.info("model %s loaded in %.1fs beside production", version, seconds, extra=fields)
        return engine

    def _check_memory(self, model: DesiredModel) -> None:
        available = self.available_bytes()
        if available is None:
            return  # the host does not say (not Linux): nothing to check against
        left = available - model.size_bytes
        if left < self.reserve_bytes:
            self.metrics.extra_model_loaded("refused", 0.0, len(self._loaded))
            raise ModelNotServedError(
                f"not loading model {model.model_version} beside production: it needs {model.size_bytes / MiB:.0f} "
                f"MiB, {available / MiB:.0f} MiB are available and {self.reserve_bytes / MiB:.0f} MiB must stay "
                "free (RUNNER__MODEL_MEMORY_RESERVE_MB)")

    def _retire(self, loaded: _Loaded) -> None:
        task = asyncio.create_task(self._close(loaded), name=f"retire-{loaded.model.model_version}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close(self, loaded: _Loaded) -> None:
        try:
            await self._leases.retire(loaded.engine)
        except Exception:  # out of service either way; say that its close failed
            logger.exception("model %s: closing it failed", loaded.model.model_version)
            return
        self.metrics.extra_models.set(len(self._loaded))
        logger.info("model %s closed", loaded.model.model_version)

    def describe(self) -> dict[str, object]:
        return {
            "extra_models": [
                {"model_version": v, "in_flight": self._leases.in_flight(x.engine), "gguf_uri": x.model.gguf_uri}
                for v, x in self._loaded.items()
            ],
            "extra_models_capacity": self.capacity,
            "extra_models_loading": sorted(self._loading),
            "canary": self._describe_canary(),
        }

    def _describe_canary(self) -> dict[str, object] | None:
        canary = self._canary[1] if self._canary is not None else None
        if canary is None:
            return None
        refused = self.canary_refusal if (self.canary_refusal or {}).get("canary_id") == canary.canary_id else None
        return {"canary_id": canary.canary_id, "model_version": canary.version, "share_pct": canary.share_pct,
                "mode": canary.mode, "state": "refused" if refused else "routing",
                "refused_because": refused["reason"] if refused else None}

    async def close(self) -> None:
        """Shutdown (no run in flight any more): close every extra engine."""
        for task in list(self._loading.values()):
            task.cancel()
        await asyncio.gather(*self._loading.values(), return_exceptions=True)
        while self._loaded:
            _, loaded = self._loaded.popitem()
            self._retire(loaded)
        await asyncio.gather(*self._retiring, return_exceptions=True)
