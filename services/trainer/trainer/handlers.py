"""Subscribers of the trainer: one per contract; for now each takes the message in exactly once."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from contracts import TrainingRequested
from servicekit.intake import IntakeDep
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    @broker.subscriber(work_queue(SERVICE, TrainingRequested, delivery_limit=delivery_limit), EVENTS)
    async def on_training_requested(msg: TrainingRequested, intake: IntakeDep) -> None:
        """A dataset is ready: train an adapter on it."""
        await intake.accept(msg)
