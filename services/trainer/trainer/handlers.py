"""Subscribers of the trainer: each takes its contract and calls one use case (from the broker's
context, set by the composition root)."""

from __future__ import annotations

from typing import Annotated

from faststream import Context
from faststream.rabbit import RabbitBroker

from contracts import TrainingCompleted, TrainingFailed, TrainingProgress, TrainingRequested
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE
from .service import AcceptTraining

ACCEPT_TRAINING_KEY = "trainer_accept_training"  # no dots: Context() reads them as attribute access

AcceptTrainingDep = Annotated[AcceptTraining, Context(ACCEPT_TRAINING_KEY)]


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    @broker.subscriber(work_queue(SERVICE, TrainingRequested, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_training_requested(msg: TrainingRequested, accept: AcceptTrainingDep) -> None:
        """A dataset is ready: queue a training job (acked at once; the job runs under a lease)."""
        await accept(msg)

    # Declared for the AsyncAPI document only: progress goes out directly, results through the outbox.
    for contract in (TrainingProgress, TrainingCompleted, TrainingFailed):
        broker.publisher(exchange=EVENTS, routing_key=contract.routing_key, schema=contract,
                         title=f"{contract.routing_key}:publish", description=(contract.__doc__ or "").strip() or None)
