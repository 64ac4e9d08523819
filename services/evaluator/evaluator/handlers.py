"""Subscribers of the evaluator: one per contract; for now each takes the message in exactly once."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from contracts import TrainingCompleted
from servicekit.intake import IntakeDep
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    @broker.subscriber(work_queue(SERVICE, TrainingCompleted, delivery_limit=delivery_limit), EVENTS)
    async def on_training_completed(msg: TrainingCompleted, intake: IntakeDep) -> None:
        """A trained adapter to evaluate against production."""
        await intake.accept(msg)
