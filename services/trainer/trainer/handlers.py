"""Subscribers of the trainer: each takes its contract and calls one use case (from the broker's
context, set by the composition root)."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from contracts import TrainingCompleted, TrainingFailed, TrainingProgress, TrainingRequested
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE
from .service import AcceptTraining

# The composition root provides the use cases with `broker.context.set_global(KEY, ...)`. The
# handlers read them with `broker.context.get` rather than through `Context()` parameters:
# FastDepends resolves such parameters in a worker thread, a thread hop per message.
ACCEPT_TRAINING_KEY = "trainer_accept_training"


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    context = broker.context

    @broker.subscriber(work_queue(SERVICE, TrainingRequested, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_training_requested(msg: TrainingRequested) -> None:
        """A dataset is ready: queue a training job (acked at once; the job runs under a lease)."""
        accept: AcceptTraining = context.get(ACCEPT_TRAINING_KEY)
        await accept(msg)

    # Declared for the AsyncAPI document only: progress goes out directly, results through the outbox.
    for contract in (TrainingProgress, TrainingCompleted, TrainingFailed):
        broker.publisher(exchange=EVENTS, routing_key=contract.routing_key, schema=contract,
                         title=f"{contract.routing_key}:publish", description=(contract.__doc__ or "").strip() or None)
