"""Subscribers of the evaluator: each takes its contract and calls one use case (from the broker's
context, set by the composition root)."""

from __future__ import annotations

from faststream.rabbit import RabbitBroker

from contracts import EvaluationCompleted, ExportCompleted, ModelPromoted
from servicekit.messaging import EVENTS, work_queue

from . import SERVICE
from .service import AcceptExport

# The composition root provides the use cases with `broker.context.set_global(KEY, ...)`. The
# handlers read them with `broker.context.get` rather than through `Context()` parameters:
# FastDepends resolves such parameters in a worker thread, a thread hop per message.
ACCEPT_EXPORT_KEY = "evaluator_accept_export"


def register(broker: RabbitBroker, *, delivery_limit: int) -> None:
    context = broker.context

    @broker.subscriber(work_queue(SERVICE, ExportCompleted, delivery_limit=delivery_limit), EVENTS, no_reply=True)
    async def on_export_completed(msg: ExportCompleted) -> None:
        """A candidate's quant ladder is in S3: queue its evaluation against production (acked at
        once; the evaluation runs under a lease)."""
        accept: AcceptExport = context.get(ACCEPT_EXPORT_KEY)
        await accept(msg)

    # Declared for the AsyncAPI document only: both go out through the outbox.
    for contract in (EvaluationCompleted, ModelPromoted):
        broker.publisher(exchange=EVENTS, routing_key=contract.routing_key, schema=contract,
                         title=f"{contract.routing_key}:publish", description=(contract.__doc__ or "").strip() or None)
