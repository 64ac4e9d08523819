"""What the use cases need from the outside world. Adapters in `adapters/` implement these;
unit tests use fakes of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from contracts import Contract
from modelregistry import Canary, ModelVersion

from .domain import (
    ApiKeyRecord,
    AuditEntry,
    NewFeedback,
    NewRun,
    Role,
    RunFinish,
    RunRecord,
    ScreenMark,
    TaggedRun,
)


class RunStore(Protocol):
    async def create(self, run: NewRun, message: Contract) -> None:
        """Insert the run and stage its request message in the outbox, in one transaction."""

    async def refuse(self, run: NewRun, error_code: str, error: str) -> None:
        """Record a run request that was refused before it was published (status `refused`)."""

    async def get(self, run_id: str) -> RunRecord | None: ...

    async def list(self, subject: str | None, metadata: dict[str, str], limit: int) -> list[TaggedRun]:
        """Runs newest first: of `subject` (None: everyone's) whose tags include every `metadata` pair."""

    async def screened(self, since: datetime, limit: int) -> list[dict[str, Any]]:
        """Runs since `since`, newest first, whose request a screen fired on or whose tool results it
        fired on: run_id, subject, status, created_at, model_version, screening (the request's
        records), screened_steps (the trajectory steps that carry one)."""

    async def finish(self, finish: RunFinish, *, message_id: str, message_type: str) -> RunRecord | None:
        """Record how a run ended, once: returns the updated record, or None when the run was
        already finished (or unknown). The message id is claimed in the inbox in the same
        transaction, so a duplicate delivery changes nothing."""

    async def add_feedback(self, feedback: NewFeedback, message: Contract) -> None:
        """Insert the feedback and stage its event in the outbox, in one transaction."""


class ScreeningMarks(Protocol):
    """Operators' marks on screened texts: training data for the screening classifier."""

    async def add(self, marks: list[ScreenMark], marked_by: str) -> int: ...

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        """Newest first: text, label, source, note, marked_by, marked_at."""


class OpsStore(Protocol):
    async def request(self, entry: AuditEntry, message: Contract) -> None:
        """Audit a privileged command and stage its message, in one transaction."""


class ModelRegistry(Protocol):
    """The model registry's read model (the exporter writes it)."""

    async def versions(self) -> list[ModelVersion]:
        """Every registered version, newest first."""

    async def version(self, version: str) -> ModelVersion | None: ...

    async def aliases(self) -> dict[str, str]:
        """alias → version, for the aliases that are set."""

    async def canary(self, canary_id: str | None = None) -> Canary | None:
        """A canary by id; without one the running canary, else the last one started."""

    async def running_canary(self) -> Canary | None: ...


class CanaryReports(Protocol):
    """The canary judge's live report (the log-miner's, decision 0020)."""

    async def canary_report(self, canary_id: str) -> dict[str, Any] | None:
        """None when the judge knows no such canary; raises LogMinerUnavailableError."""


class AuditLog(Protocol):
    async def record(self, entry: AuditEntry) -> None: ...

    async def recent(self, limit: int) -> list[AuditEntry]: ...


class ApiKeyStore(Protocol):
    async def get(self, key_id: str) -> ApiKeyRecord | None: ...

    async def touch(self, key_id: str) -> None:
        """Note that the key was just used."""

    async def insert(self, key_id: str, secret_hash: str, role: Role, name: str, audit: AuditEntry) -> None:
        """A new key, with its audit entry, in one transaction."""

    async def revoke(self, key_id: str, audit: AuditEntry) -> bool:
        """False when no active key has this id; the audit entry is written only when one was revoked."""

    async def list(self) -> list[dict]:
        """Every key's id, name, role and times, oldest first (never a secret)."""


class Publisher(Protocol):
    async def publish_now(self, *messages: Contract) -> None:
        """After commit: publish staged messages; failures are left to the outbox relay."""


class RateLimiter(Protocol):
    async def hit(self, limit: str, key: str) -> int | None:
        """Count one hit against the named limit for `key`; None if allowed, otherwise the
        seconds until the caller may try again."""
