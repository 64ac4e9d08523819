"""Composition root of the trainer: settings -> broker, Postgres, S3 -> app.

`build_broker` is the AsyncAPI convention: every subscriber declared, nothing connected.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI
from faststream.rabbit import RabbitBroker

from servicekit.app import create_service_app
from servicekit.db import Inbox, inbox_table
from servicekit.intake import INTAKE_KEY, Intake
from servicekit.logs import setup_logging
from servicekit.messaging import make_broker
from servicekit.runtime import artifact_store, standard_runtime
from servicekit.settings import BrokerSettings

from . import SCHEMA, SERVICE, handlers, metrics
from .settings import TrainerSettings


def build_broker(settings: BrokerSettings) -> RabbitBroker:
    broker = make_broker(settings.url, prefetch=settings.prefetch, app_id=SERVICE)
    handlers.register(broker, delivery_limit=settings.delivery_limit)
    return broker


def build_app(settings: TrainerSettings) -> FastAPI:
    setup_logging(SERVICE, settings.log.level, settings.log.json_format)
    rt = standard_runtime(SERVICE, settings, build_broker, artifacts=artifact_store(settings.s3))
    inbox = Inbox(inbox_table(sa.MetaData(schema=SCHEMA)))
    intake = Intake(rt.engine, inbox, metrics.build(rt.registry).messages_received)
    rt.broker.context.set_global(INTAKE_KEY, intake)
    return create_service_app(rt)
