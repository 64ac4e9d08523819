"""Subscribers of the evaluator: each takes its contract and calls one use case (from the broker's
context, set by the composition root)."""

from __future__ import annotations

from typing import Annotated

from faststream import Context
from faststream.rabbit import RabbitBroker

from contracts import EvaluationCompleted, ExportCompleted, ModelPromoted
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE
from .service import AcceptExport

ACCEPT_EXPORT_KEY = "evaluator_accept_export"  # no dots: Context() reads them as attribute access

AcceptExportDep = Annotated[AcceptExport, Context(ACCEPT_EXPORT_KEY)]


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    @broker.subscriber(work_queue(SERVICE, ExportCompleted, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_export_completed(msg: ExportCompleted, accept: AcceptExportDep) -> None:
        """A candidate's quant ladder is in S3: queue its evaluation against production (acked at
        once; the evaluation runs under a lease)."""
        await accept(msg)

    # Declared for the AsyncAPI document only: both go out through the outbox.
    for contract in (EvaluationCompleted, ModelPromoted):
        broker.publisher(exchange=EVENTS, routing_key=contract.routing_key, schema=contract,
                         title=f"{contract.routing_key}:publish", description=(contract.__doc__ or "").strip() or None)
