"""The job loop of a service instance: claim a runnable job under a lease, run it, repeat.

For services whose jobs live in Postgres, not in the broker (architecture §3): the request was acked
when its job was queued, and any instance can claim a queued job or one whose lease expired (its
instance died). One job at a time per instance; running it (heartbeats, the attempt, settling the
job) is the service's own `run_job`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from contracts import Contract

from .logs import log_fields

class ClaimedJob(Protocol):
    @property
    def summary(self) -> str:
        """The job in the scheduler's "claimed ..." log line."""
        ...


J = TypeVar("J", bound=ClaimedJob)
J_co = TypeVar("J_co", covariant=True)


class JobQueue(Protocol[J_co]):
    async def claim(self, owner: str, ttl_s: float) -> J_co | None:
        """A queued job, or one whose lease expired, now leased to `owner` for `ttl_s`; None if none."""
        ...

    async def counts(self) -> dict[str, int]:
        """Jobs by status."""
        ...


class JobScheduler(Generic[J]):
    """Runs `run_job` on each job claimed from `store`, one at a time, until cancelled.

    One job at a time per instance (a training, an export or an evaluation uses every core it is
    given). `what` names the jobs in log lines ("training job", "evaluation"); `on_counts` takes the
    jobs-by-status counts for the gauges."""

    def __init__(self, store: JobQueue[J], run_job: Callable[[J], Awaitable[str]],
                 on_counts: Callable[[dict[str, int]], None], *, owner: str, lease_ttl_s: float,
                 poll_interval_s: float, retry_delay_s: float, what: str, logger: logging.Logger) -> None:
        self.store = store
        self.run_job = run_job
        self.on_counts = on_counts
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self.poll_interval_s = poll_interval_s
        self.retry_delay_s = retry_delay_s
        self.what = what
        self.logger = logger
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    async def run_once(self) -> str | None:
        """Claim one runnable job and run it; its outcome, or None when there is none."""
        job = await self.store.claim(self.owner, self.lease_ttl_s)
        if job is None:
            return None
        self.logger.info("claimed %s", job.summary)
        return await self.run_job(job)

    async def run(self) -> None:
        """Background task of the service: runs until cancelled."""
        while True:
            self._wake.clear()
            try:
                outcome = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # Postgres or S3 away: the lease (if any) expires and the job is retried
                self.logger.warning("%s loop failed; retrying in %.0fs", self.what, self.retry_delay_s, exc_info=True)
                await asyncio.sleep(self.retry_delay_s)
                continue
            if outcome is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
                except TimeoutError:
                    pass

    async def refresh_counts(self) -> None:
        self.on_counts(await self.store.counts())

    async def run_gauges(self) -> None:
        """Background task: jobs-by-status gauges, every poll interval (a running job does not block it)."""
        while True:
            try:
                await self.refresh_counts()
            except asyncio.CancelledError:
                raise
            except Exception:  # the gauges stay stale until Postgres answers again
                self.logger.debug("%s counts not refreshed", self.what, exc_info=True)
            await asyncio.sleep(max(self.poll_interval_s, 1.0))


class JobIntake:
    """Takes a request in as a queued job, so that its delivery can be acked at once (the job runs far
    longer than a delivery may stay unacked): `accepted` is the store's accept (inbox claim and job
    row, one transaction). A duplicate (same message, or same job) is logged and ignored; a first
    delivery is counted in `received` (a Counter labelled by message type), logged, and wakes the
    scheduler (`on_queued`)."""

    def __init__(self, received: Any, on_queued: Callable[[], None], logger: logging.Logger) -> None:
        self.received = received
        self.on_queued = on_queued
        self.logger = logger

    async def take(self, msg: Contract, accepted: Awaitable[bool], queued: str, **fields: Any) -> bool:
        """True when a job was queued (`queued` is the log line); False for a duplicate."""
        env = msg.envelope
        extra = log_fields(message_id=env.message_id, message_type=env.message_type, **fields)
        if not await accepted:
            self.logger.info("duplicate delivery ignored", extra=extra)
            return False
        self.received.labels(type=env.message_type).inc()
        self.logger.info(queued, extra=extra)
        self.on_queued()
        return True
