"""RabbitMQ topology and publishing rules, applied the same way by every service.

- one durable topic exchange for events, routing key = contract.routing_key
- quorum work queues with an explicit x-delivery-limit and a dead-letter exchange
- publisher confirms on, `mandatory` with returns raising, persistent messages, explicit prefetch
- a permanent failure (bad body, PermanentError) is rejected straight to the dead-letter
  queue with its cause logged; any other failure is retried within the delivery limit
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
from aio_pika import ExchangeType as AioExchangeType
from faststream import BaseMiddleware
from faststream.exceptions import NackMessage, RejectMessage
from faststream.rabbit import Channel, ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from pydantic import ValidationError

from contracts import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    Contract,
    dead_letter_queue_name,
    queue_name,
)

from .logs import correlation_id, log_fields
from .text import unstorable_json

logger = logging.getLogger("servicekit.messaging")


class PermanentError(Exception):
    """Raised by a consumer when retrying the message can never succeed."""


EVENTS = RabbitExchange(EVENTS_EXCHANGE, type=ExchangeType.TOPIC, durable=True)


def make_broker(url: str, *, prefetch: int, app_id: str, middlewares: tuple = ()) -> RabbitBroker:
    channel = Channel(prefetch_count=prefetch, publisher_confirms=True, on_return_raises=True)
    return RabbitBroker(
        url,
        default_channel=channel,
        app_id=app_id,
        graceful_timeout=30.0,
        middlewares=(FailurePolicy, *middlewares),
        log_level=logging.DEBUG,
    )


def work_queue(consumer: str, contract: type[Contract], *, delivery_limit: int) -> RabbitQueue:
    name = queue_name(consumer, contract)
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        durable=True,
        routing_key=contract.routing_key,
        arguments={
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": name,
            "x-delivery-limit": delivery_limit,
        },
    )


async def declare_dead_letter_queues(broker: RabbitBroker, queues: list[str]) -> None:
    """Declare the dead-letter exchange and one durable DLQ per work queue."""
    channel = await broker._connection.channel()  # noqa: SLF001 - one-off declarations
    try:
        dlx = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, AioExchangeType.DIRECT, durable=True)
        for name in queues:
            dlq = await channel.declare_queue(
                dead_letter_queue_name(name), durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dlq.bind(dlx, routing_key=name)
    finally:
        await channel.close()


async def delete_retired_queues(broker: RabbitBroker, names: list[str], *, keep_unread: bool = False) -> list[str]:
    """Delete queues an earlier version of a service declared and this one no longer consumes
    (an upgrade step run at start-up). A queue still in use (an old replica during a rolling
    upgrade), and with `keep_unread` one still holding messages (a work queue being drained), is
    left for a later start; a missing one is fine. Returns the names deleted."""
    deleted: list[str] = []
    for name in names:
        # Quorum queues refuse `queue.delete` with if-unused (and the broker closes the whole
        # connection for it), so the consumer count is read first from a passive declare.
        channel = await broker._connection.channel()  # noqa: SLF001 - one-off operation
        try:
            queue = await channel.declare_queue(name, passive=True)
            consumers = queue.declaration_result.consumer_count
            waiting = queue.declaration_result.message_count
            if consumers or (keep_unread and waiting):
                logger.warning("retired queue %s still has %d consumer(s) and %d message(s); left for a later start",
                               name, consumers, waiting)
                continue
            await channel.queue_delete(name)
            deleted.append(name)
            logger.info("retired queue %s deleted", name)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            pass  # never declared here, or deleted already
        finally:
            if not channel.is_closed:
                await channel.close()
    return deleted


def amqp_properties(message: Contract) -> dict[str, Any]:
    env = message.envelope
    headers = {"x-message-type": env.message_type, "x-schema-version": env.schema_version}
    if env.traceparent:
        headers["traceparent"] = env.traceparent
    return {
        "message_id": env.message_id,
        "correlation_id": env.correlation_id,
        "headers": headers,
        "persist": True,
        "mandatory": type(message).requires_subscriber,
        "content_type": "application/json",
    }


def json_body(message: Contract) -> bytes:
    """The message as JSON, in one pass of pydantic-core's serializer (the same document as
    `model_dump(mode="json")` then `json.dumps`, at a fraction of the CPU)."""
    return message.__pydantic_serializer__.to_json(message)


async def publish_event(broker: RabbitBroker, message: Contract) -> None:
    """Publish an event to the events exchange; raises if it is unroutable or not confirmed."""
    await broker.publish(
        json_body(message),
        exchange=EVENTS,
        routing_key=message.routing_key,
        **amqp_properties(message),
    )


async def publish_to_queue(broker: RabbitBroker, message: Contract, queue: str, *, persist: bool = False) -> None:
    """Direct publish to a named queue (reply streams); raises if the queue is gone."""
    props = amqp_properties(message) | {"persist": persist}
    await broker.publish(json_body(message), queue=queue, **props)


class FailurePolicy(BaseMiddleware):
    """Reject permanent failures to the DLQ with the cause logged; back off and retry the rest."""

    async def consume_scope(self, call_next, msg):  # type: ignore[override]
        token = correlation_id.set(msg.correlation_id)
        try:
            if isinstance(msg.body, bytes | bytearray) and (bad := unstorable_json(bytes(msg.body))) is not None:
                raise PermanentError(f"{bad.field or 'the body'} {bad.reason}")  # before any handler stores it
            return await call_next(msg)
        except (ValidationError, PermanentError, ValueError) as exc:
            # ValueError covers JSON that does not decode; ValidationError a body that breaks the contract.
            logger.error(
                "dead-lettering message: %s",
                _short(exc),
                extra=log_fields(message_id=msg.message_id, queue=_queue_of(msg), cause=type(exc).__name__),
            )
            raise RejectMessage() from exc
        except (RejectMessage, NackMessage, asyncio.CancelledError):
            raise
        except Exception as exc:
            attempts = _delivery_count(msg)
            logger.warning(
                "retrying message after error: %r",
                exc,
                extra=log_fields(message_id=msg.message_id, attempt=attempts + 1),
                exc_info=exc,
            )
            await asyncio.sleep(min(0.2 * 2**attempts, 5.0))
            raise NackMessage(requeue=True) from exc
        finally:
            correlation_id.reset(token)


def _delivery_count(msg: Any) -> int:
    headers = getattr(msg, "headers", None) or {}
    return int(headers.get("x-delivery-count", 0) or 0)


def _queue_of(msg: Any) -> str | None:
    raw = getattr(msg, "raw_message", None)
    return getattr(raw, "routing_key", None)


def _short(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) < 500 else text[:500] + "..."
