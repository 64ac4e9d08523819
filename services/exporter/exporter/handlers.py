"""Subscribers of the exporter: one per contract; for now each takes the message in exactly once."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from contracts import ModelPromoted
from servicekit.intake import IntakeDep
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    @broker.subscriber(work_queue(SERVICE, ModelPromoted, delivery_limit=delivery_limit), EVENTS)
    async def on_model_promoted(msg: ModelPromoted, intake: IntakeDep) -> None:
        """A model passed the gate: export it to GGUF and deploy it."""
        await intake.accept(msg)
