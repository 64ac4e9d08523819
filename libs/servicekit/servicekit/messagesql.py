"""The inbox and outbox statements of a service schema, written once (asyncpg, `$n` parameters).

Every service owns an `inbox` (message ids it has consumed) and an `outbox` (events staged with
the state change that caused them, published after commit) in its own schema; the shapes are
`db.inbox_table` / `db.outbox_table` (and `migrations/messaging_tables.py`). Hot paths fold a claim
or a staging into one statement with their own rows (a data-modifying CTE is one transaction), so
the statements come as fragments that take the placeholders of the statement they sit in.
Placeholders are caller-chosen `$n` strings, never values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from contracts import Contract

from .messaging import json_body


def outbox_row(message: Contract) -> tuple[str, str, str, str]:
    """One message's outbox columns (id, type, routing key, body as JSON text: one pydantic-core pass)."""
    env = message.envelope
    return env.message_id, env.message_type, message.routing_key, json_body(message).decode()


class OutboxRows(NamedTuple):
    """Staged messages as the parallel arrays the `stage_all` fragment unnests (bodies as JSON text)."""

    message_ids: list[str]
    message_types: list[str]
    routing_keys: list[str]
    bodies: list[str]

    @classmethod
    def of(cls, messages: Sequence[Contract]) -> OutboxRows:
        rows = [outbox_row(m) for m in messages]
        return cls(*([row[i] for row in rows] for i in range(4)))


class MessageSql:
    """The statements on `<schema>.inbox` and `<schema>.outbox`."""

    def __init__(self, schema: str) -> None:
        self.inbox = f"{schema}.inbox"
        self.outbox = f"{schema}.outbox"
        self.seen = f"SELECT EXISTS (SELECT 1 FROM {self.inbox} WHERE message_id = $1)"
        self.mark_published = f"UPDATE {self.outbox} SET published_at = now() WHERE message_id = ANY($1::text[])"
        self.stored_body = f"SELECT body FROM {self.outbox} WHERE message_id = $1"
        # The relay: unsent rows older than $1 seconds, oldest first, $2 at most, none of the
        # parked ids $3; locked, so two relays never publish the same row at once.
        self.pending = f"""SELECT id, routing_key, body FROM {self.outbox}
            WHERE published_at IS NULL AND created_at < now() - make_interval(secs => $1)
              AND NOT (id = ANY($3::bigint[]))
            ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"""
        self.mark_rows = f"UPDATE {self.outbox} SET published_at = now() WHERE id = ANY($1::bigint[])"
        # What waits to be published: how many rows, and how long the oldest has waited (seconds).
        self.backlog = f"""SELECT count(*) AS pending,
            coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_s
            FROM {self.outbox} WHERE published_at IS NULL"""

    def claim(self, message_id: str = "$1", message_type: str = "$2") -> str:
        """Claims one message id; returns it the first time, no row for a duplicate."""
        return f"""INSERT INTO {self.inbox} (message_id, message_type) VALUES ({message_id}, {message_type})
            ON CONFLICT (message_id) DO NOTHING RETURNING message_id"""

    def claim_all(self, message_ids: str, message_types: str) -> str:
        """Claims the ids of two `text[]` parameters, in id order (so that two batches lock alike);
        returns the ids claimed now."""
        return f"""INSERT INTO {self.inbox} (message_id, message_type)
            SELECT message_id, message_type FROM unnest({message_ids}::text[], {message_types}::text[])
                AS m(message_id, message_type) ORDER BY message_id
            ON CONFLICT (message_id) DO NOTHING RETURNING message_id"""

    def stage_all(self, rows: tuple[str, str, str, str] = ("$1", "$2", "$3", "$4"), *, where: str = "") -> str:
        """Stages the messages of four `text[]` parameters (an `OutboxRows`), idempotent on message id;
        `where` (e.g. `EXISTS (SELECT 1 FROM claim)`) gates the whole batch."""
        ids, types, keys, bodies = rows
        condition = f"WHERE {where}" if where else ""
        return f"""INSERT INTO {self.outbox} (message_id, message_type, routing_key, body)
            SELECT message_id, message_type, routing_key, body::jsonb
            FROM unnest({ids}::text[], {types}::text[], {keys}::text[], {bodies}::text[])
                AS m(message_id, message_type, routing_key, body)
            {condition}
            ON CONFLICT (message_id) DO NOTHING"""

    def stage_one(self, message_id: str, message_type: str, routing_key: str, body: str) -> str:
        """Stages one message (its body a JSON text parameter); the cheaper statement for a lone row."""
        return f"""INSERT INTO {self.outbox} (message_id, message_type, routing_key, body)
            VALUES ({message_id}, {message_type}, {routing_key}, {body}::text::jsonb)
            ON CONFLICT (message_id) DO NOTHING"""
