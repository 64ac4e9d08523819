"""The one fake of `servicekit.jobstore.JobQueue`, for every service's unit tests.

Same rules as `PostgresJobQueue`: accept claims the message and refuses a key on record; claim
takes the oldest runnable row whose lease is free; every write under a lease checks owner and
status. Leases run on a controllable clock (`lease_expires_at` is a clock reading here, not a
timestamp). `outbox` holds what `settle` staged and `published` what went out after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from contracts import Contract
from servicekit.jobstore import RUNNABLE, Row, Within


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeJobQueue:
    def __init__(self, key: str, clock: Clock | None = None, *, within: Any = None) -> None:
        self.key = key  # the key column's name, as in the real table
        self.clock = clock or Clock()
        self.within_conn = within  # what `settle` hands its `within` (the service fake's "transaction")
        self.rows: dict[str, Row] = {}  # insertion order = created_at order
        self.inbox: set[str] = set()
        self.outbox: list[Contract] = []
        self.published: list[Contract] = []
        self.heartbeats: list[tuple[str, str, dict[str, Any]]] = []

    def _held(self, key: str, owner: str) -> Row | None:
        row = self.rows.get(key)
        return row if row is not None and row["lease_owner"] == owner and row["status"] == "running" else None

    def expire_lease(self, key: str) -> None:
        """The holder died: its lease runs out."""
        self.rows[key]["lease_expires_at"] = self.clock.now - 1

    async def accept(self, request: Contract, key: str, **columns: Any) -> bool:
        env = request.envelope
        if env.message_id in self.inbox:
            return False
        self.inbox.add(env.message_id)
        if key in self.rows:
            return False
        self.rows[key] = {
            self.key: key, "message_id": env.message_id, "correlation_id": env.correlation_id, "status": "queued",
            "request": request.model_dump(mode="json"), "attempts": 0, "lease_owner": None,
            "lease_expires_at": None, "progress": None, "last_error": None, "created_at": datetime.now(UTC),
            "started_at": None, "finished_at": None, **columns,
        }
        return True

    async def claim(self, owner: str, ttl_s: float) -> Row | None:
        for row in self.rows.values():
            free = row["lease_expires_at"] is None or row["lease_expires_at"] < self.clock.now
            if row["status"] in RUNNABLE and free:
                row.update(status="running", lease_owner=owner, lease_expires_at=self.clock.now + ttl_s,
                           started_at=row["started_at"] or datetime.now(UTC))
                return dict(row)
        return None

    async def heartbeat(self, key: str, owner: str, ttl_s: float, **columns: Any) -> bool:
        self.heartbeats.append((key, owner, columns))
        row = self._held(key, owner)
        if row is None:
            return False
        row["lease_expires_at"] = self.clock.now + ttl_s
        row.update({name: value for name, value in columns.items() if value is not None})
        return True

    async def update(self, key: str, owner: str, **columns: Any) -> bool:
        row = self._held(key, owner)
        if row is None:
            return False
        row.update(columns)
        return True

    async def start_attempt(self, key: str, owner: str) -> int | None:
        row = self._held(key, owner)
        if row is None:
            return None
        row["attempts"] += 1
        return row["attempts"]

    async def release(self, key: str, owner: str, *, error: str | None, retry_after_s: float,
                      refund_attempt: bool) -> bool:
        row = self._held(key, owner)
        if row is None:
            return False
        row.update(lease_owner=None, lease_expires_at=self.clock.now + retry_after_s if retry_after_s > 0 else None)
        if error is not None:
            row["last_error"] = error
        if refund_attempt:
            row["attempts"] = max(row["attempts"] - 1, 0)
        return True

    async def settle(self, key: str, owner: str, status: str, events: Sequence[Contract] = (),
                     within: Within | None = None, **columns: Any) -> bool:
        row = self._held(key, owner)
        if row is None:
            return False
        if within is not None:
            await within(self.within_conn)  # raising leaves the row as it was, as a rollback would
        row.update(status=status, lease_owner=None, lease_expires_at=None, finished_at=datetime.now(UTC), **columns)
        for event in events:
            if all(e.envelope.message_id != event.envelope.message_id for e in self.outbox):
                self.outbox.append(event)
        self.published.extend(events)
        return True

    async def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows.values():
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out

    async def latest_finished(self) -> Row | None:
        done = [r for r in self.rows.values() if r["finished_at"] is not None]
        return dict(max(done, key=lambda r: r["finished_at"])) if done else None
