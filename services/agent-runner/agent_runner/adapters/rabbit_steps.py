"""StepSink on RabbitMQ: live steps and the final result to the requester's reply queue.

Non-persistent and best effort: a reply queue that is gone (its gateway stopped; publishes are
`mandatory`, so the broker returns them) does not stop the run — the database is the record.
"""

from __future__ import annotations

import logging

from aio_pika.exceptions import DeliveryError  # a returned (unroutable) mandatory publish
from faststream.rabbit import RabbitBroker

from contracts import AgentRunStep, Contract
from servicekit.messaging import publish_to_queue

logger = logging.getLogger("agent_runner.steps")



class ReplyQueueSink:
    def __init__(self, broker: RabbitBroker, queue: str) -> None:
        self.broker = broker
        self.queue = queue
        self.gone = False

    async def step(self, step: AgentRunStep) -> None:
        await self._send(step)

    async def final(self, message: Contract) -> None:
        await self._send(message)

    async def _send(self, message: Contract) -> None:
        if self.gone:
            return
        try:
            await publish_to_queue(self.broker, message, self.queue)
        except DeliveryError:
            # Stop trying for the rest of the run: one returned publish means nobody listens.
            self.gone = True
            logger.debug("reply queue %s is gone; run continues without streaming", self.queue)


class NoSink:
    """A run nobody streams (no reply_to): the outcome still goes to the events exchange."""

    async def step(self, step: AgentRunStep) -> None:
        return None

    async def final(self, message: Contract) -> None:
        return None


def reply_sinks(broker: RabbitBroker):
    def sink_for(reply_to: str | None) -> ReplyQueueSink | NoSink:
        return ReplyQueueSink(broker, reply_to) if reply_to else NoSink()

    return sink_for
