"""Operator use cases on model versions: read the registry, ask the exporter (its only writer)
to promote a version or roll production back. Every command, accepted or refused, is audited.

The gateway validates what the read model can tell (the version exists, the registry's writer
would accept it, there is a `previous` to roll back to) and publishes the command; the exporter
moves the aliases and deploys. `wait_for_production` polls the read model until it has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from contracts import (
    CanaryStartRequested,
    CanaryStopRequested,
    Contract,
    ModelPromoteRequested,
    ModelRollbackRequested,
    deterministic_id,
    new_id,
)
from modelregistry import Canary, ModelVersion, canary_refusal, promotion_refusal
from servicekit.logs import log_fields

from ..domain import (
    AuditEntry,
    CanaryNotFoundError,
    CanaryStopSubmission,
    CanarySubmission,
    Identity,
    LogMinerUnavailableError,
    ModelCommandConflictError,
    ModelNotFoundError,
    PromoteSubmission,
    RollbackSubmission,
)
from ..ports import AuditLog, CanaryReports, ModelRegistry, OpsStore, Publisher

logger = logging.getLogger("gateway.models")

T = TypeVar("T")


@dataclass(frozen=True)
class ModelCommand:
    """An accepted promotion or rollback: `expected` becomes production once the exporter acts."""

    request_id: str
    action: str  # promote | rollback
    expected: str
    production: str | None  # when the command was sent


class ModelService:
    def __init__(self, registry: ModelRegistry, store: OpsStore, audit: AuditLog, publisher: Publisher, *,
                 reports: CanaryReports | None = None, poll_interval_s: float = 0.25) -> None:
        self.registry = registry
        self.reports = reports
        self.store = store
        self.audit = audit
        self.publisher = publisher
        self.poll_interval_s = poll_interval_s

    # ------------------------------------------------------------------ reads

    async def versions(self, alias: str | None = None) -> tuple[dict[str, str], list[ModelVersion]]:
        aliases = await self.registry.aliases()
        versions = await self.registry.versions()
        if alias is not None:
            versions = [v for v in versions if v.version == aliases.get(alias)]
        return aliases, versions

    async def aliases(self) -> dict[str, str]:
        return await self.registry.aliases()

    async def version(self, version: str) -> ModelVersion:
        found = await self.registry.version(version)
        if found is None:
            raise ModelNotFoundError(version)
        return found

    # ------------------------------------------------------------------ commands

    async def promote(self, who: Identity, version: str, body: PromoteSubmission,
                      client_ip: str | None) -> ModelCommand:
        details = body.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        found = await self.registry.version(version)
        if found is None:
            await self._refused(who, "models.promote", version, client_ip, details, f"{version} is not registered")
            raise ModelNotFoundError(version)
        if (reason := promotion_refusal(found, body.quantization)) is not None:
            await self._refused(who, "models.promote", version, client_ip, details, reason)
            raise ModelCommandConflictError(reason)
        production = (await self.registry.aliases()).get("production")
        request_id = new_id()
        msg = ModelPromoteRequested.create(
            correlation_id=request_id, message_id=deterministic_id("model-promote-requested", request_id),
            request_id=request_id, model_version=version, requested_by=who.subject,
            quantization=body.quantization, reason=body.reason,
        )
        await self._send(who, "models.promote", version, client_ip,
                         {**details, "request_id": request_id, "production": production}, msg)
        return ModelCommand(request_id, "promote", version, production)

    async def rollback(self, who: Identity, body: RollbackSubmission, client_ip: str | None) -> ModelCommand:
        details = body.model_dump(mode="json", exclude_defaults=True)
        aliases = await self.registry.aliases()
        production, previous = aliases.get("production"), aliases.get("previous")
        if previous is None or previous == production:
            reason = "nothing to roll back to: the registry has no previous production version"
            await self._refused(who, "models.rollback", production, client_ip, details, reason)
            raise ModelCommandConflictError(reason)
        request_id = new_id()
        msg = ModelRollbackRequested.create(
            correlation_id=request_id, message_id=deterministic_id("model-rollback-requested", request_id),
            request_id=request_id, requested_by=who.subject, reason=body.reason,
        )
        await self._send(who, "models.rollback", previous, client_ip,
                         {**details, "request_id": request_id, "production": production}, msg)
        return ModelCommand(request_id, "rollback", previous, production)

    # ------------------------------------------------------------------ canaries (decision 0020)

    async def start_canary(self, who: Identity, body: CanarySubmission, client_ip: str | None) -> str:
        """Ask the exporter to record a canary; its id (the request id). 404 / 409 refusals are
        audited and change nothing."""
        details = body.model_dump(mode="json")
        version = body.model_version
        target = await self.registry.version(version)
        if target is None:
            await self._refused(who, "canary.start", version, client_ip, details, f"{version} is not registered")
            raise ModelNotFoundError(version)
        production = (await self.registry.aliases()).get("production")
        refusal = canary_refusal(target, version, body.mode, production, await self.registry.running_canary())
        if refusal is not None:
            await self._refused(who, "canary.start", version, client_ip, details, refusal)
            raise ModelCommandConflictError(refusal)
        request_id = new_id()
        msg = CanaryStartRequested.create(
            correlation_id=request_id, message_id=deterministic_id("canary-start-requested", request_id),
            request_id=request_id, model_version=version, share_pct=body.share, mode=body.mode,
            min_samples=body.min_samples, max_duration_s=body.max_duration_s, requested_by=who.subject,
            reason=body.reason,
        )
        await self._send(who, "canary.start", version, client_ip,
                         {**details, "request_id": request_id, "production": production}, msg)
        return request_id

    async def stop_canary(self, who: Identity, body: CanaryStopSubmission,
                          client_ip: str | None) -> tuple[str, Canary]:
        """Ask the exporter to end the running canary (409 when none runs); the request id and
        the canary it stops."""
        details = body.model_dump(mode="json")
        running = await self.registry.running_canary()
        if running is None:
            reason = "no canary is running"
            await self._refused(who, "canary.stop", None, client_ip, details, reason)
            raise ModelCommandConflictError(reason)
        request_id = new_id()
        msg = CanaryStopRequested.create(
            correlation_id=running.canary_id, message_id=deterministic_id("canary-stop-requested", request_id),
            request_id=request_id, canary_id=running.canary_id, requested_by=who.subject, reason=body.reason,
        )
        await self._send(who, "canary.stop", running.version, client_ip,
                         {**details, "request_id": request_id, "canary_id": running.canary_id}, msg)
        return request_id, running

    async def canary(self, canary_id: str | None = None) -> tuple[Canary, dict | None, str | None]:
        """The canary (default: the running one, else the last), the judge's report on it, and
        why there is no report when the log-miner cannot give one."""
        found = await self.registry.canary(canary_id)
        if found is None:
            raise CanaryNotFoundError(f"no canary {canary_id}" if canary_id else "no canary has been started")
        if not found.running or self.reports is None:
            return found, found.report, None if found.report is not None or found.running else "ended without one"
        try:
            answer = await self.reports.canary_report(found.canary_id)
        except LogMinerUnavailableError as exc:  # the registry's record is still worth showing
            return found, None, str(exc)
        return found, (answer or {}).get("report"), None if answer else "the judge has not seen this canary yet"

    async def wait_for_canary(self, canary_id: str, timeout_s: float, *, running: bool) -> Canary | None:
        """The canary once the registry shows it running (or, `running=False`, ended); None when
        it does not within `timeout_s`."""
        return await self._poll(lambda: self.registry.canary(canary_id),
                                lambda found: found is not None and found.running == running, timeout_s)

    async def wait_for_production(self, expected: str, timeout_s: float) -> dict[str, str] | None:
        """The aliases once `expected` is production; None if it is not within `timeout_s`."""
        return await self._poll(self.registry.aliases, lambda aliases: aliases.get("production") == expected,
                                timeout_s)

    async def _poll(self, read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float) -> T | None:
        """Read the registry every `poll_interval_s` until `done` holds (that reading), at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await read()
            if done(value):
                return value
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(min(self.poll_interval_s, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------------ audit + publish

    async def _send(self, who: Identity, action: str, target: str, client_ip: str | None, details: dict,
                    msg: Contract) -> None:
        entry = AuditEntry(subject=who.subject, role=who.role.label, action=action, outcome="ok", target=target,
                           client_ip=client_ip, details=details)
        await self.store.request(entry, msg)  # audit row + outbox row, one transaction
        await self.publisher.publish_now(msg)
        logger.info("%s of %s requested by %s (request %s)", action, target, who.subject, details["request_id"],
                    extra=log_fields(request_id=details["request_id"], model_version=target))

    async def _refused(self, who: Identity, action: str, target: str | None, client_ip: str | None, details: dict,
                       reason: str) -> None:
        logger.info("%s by %s refused: %s", action, who.subject, reason)
        await self.audit.record(
            AuditEntry(subject=who.subject, role=who.role.label, action=action, outcome="error", target=target,
                       client_ip=client_ip, details={**details, "refused": reason})
        )
