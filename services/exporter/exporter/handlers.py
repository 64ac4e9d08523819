"""Subscribers of the exporter: each takes its contract and calls one use case (from the broker's
context, set by the composition root)."""

from __future__ import annotations

from typing import Annotated

from faststream import Context
from faststream.rabbit import RabbitBroker

from contracts import (
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
from .service import AcceptExport, DeployModels

ACCEPT_EXPORT_KEY = "exporter_accept_export"  # no dots: Context() reads them as attribute access
DEPLOY_KEY = "exporter_deploy_models"

AcceptExportDep = Annotated[AcceptExport, Context(ACCEPT_EXPORT_KEY)]
DeployDep = Annotated[DeployModels, Context(DEPLOY_KEY)]


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    @broker.subscriber(work_queue(SERVICE, TrainingCompleted, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_training_completed(msg: TrainingCompleted, accept: AcceptExportDep) -> None:
        """A trained adapter: queue its export (acked at once; the export runs under a lease)."""
        await accept(msg)

    @broker.subscriber(work_queue(SERVICE, ModelPromoted, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_model_promoted(msg: ModelPromoted, deploy: DeployDep) -> None:
        """The gate passed: make the version production (previous ← production) and announce it."""
        await deploy.promoted(msg)

    @broker.subscriber(work_queue(SERVICE, EvaluationCompleted, delivery_limit=delivery_limit), EVENTS,
                       no_reply=True)
    async def on_evaluation_completed(msg: EvaluationCompleted, deploy: DeployDep) -> None:
        """The gate's verdict: recorded on the version; a candidate that failed it is marked rejected."""
        await deploy.evaluated(msg)

    @broker.subscriber(work_queue(SERVICE, ModelPromoteRequested, delivery_limit=delivery_limit), EVENTS,
                       no_reply=True)
    async def on_promote_requested(msg: ModelPromoteRequested, deploy: DeployDep) -> None:
        """An operator promotes a registered, evaluated version."""
        await deploy.promote_requested(msg)

    @broker.subscriber(work_queue(SERVICE, ModelRollbackRequested, delivery_limit=delivery_limit), EVENTS,
                       no_reply=True)
    async def on_rollback_requested(msg: ModelRollbackRequested, deploy: DeployDep) -> None:
        """An operator moves production back to previous."""
        await deploy.rollback_requested(msg)

    # Declared for the AsyncAPI document only: these go out through the outbox.
    for contract in (ExportCompleted, ExportFailed, ModelDeployed):
        broker.publisher(exchange=EVENTS, routing_key=contract.routing_key, schema=contract,
                         title=f"{contract.routing_key}:publish", description=(contract.__doc__ or "").strip() or None)
