"""The committed AsyncAPI documents (docs/asyncapi/) match what the services' brokers declare."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from contracts import SERVICES

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "asyncapi.py"


def load_script():
    spec = importlib.util.spec_from_file_location("agentloop_asyncapi_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


asyncapi = load_script()


@pytest.mark.parametrize("service", SERVICES)
def test_committed_asyncapi_document_is_current(service: str):
    try:
        text = asyncapi.render(service)
    except asyncapi.ConventionMissing as exc:
        pytest.skip(f"{service} does not follow the AsyncAPI convention yet: {exc}")
    path = asyncapi.doc_path(service)
    assert path.exists(), f"{path} missing: run .venv/bin/python scripts/asyncapi.py"
    assert path.read_text() == text, f"{path} is stale: run .venv/bin/python scripts/asyncapi.py"


def test_a_document_names_every_queue_the_service_consumes():
    import yaml

    doc = yaml.safe_load(asyncapi.render("log-miner"))
    amqp = [ch["bindings"]["amqp"] for ch in doc["channels"].values()]
    queues = {b["queue"]["name"] for b in amqp if b["is"] == "queue"}  # publish channels are routing keys
    assert queues == {
        "log-miner.agent.run.finished.v1",
        "log-miner.feedback.submitted.v1",
        "log-miner.retrain.requested.v1",
    }
