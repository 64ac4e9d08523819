"""The log-miner's ports. Adapters implement them; use cases and unit tests see only these."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from contracts import Contract
from contracts.learning import LabelQueue
from modelregistry import Canary

from .domain.canary import Arm
from .domain.corpus import ImportedItem
from .domain.policy import PolicyStats
from .domain.records import Feedback, Run, RunWithFeedback
from .domain.taxonomy import Classification


@dataclass(frozen=True)
class StoredRun:
    run: Run
    label: str
    labels: tuple[str, ...]
    example_kind: str | None


@dataclass(frozen=True)
class DatasetRow:
    dataset_id: str
    version: int
    train_uri: str
    val_uri: str
    manifest_uri: str
    train_sha256: str
    val_sha256: str
    counts: dict[str, int]
    sources: list[dict[str, Any]]
    source_run_ids: list[str]
    feedback_ids: list[str]
    trigger: str
    request_id: str | None
    requested_by: str
    job_id: str
    extra: dict[str, Any] = field(default_factory=dict)


class MinerTx(Protocol):
    """One Postgres transaction: everything in it commits together or not at all."""

    async def claim(self, message_id: str, message_type: str) -> bool:
        """Inbox: True the first time a message id is seen."""
        ...

    async def lock_run(self, run_id: str) -> None:
        """Serialise work on one run (an interaction and its feedback may arrive together)."""
        ...

    async def feedback_for(self, run_id: str) -> list[Feedback]: ...

    async def stored_run(self, run_id: str) -> StoredRun | None: ...

    async def update_classification(self, run_id: str, classification: Classification,
                                    example_kind: str | None) -> None: ...

    async def insert_feedback(self, message_id: str, feedback: Feedback) -> bool: ...

    async def move_count(self, model_version: str, old: str | None, new: str) -> None:
        """taxonomy_counts: one run leaves `old` (if any) and joins `new`."""
        ...

    async def insert_dataset(self, row: DatasetRow) -> None: ...

    async def stage(self, *messages: Contract) -> None:
        """Outbox rows, published after commit."""
        ...


@dataclass(frozen=True)
class NewInteraction:
    """A classified run as the InteractionLogged hot path writes it."""

    message_id: str
    run: Run
    label: str
    labels: tuple[str, ...]
    example_kind: str | None
    feedback: int  # how many feedback rows on the run the classification took into account


class InteractionBatch(Protocol):
    """One Postgres transaction over a batch of InteractionLogged messages, with set-based
    statements (the hot path; `MinerTx` keeps the one-message-at-a-time paths)."""

    async def claim(self, messages: Sequence[tuple[str, str, str]]) -> set[str]:
        """Inbox: of the (message id, message type, run id) triples, the ids seen for the first
        time. From here on the transaction holds the locks of `MinerTx.lock_run` on those runs
        (taken in one order every batch shares)."""
        ...

    async def feedback_for(self, run_ids: Sequence[str]) -> dict[str, list[Feedback]]:
        """Feedback on record per run id, oldest first (runs without feedback are left out)."""
        ...

    async def insert_interactions(self, rows: Sequence[NewInteraction]) -> tuple[set[str], set[str]]:
        """(inserted, stale) message ids. A row is written only when its run has exactly
        `row.feedback` feedback rows on record, else its id is stale and nothing is written for
        it; a run on record already is skipped (in neither set). Each inserted run counts once
        in taxonomy_counts under (model_version, label)."""
        ...


class InteractionLog(Protocol):
    def batch(self) -> AbstractAsyncContextManager[InteractionBatch]: ...


class MinerStore(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[MinerTx]: ...

    async def seen(self, message_id: str) -> bool: ...

    def mined_runs(self, since: datetime | None, batch: int) -> AsyncIterator[list[RunWithFeedback]]:
        """Runs that yield an example (example_kind set), oldest first, with their feedback."""
        ...

    async def policy_stats(self, window_s: float) -> PolicyStats: ...

    async def label_queue(self, limit: int, model_version: str | None = None) -> LabelQueue:
        """The head of the label queue (`domain.labeling`) and how many runs wait in all."""
        ...

    async def dataset_files(self, version: int) -> dict[str, str] | None:
        """The URIs of a dataset version's splits (`train`, `val`); None for a version never built."""
        ...

    async def next_version(self) -> int: ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """A lock across replicas, tried not waited for: yields False when someone holds it."""
        ...

    async def publish(self, *messages: Contract) -> None:
        """After commit: publish staged outbox messages now (a relay retries failures)."""
        ...

    async def running_canary(self) -> Canary | None:
        """The registry's running canary (decision 0020)."""
        ...

    async def canary(self, canary_id: str | None = None) -> Canary | None:
        """A canary by id; without one the running canary, else the last one."""
        ...

    async def canary_arms(self, versions: Sequence[str], since: datetime) -> dict[str, Arm]:
        """Live outcomes per version recorded since `since`, one Arm per asked version."""
        ...


class DatasetFiles(Protocol):
    """Where dataset files go (S3)."""

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store the bytes under `key`; returns the URI."""
        ...


class CorpusReader(Protocol):
    async def read(self, location: str) -> bytes:
        """The file at an absolute path or s3://bucket/key; CorpusUnavailableError if it cannot be read."""
        ...


class CorpusImporter(Protocol):
    """One corpus format (one module under importers/)."""

    format: str

    def accepts(self, record: dict[str, Any]) -> bool:
        """Whether a record looks like this format (auto-detection)."""
        ...

    def convert(self, record: dict[str, Any]) -> ImportedItem:
        """Raise MalformedRecordError for a record that is not a conversation of this format."""
        ...
