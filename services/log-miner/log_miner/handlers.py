"""Subscribers of the log-miner: one per contract; for now each takes the message in exactly once."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from contracts import FeedbackSubmitted, InteractionLogged, RetrainRequested
from servicekit.intake import IntakeDep
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    @broker.subscriber(work_queue(SERVICE, InteractionLogged, delivery_limit=delivery_limit), EVENTS)
    async def on_interaction_logged(msg: InteractionLogged, intake: IntakeDep) -> None:
        """A finished run's whole trajectory: the raw material of the loop."""
        await intake.accept(msg)

    @broker.subscriber(work_queue(SERVICE, FeedbackSubmitted, delivery_limit=delivery_limit), EVENTS)
    async def on_feedback_submitted(msg: FeedbackSubmitted, intake: IntakeDep) -> None:
        """A user's rating or correction of a run."""
        await intake.accept(msg)

    @broker.subscriber(work_queue(SERVICE, RetrainRequested, delivery_limit=delivery_limit), EVENTS)
    async def on_retrain_requested(msg: RetrainRequested, intake: IntakeDep) -> None:
        """An operator asks for a new dataset and a training run."""
        await intake.accept(msg)
