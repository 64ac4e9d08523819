"""TrainingProgress straight to the events exchange (not through the outbox: a lost progress
event is harmless, and one row per second per job would only load Postgres). Publisher confirms
are on (servicekit's broker channel), so a publish returns once the broker has it."""

from __future__ import annotations

import logging

from faststream.rabbit import RabbitBroker

from contracts import TrainingProgress
from servicekit.messaging import publish_event

logger = logging.getLogger("trainer.progress")


class RabbitProgressPublisher:
    def __init__(self, broker: RabbitBroker) -> None:
        self.broker = broker

    async def publish(self, event: TrainingProgress) -> None:
        try:
            await publish_event(self.broker, event)
        except Exception:  # the next progress event supersedes this one; training must not stop for it
            logger.warning("TrainingProgress for job %s step %d not published", event.job_id, event.step,
                           exc_info=True)
