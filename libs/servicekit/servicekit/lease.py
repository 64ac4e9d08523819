"""Keeps a Postgres job lease alive while long work runs, and says when it is gone.

For services that claim a job row under a lease, ack the message, and work for longer than a
broker delivery may stay unacked (architecture §3): the trainer's pattern, shared.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

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
