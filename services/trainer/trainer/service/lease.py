"""Keeps a job's lease alive while it runs; tells the runner when the lease is gone."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..ports import JobStore

logger = logging.getLogger("trainer.lease")


class LeaseKeeper:
    """Heartbeats every `interval_s`. The lease counts as lost when the store says another owner
    has it, or when no heartbeat got through for a whole TTL (someone may have taken it over)."""

    def __init__(self, store: JobStore, job_id: str, owner: str, *, ttl_s: float, interval_s: float,
                 snapshot: Callable[[], dict[str, Any] | None], active: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.job_id = job_id
        self.owner = owner
        self.ttl_s = ttl_s
        self.interval_s = interval_s
        self.snapshot = snapshot
        self.active = active  # False once the job's outcome is written: the lease is given up then
        self.clock = clock
        self.lost = asyncio.Event()

    async def run(self) -> None:
        last_ok = self.clock()
        while True:
            await asyncio.sleep(self.interval_s)
            if not self.active():
                return
            try:
                held = await self.store.heartbeat(self.job_id, self.owner, self.ttl_s, self.snapshot())
            except Exception:  # a database hiccup: keep trying until the lease would have expired
                logger.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
                if self.clock() - last_ok < self.ttl_s:
                    continue
                held = False
            if not held and not self.active():
                return  # the job was settled while the heartbeat was on its way
            if not held:
                logger.warning("lease on job %s lost", self.job_id)
                self.lost.set()
                return
            last_ok = self.clock()
