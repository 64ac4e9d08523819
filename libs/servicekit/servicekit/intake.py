"""Exactly-once intake of a message: claim its id in the service's inbox, count and log it.

The first step of every consumer. A consumer that has a side effect claims the id in the
same transaction as that effect (`Inbox.claim`); `Intake.accept` is the whole job for a
consumer whose only effect is to record that the message arrived.
"""

from __future__ import annotations

import logging
from typing import Annotated

from faststream import Context
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import Contract

from .db import Inbox
from .logs import log_fields

logger = logging.getLogger("servicekit.intake")


class Intake:
    def __init__(self, engine: AsyncEngine, inbox: Inbox, received: Counter) -> None:
        self.engine = engine
        self.inbox = inbox
        self.received = received  # labelled by message type; counts first deliveries only

    async def accept(self, msg: Contract) -> bool:
        """True the first time this message id arrives; False (and no effect) for a redelivery."""
        env = msg.envelope
        async with self.engine.begin() as conn:
            first = await self.inbox.claim(conn, env.message_id, env.message_type)
        fields = log_fields(message_id=env.message_id, message_type=env.message_type)
        if not first:
            logger.info("duplicate delivery ignored", extra=fields)
            return False
        self.received.labels(type=env.message_type).inc()
        logger.info("received %s", env.message_type, extra=fields)
        return True


INTAKE_KEY = "intake"

# Handler parameter: `async def on_x(msg: X, intake: IntakeDep)`; the bootstrap provides it with
# `broker.context.set_global(INTAKE_KEY, Intake(...))` (per broker, so tests can run several).
IntakeDep = Annotated[Intake, Context(INTAKE_KEY)]
