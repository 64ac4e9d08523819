"""Subscribers of the log-miner: each takes its contract and calls one use case (from the
broker's context, set by the composition root)."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from contracts import (
    AgentRunFinished,
    CanaryJudged,
    DatasetBuilt,
    FeedbackSubmitted,
    InteractionLogged,
    RetrainRequested,
    TrainingRequested,
    queue_name,
)
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE
from .service import BuildDataset, RecordRuns

# The composition root provides the use cases with `broker.context.set_global(KEY, ...)`. The
# handlers read them with `broker.context.get` rather than through `Context()` parameters:
# FastDepends resolves such parameters in a worker thread, a thread hop per message.
RECORD_RUNS_KEY = "log_miner_record_runs"
BUILD_DATASET_KEY = "log_miner_build_dataset"

# The queue of the event AgentRunFinished replaced (deleted at start-up once drained).
RETIRED_QUEUES = (queue_name(SERVICE, InteractionLogged),)


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    context = broker.context

    @broker.subscriber(work_queue(SERVICE, AgentRunFinished, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_run_finished(msg: AgentRunFinished) -> None:
        """A finished run's whole trajectory: stored and classified into the failure taxonomy."""
        record: RecordRuns = context.get(RECORD_RUNS_KEY)
        await record.interaction(msg)

    @broker.subscriber(work_queue(SERVICE, FeedbackSubmitted, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_feedback_submitted(msg: FeedbackSubmitted) -> None:
        """A user's rating or correction of a run: stored; the run is classified again."""
        record: RecordRuns = context.get(RECORD_RUNS_KEY)
        await record.feedback(msg)

    @broker.subscriber(work_queue(SERVICE, RetrainRequested, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_retrain_requested(msg: RetrainRequested) -> None:
        """An operator asks for a new dataset and a training run."""
        build: BuildDataset = context.get(BUILD_DATASET_KEY)
        await build.retrain(msg)

    # Declared for the AsyncAPI document only: the messages go out through the outbox.
    for contract in (DatasetBuilt, TrainingRequested, CanaryJudged):
        broker.publisher(exchange=EVENTS, routing_key=contract.routing_key, schema=contract,
                         title=f"{contract.routing_key}:publish", description=(contract.__doc__ or "").strip() or None)
