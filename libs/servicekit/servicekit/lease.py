"""Keeps a Postgres job lease alive while long work runs, and says when it is gone.

For services that claim a job row under a lease, ack the message, and work for longer than a
broker delivery may stay unacked (architecture §3): the trainer's, exporter's and evaluator's
pattern, shared. `LeaseKeeper` heartbeats; `run_under_lease` races one attempt at the job against
the loss of its lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

logger = logging.getLogger("servicekit.lease")

Heartbeat = Callable[[], Awaitable[bool]]  # extend the lease; False when another owner has it


class LeaseKeeper:
    """Heartbeats every `interval_s`. The lease counts as lost when the heartbeat answers False
    (another owner has it), or when no heartbeat got through for a whole TTL (someone may have
    taken it over). `active()` False means the job's outcome is written: stop quietly."""

    def __init__(self, heartbeat: Heartbeat, *, what: str, ttl_s: float, interval_s: float,
                 active: Callable[[], bool] = lambda: True, clock: Callable[[], float] = time.monotonic) -> None:
        self.heartbeat = heartbeat
        self.what = what
        self.ttl_s = ttl_s
        self.interval_s = interval_s
        self.active = active
        self.clock = clock
        self.lost = asyncio.Event()

    async def run(self) -> None:
        last_ok = self.clock()
        while True:
            await asyncio.sleep(self.interval_s)
            if not self.active():
                return
            try:
                held = await self.heartbeat()
            except Exception:  # a database hiccup: keep trying until the lease would have expired
                logger.warning("heartbeat of %s failed", self.what, exc_info=True)
                if self.clock() - last_ok < self.ttl_s:
                    continue
                held = False
            if not held and not self.active():
                return  # the job was settled while the heartbeat was on its way
            if not held:
                logger.warning("lease on %s lost", self.what)
                self.lost.set()
                return
            last_ok = self.clock()


class AttemptState(Protocol):
    settled: bool  # the job's outcome (or its release) is written
    lease_lost: bool  # set here when the lease is lost: the attempt must not touch the job any more


async def run_under_lease(attempt: Coroutine[Any, Any, str], keeper: LeaseKeeper, state: AttemptState, *,
                          job_id: str, kind: str, stop: Callable[[], None] = lambda: None) -> str:
    """Runs `attempt` (task `<kind>-<job_id>`) while `keeper` heartbeats (task `lease-<job_id>`), and
    returns the attempt's outcome. Should the lease be lost before the attempt ends, and the job is
    not settled yet, `state.lease_lost` is set, `stop()` called, the attempt cancelled and the outcome
    is "lost_lease". Cancelled itself (the service stops): `stop()`, the attempt is cancelled and
    waited for, and CancelledError goes on. `stop` tells work that cancelling cannot reach (a thread)
    to end. The heartbeat ends with the attempt."""
    heartbeat = asyncio.create_task(keeper.run(), name=f"lease-{job_id}")
    lost = asyncio.create_task(keeper.lost.wait())
    task = asyncio.create_task(attempt, name=f"{kind}-{job_id}")
    try:
        done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        if task in done or state.settled:
            return await task
        state.lease_lost = True
        stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return "lost_lease"
    except asyncio.CancelledError:
        stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    finally:
        for t in (heartbeat, lost):
            t.cancel()
        await asyncio.gather(heartbeat, lost, return_exceptions=True)
