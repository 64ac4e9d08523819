"""Subscribers of the exporter: each takes its contract and calls one use case (from the broker's
context, set by the composition root)."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from contracts import (
    CanaryEnded,
    CanaryJudged,
    CanaryStartRequested,
    CanaryStopRequested,
    EvaluationCompleted,
    ExportCompleted,
    ExportFailed,
    ModelDeployed,
    ModelPromoted,
    ModelPromoteRequested,
    ModelRollbackRequested,
    TrainingCompleted,
)
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE
from .service import AcceptExport, DeployModels, RunCanaries

# The composition root provides the use cases with `broker.context.set_global(KEY, ...)`. The
# handlers read them with `broker.context.get` rather than through `Context()` parameters:
# FastDepends resolves such parameters in a worker thread, a thread hop per message.
ACCEPT_EXPORT_KEY = "exporter_accept_export"
DEPLOY_KEY = "exporter_deploy_models"
CANARIES_KEY = "exporter_canaries"


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    context = broker.context

    @broker.subscriber(work_queue(SERVICE, TrainingCompleted, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_training_completed(msg: TrainingCompleted) -> None:
        """A trained adapter: queue its export (acked at once; the export runs under a lease)."""
        accept: AcceptExport = context.get(ACCEPT_EXPORT_KEY)
        await accept(msg)

    @broker.subscriber(work_queue(SERVICE, ModelPromoted, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_model_promoted(msg: ModelPromoted) -> None:
        """The gate passed: make the version production (previous ← production) and announce it."""
        deploy: DeployModels = context.get(DEPLOY_KEY)
        await deploy.promoted(msg)

    @broker.subscriber(work_queue(SERVICE, EvaluationCompleted, delivery_limit=delivery_limit), EVENTS,
                       no_reply=True)
    async def on_evaluation_completed(msg: EvaluationCompleted) -> None:
        """The gate's verdict: recorded on the version; a candidate that failed it is marked rejected."""
        deploy: DeployModels = context.get(DEPLOY_KEY)
        await deploy.evaluated(msg)

    @broker.subscriber(work_queue(SERVICE, ModelPromoteRequested, delivery_limit=delivery_limit), EVENTS,
                       no_reply=True)
    async def on_promote_requested(msg: ModelPromoteRequested) -> None:
        """An operator promotes a registered, evaluated version."""
        deploy: DeployModels = context.get(DEPLOY_KEY)
        await deploy.promote_requested(msg)

    @broker.subscriber(work_queue(SERVICE, ModelRollbackRequested, delivery_limit=delivery_limit), EVENTS,
                       no_reply=True)
    async def on_rollback_requested(msg: ModelRollbackRequested) -> None:
        """An operator moves production back to previous."""
        deploy: DeployModels = context.get(DEPLOY_KEY)
        await deploy.rollback_requested(msg)

    @broker.subscriber(work_queue(SERVICE, CanaryStartRequested, delivery_limit=delivery_limit), EVENTS,
                       no_reply=True)
    async def on_canary_start_requested(msg: CanaryStartRequested) -> None:
        """An operator routes a share of live runs to a version: recorded in the registry."""
        canaries: RunCanaries = context.get(CANARIES_KEY)
        await canaries.start_requested(msg)

    @broker.subscriber(work_queue(SERVICE, CanaryStopRequested, delivery_limit=delivery_limit), EVENTS,
                       no_reply=True)
    async def on_canary_stop_requested(msg: CanaryStopRequested) -> None:
        """An operator ends the running canary; production stays."""
        canaries: RunCanaries = context.get(CANARIES_KEY)
        await canaries.stop_requested(msg)

    @broker.subscriber(work_queue(SERVICE, CanaryJudged, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_canary_judged(msg: CanaryJudged) -> None:
        """The judge's verdict: promote the canary's version, or end the canary (rolled back)."""
        canaries: RunCanaries = context.get(CANARIES_KEY)
        await canaries.judged(msg)

    # Declared for the AsyncAPI document only: these go out through the outbox.
    for contract in (ExportCompleted, ExportFailed, ModelDeployed, CanaryEnded):
        broker.publisher(exchange=EVENTS, routing_key=contract.routing_key, schema=contract,
                         title=f"{contract.routing_key}:publish", description=(contract.__doc__ or "").strip() or None)
