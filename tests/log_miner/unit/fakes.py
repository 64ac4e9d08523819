"""In-memory fakes of the log-miner's own ports (MinerStore, DatasetFiles, CorpusReader)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts import Contract, utcnow
from log_miner.domain.corpus import CorpusUnavailableError
from log_miner.domain.policy import PolicyStats
from log_miner.domain.records import Feedback, RunWithFeedback
from log_miner.domain.taxonomy import SUCCESS, Classification
from log_miner.ports import DatasetRow, NewInteraction, StoredRun


@dataclass
class State:
    inbox: set[str] = field(default_factory=set)
    runs: dict[str, StoredRun] = field(default_factory=dict)
    received: dict[str, datetime] = field(default_factory=dict)
    classified: dict[str, datetime] = field(default_factory=dict)
    feedback: dict[str, Feedback] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    datasets: dict[str, tuple[DatasetRow, datetime]] = field(default_factory=dict)
    outbox: list[Contract] = field(default_factory=list)


class FakeTx:
    def __init__(self, state: State, clock) -> None:
        self.s = state
        self.clock = clock

    async def claim(self, message_id: str, message_type: str) -> bool:
        if message_id in self.s.inbox:
            return False
        self.s.inbox.add(message_id)
        return True

    async def lock_run(self, run_id: str) -> None:
        return None

    async def feedback_for(self, run_id: str) -> list[Feedback]:
        return [f for f in self.s.feedback.values() if f.run_id == run_id]

    async def stored_run(self, run_id: str) -> StoredRun | None:
        return self.s.runs.get(run_id)

    async def update_classification(self, run_id: str, classification: Classification,
                                    example_kind: str | None) -> None:
        run = self.s.runs[run_id].run
        self.s.runs[run_id] = StoredRun(run, classification.label.value,
                                        tuple(x.value for x in classification.labels), example_kind)
        self.s.classified[run_id] = self.clock()

    async def insert_feedback(self, message_id: str, feedback: Feedback) -> bool:
        if feedback.feedback_id in self.s.feedback:
            return False
        self.s.feedback[feedback.feedback_id] = feedback
        return True

    async def move_count(self, model_version: str, old: str | None, new: str) -> None:
        if old is not None:
            self.s.counts[(model_version, old)] -= 1
        self.s.counts[(model_version, new)] = self.s.counts.get((model_version, new), 0) + 1

    async def insert_dataset(self, row: DatasetRow) -> None:
        assert row.dataset_id not in self.s.datasets
        self.s.datasets[row.dataset_id] = (row, self.clock())

    async def stage(self, *messages: Contract) -> None:
        self.s.outbox.extend(messages)


class FakeBatch:
    """`InteractionBatch` over the same state as FakeTx. A run id in `poison` makes the insert
    fail, as Postgres fails a statement on a value it rejects."""

    def __init__(self, state: State, clock, poison: set[str], calls: list[str]) -> None:
        self.s = state
        self.clock = clock
        self.poison = poison
        self.calls = calls

    async def claim(self, messages: Sequence[tuple[str, str, str]]) -> set[str]:
        self.calls.append("claim")
        fresh = {m for m, _, _ in messages} - self.s.inbox
        self.s.inbox |= fresh
        return fresh

    async def feedback_for(self, run_ids: Sequence[str]) -> dict[str, list[Feedback]]:
        self.calls.append("feedback_for")
        found: dict[str, list[Feedback]] = {}
        for f in self.s.feedback.values():
            if f.run_id in run_ids:
                found.setdefault(f.run_id, []).append(f)
        return found

    async def insert_interactions(self, rows: Sequence[NewInteraction]) -> tuple[set[str], set[str]]:
        self.calls.append("insert_interactions")
        inserted, stale = set(), set()
        for row in rows:
            if row.run.run_id in self.poison:
                raise ValueError(f"unsupported value in run {row.run.run_id}")
            if len([f for f in self.s.feedback.values() if f.run_id == row.run.run_id]) != row.feedback:
                stale.add(row.message_id)
                continue
            if row.run.run_id in self.s.runs:
                continue
            self.s.runs[row.run.run_id] = StoredRun(row.run, row.label, row.labels, row.example_kind)
            self.s.received[row.run.run_id] = self.s.classified[row.run.run_id] = self.clock()
            key = (row.run.model_version, row.label)
            self.s.counts[key] = self.s.counts.get(key, 0) + 1
            inserted.add(row.message_id)
        return inserted, stale


class FakeStore:
    """Transactions apply on success and roll back on an exception, like Postgres. Implements
    `MinerStore` and `InteractionLog` over one state."""

    def __init__(self, clock=utcnow) -> None:
        self.state = State()
        self.clock = clock
        self.published: list[Contract] = []
        self.version = 0
        self.locked = False
        self.poison: set[str] = set()
        self.batch_calls: list[list[str]] = []  # statements of each batch transaction, committed or not

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTx]:
        work = copy.deepcopy(self.state)
        yield FakeTx(work, self.clock)
        self.state = work

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[FakeBatch]:
        work = copy.deepcopy(self.state)
        calls: list[str] = []
        self.batch_calls.append(calls)
        yield FakeBatch(work, self.clock, self.poison, calls)
        self.state = work

    async def seen(self, message_id: str) -> bool:
        return message_id in self.state.inbox

    async def mined_runs(self, since: datetime | None, batch: int) -> AsyncIterator[list[RunWithFeedback]]:
        items = [
            RunWithFeedback(s.run, [f for f in self.state.feedback.values() if f.run_id == s.run.run_id])
            for s in self.state.runs.values()
            if (s.example_kind is not None or s.label in SUCCESS)
            and (since is None or s.run.logged_at >= since)
        ]
        for i in range(0, len(items), batch):
            yield items[i:i + batch]

    async def policy_stats(self, window_s: float) -> PolicyStats:
        s = self.state
        last_any = max((at for _, at in s.datasets.values()), default=None)
        last_policy = max((at for row, at in s.datasets.values() if row.trigger.startswith("policy:")), default=None)
        with_examples = [r for r in s.runs if s.runs[r].example_kind is not None]
        now = self.clock()
        window = [r for r in s.runs if (now - s.received[r]).total_seconds() <= window_s]
        return PolicyStats(
            new_examples=len([r for r in with_examples if last_any is None or s.classified[r] > last_any]),
            available_examples=len(with_examples), window_runs=len(window),
            window_failures=len([r for r in window if s.runs[r].label not in SUCCESS]),
            last_policy_dataset_at=last_policy,
        )

    async def next_version(self) -> int:
        self.version += 1
        return self.version

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        if self.locked:
            yield False
            return
        self.locked = True
        try:
            yield True
        finally:
            self.locked = False

    async def publish(self, *messages: Contract) -> None:
        self.published.extend(messages)


class FakeFiles:
    def __init__(self, fail_on: str | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail_on = fail_on

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        if self.fail_on and key.endswith(self.fail_on):
            raise ConnectionError("S3 is down")
        self.objects[key] = data
        return f"s3://fake/{key}"


class FakeReader:
    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = files or {}

    async def read(self, location: str) -> bytes:
        if location not in self.files:
            raise CorpusUnavailableError(f"no such file {location}")
        return self.files[location]


def line(obj: Any) -> bytes:
    import json

    return (json.dumps(obj) + "\n").encode()
