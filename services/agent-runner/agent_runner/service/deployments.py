"""Use cases: serve the model version the registry deploys (hot reload), and the one it names
`production` at start-up (decision 0011).

`model.deployed` only records the wanted version and wakes the reload worker, so the delivery is
acked at once. The worker loads one model at a time: fetch and verify the GGUF, load it, warm it
with one short completion, swap it into the slot; the replaced engine is closed once the runs
that leased it have finished. A deployment that arrives while a load is under way is not queued
behind it: when the load ends, a model that is no longer wanted is thrown away and the newest
wanted version is loaded. A failed load leaves the current model serving; the cause is logged
and shown in /health/detailed and the reload metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time

from contracts import ModelDeployed, utcnow
from modelkit.chat_format import STOP_STRINGS, render_prompt
from servicekit.logs import log_fields

from ..domain import RegistryUnavailableError
from ..metrics import RunnerMetrics
from ..model_slot import DesiredModel, ModelSlot
from ..ports import Engine, EngineLoader, ProductionModel

logger = logging.getLogger("agent_runner.deployments")

WARM_PROMPT = render_prompt([{"role": "user", "content": "Say OK."}])


class RecordDeployment:
    """For engines that cannot switch models: record the wanted version (health shows the
    reload as pending) and say so in the log."""

    def __init__(self, slot: ModelSlot) -> None:
        self.slot = slot

    async def __call__(self, event: ModelDeployed) -> None:
        desired = self.slot.want(event.model_version, event.gguf_uri, event.sha256, event.alias)
        logger.warning(
            "model %s deployed as %s, but the %s engine cannot load it; still serving %s",
            desired.model_version, desired.alias, self.slot.engine.name, self.slot.engine.model_version,
            extra=log_fields(model_version=desired.model_version, gguf_uri=desired.gguf_uri),
        )


class ReloadModel:
    def __init__(self, slot: ModelSlot, loader: EngineLoader, metrics: RunnerMetrics, *,
                 warm_prompt: str = WARM_PROMPT, warm_tokens: int = 2) -> None:
        self.slot = slot
        self.loader = loader
        self.metrics = metrics
        self.warm_prompt = warm_prompt
        self.warm_tokens = warm_tokens
        self._wake = asyncio.Event()
        self._attempted: DesiredModel | None = None  # the last wanted model a load was tried for
        self._retiring: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ messages

    async def __call__(self, event: ModelDeployed) -> None:
        """`model.deployed`: want the version, let the worker load it."""
        fields = log_fields(model_version=event.model_version, gguf_uri=event.gguf_uri, cause=event.cause)
        if event.alias != "production":
            # Runners hot-reload `production` only; another version loads when a run names it (ServedModels).
            logger.info("model %s deployed as %s: not served by runners", event.model_version, event.alias,
                        extra=fields)
            return
        desired = self.slot.want(event.model_version, event.gguf_uri, event.sha256, event.alias,
                                 ollama_model=event.ollama_model)
        self.metrics.wanted(desired.model_version)
        logger.info("model %s deployed (%s); serving %s until it is loaded", desired.model_version, event.cause,
                    self.serving_version(), extra=fields)
        self._wake.set()

    def serving_version(self) -> str | None:
        return self.slot.engine.model_version if self.slot.loaded else None

    # ------------------------------------------------------------------ start-up

    async def serve_production(self, registry: ProductionModel, fallback: DesiredModel) -> None:
        """Load the registry's `production` version into an empty slot; the bundled model when
        the registry has none, cannot be read, or its production version does not load."""
        try:
            desired = await registry.production()
        except RegistryUnavailableError as exc:
            logger.warning("model registry unreadable (%s); serving the bundled model %s", exc,
                           fallback.model_version)
            desired = None
        if desired is None:
            logger.info("no production version in the registry; serving the bundled model %s", fallback.model_version)
            desired = fallback
        self.slot.desired = desired
        self.metrics.wanted(desired.model_version)
        if await self._reload(desired) or desired is fallback:
            if not self.slot.loaded:
                raise RuntimeError(f"the bundled model {fallback.model_version} did not load: "
                                   f"{self.slot.status.last_error}")
            return
        logger.error("production version %s did not load; serving the bundled model %s meanwhile",
                     desired.model_version, fallback.model_version)
        if not await self._reload(fallback, keep_wanted=True):
            raise RuntimeError(f"neither {desired.model_version} nor the bundled model loaded: "
                               f"{self.slot.status.last_error}")

    # ------------------------------------------------------------------ the worker

    async def run(self) -> None:
        """Background task: one load at a time, always towards the newest wanted version."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (target := self._next()) is not None:
                try:
                    await self._reload(target)
                except Exception:  # a bug here must not leave this runner deaf to later deployments
                    logger.exception("reload worker failed on %s; waiting for the next deployment",
                                     target.model_version)

    def _next(self) -> DesiredModel | None:
        desired = self.slot.desired
        if desired is None or desired is self._attempted:
            return None
        if self.slot.loaded and desired.model_version == self.slot.engine.model_version:
            return None  # already serving it (a duplicate, or a rollback to what is served)
        return desired

    async def _reload(self, target: DesiredModel, *, keep_wanted: bool = False) -> bool:
        """Load, warm and swap in `target`; False when it failed or was overtaken meanwhile."""
        self._attempted = target
        status = self.slot.status
        fields = log_fields(model_version=target.model_version, gguf_uri=target.gguf_uri)
        if not self.loader.reloads:
            logger.warning("the serving engine cannot load model %s; still serving %s", target.model_version,
                           self.serving_version(), extra=fields)
            return False
        status.loading = target.model_version
        logger.info("loading model %s from %s", target.model_version, target.gguf_uri, extra=fields)
        t0 = time.perf_counter()
        try:
            engine = await self.loader.load(target)
            try:
                await self._warm(engine)
            except BaseException:
                await engine.close()  # loaded but unusable: never served, not leaked
                raise
        # Whatever broke the load, the model already serving keeps serving: the cause goes to the
        # log, /health/detailed and the failure counter, nothing is half-swapped.
        except Exception as exc:  # noqa: BLE001
            seconds = time.perf_counter() - t0
            status.loading = None
            status.failures += 1
            status.last_error = f"{type(exc).__name__}: {exc}"[:500]
            status.last_error_at = utcnow()
            status.last_error_version = target.model_version
            self.metrics.reload_finished("failed", seconds)
            logger.error("model %s failed to load after %.1fs (still serving %s): %s", target.model_version, seconds,
                         self.serving_version(), status.last_error, extra=fields, exc_info=exc)
            return False
        seconds = time.perf_counter() - t0
        status.loading = None
        wanted = self.slot.desired
        if not keep_wanted and not target.same_artifact(wanted) and wanted is not None:
            # A newer deployment came in while this one loaded: do not serve an outdated model.
            logger.info("model %s loaded but %s is wanted now; discarding it", target.model_version,
                        wanted.model_version, extra=fields)
            await engine.close()
            self.metrics.reload_finished("superseded", seconds)
            return False
        previous = self.slot.swap(engine)
        status.reloads += 1
        status.last_reload_at = utcnow()
        status.last_reload_s = round(seconds, 3)
        self.metrics.serving(engine.model_version, engine.name)
        self.metrics.reload_finished("ok", seconds)
        logger.info("now serving model %s (loaded and warmed in %.1fs)%s", engine.model_version, seconds,
                    f"; {previous.model_version} closes after its in-flight runs" if previous else "", extra=fields)
        if previous is not None:
            task = asyncio.create_task(self._retire(previous), name=f"retire-{previous.model_version}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return True

    async def _warm(self, engine: Engine) -> None:
        """One short completion: the first run after the swap must not pay for cold caches."""
        stream = engine.generate(self.warm_prompt, max_tokens=self.warm_tokens, temperature=0.0, stop=STOP_STRINGS)
        async for _ in stream:
            pass

    async def _retire(self, engine: Engine) -> None:
        runs = self.slot.in_flight(engine)
        if runs:
            logger.info("model %s: waiting for %d in-flight runs before closing it", engine.model_version, runs)
        try:
            await self.slot.retire(engine)
        except Exception:  # the engine is out of service either way; say that its close failed
            logger.exception("model %s: closing the replaced engine failed", engine.model_version)
            return
        logger.info("model %s closed", engine.model_version)

    async def close(self) -> None:
        """Shutdown: close replaced engines (their runs are over once the broker has stopped)."""
        await asyncio.gather(*self._retiring, return_exceptions=True)
