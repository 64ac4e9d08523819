"""Prometheus plumbing shared by services: a registry per app, `/metrics`, message RED metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client import ProcessCollector


def new_registry(service: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    up = Gauge("agentloop_service_info", "Service identity", ["service"], registry=registry)
    up.labels(service=service).set(1)
    return registry


def outbox_gauges(registry: CollectorRegistry, service: str) -> tuple[Gauge, Gauge]:
    """The outbox backlog of a service: rows waiting to be published, and how long the oldest has waited."""
    pending = Gauge("agentloop_outbox_pending_messages", "Outbox rows not yet published", ["service"],
                    registry=registry)
    oldest = Gauge("agentloop_outbox_oldest_pending_age_seconds",
                   "Seconds the oldest unpublished outbox row has waited (0: none waits)", ["service"],
                   registry=registry)
    return pending.labels(service=service), oldest.labels(service=service)


def message_metrics_middleware(registry: CollectorRegistry, service: str) -> RabbitPrometheusMiddleware:
    """FastStream's RED metrics for every consumed and published message."""
    return RabbitPrometheusMiddleware(registry=registry, app_name=service)


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
