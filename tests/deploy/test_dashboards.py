"""The generated Grafana dashboards (deploy/grafana/generate.py) hold together without a Grafana
server: the committed JSON is what the generator writes, it decodes into the SDK's dashboard
types (panel options and Prometheus queries typed by the SDK's plugins) and encodes back the
same, every query is PromQL that promtool accepts, and every metric it reads is one the services
export (their own registries, the shared servicekit ones, FastStream's middleware, RabbitMQ's
detailed queue metrics). That every panel has data on a live stack is proven by
tests/e2e/test_dashboards_live.py against a real Prometheus."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
BOARDS = ROOT / "deploy" / "grafana" / "dashboards"
SERVICE_METRICS = [("gateway.metrics", "build"), ("agent_runner.metrics", "RunnerMetrics"),
                   ("log_miner.metrics", "MinerMetrics"), ("trainer.metrics", "TrainerMetrics"),
                   ("evaluator.metrics", "EvaluatorMetrics"), ("exporter.metrics", "ExporterMetrics")]
# Series of other exporters: Prometheus' own `up`, RabbitMQ's detailed queue metrics (queue_coarse_metrics).
FOREIGN = {"up", "rabbitmq_detailed_queue_messages", "rabbitmq_detailed_queue_messages_ready",
           "rabbitmq_detailed_queue_messages_unacked"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def boards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(BOARDS.glob("*.json"))}


def queries() -> list[tuple[str, str, str]]:
    return [(name, panel["title"], target["expr"]) for name, board in boards().items()
            for panel in board["panels"] for target in panel.get("targets", [])]


def exported_names() -> set[str]:
    """Every series name the services can expose, with the suffixes their types add."""
    from servicekit.metrics import message_metrics_middleware, new_registry, outbox_gauges

    registry = new_registry("test")
    outbox_gauges(registry, "test")
    message_metrics_middleware(registry, "test")  # FastStream's metrics register with it
    registries = [registry]
    for module, ctor in SERVICE_METRICS:
        reg = CollectorRegistry()
        getattr(importlib.import_module(module), ctor)(reg)
        registries.append(reg)
    names = set(FOREIGN)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum"),
                "gauge": ("",), "info": ("_info",)}
    for reg in registries:
        for family in reg.collect():
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    tokens = [m.group() for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text)
              if not text[m.end():].lstrip().startswith("(")]  # a function's name
    return {t for t in tokens if t.lower() not in PROMQL_WORDS}


def test_the_committed_dashboards_are_what_the_generator_writes():
    proc = subprocess.run([sys.executable, str(ROOT / "deploy" / "grafana" / "generate.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(boards()) == 7  # six services and the loop


def test_each_dashboard_decodes_into_the_sdk_types_and_back():
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import prometheus, stat, timeseries
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    for name, data in boards().items():
        model = Dashboard.from_json(data)
        assert model.panels, name
        for panel in model.panels:
            assert isinstance(panel.options, timeseries.Options | stat.Options), (name, panel.title)
            assert all(isinstance(t, prometheus.Dataquery) for t in panel.targets), (name, panel.title)
            assert panel.datasource.uid == "prometheus", (name, panel.title)
        back = json.loads(json.dumps(model, cls=JSONEncoder))
        for panel in back["panels"]:  # the typed decoding fills in the empty `custom` field config
            if panel["fieldConfig"]["defaults"].get("custom") == {}:
                del panel["fieldConfig"]["defaults"]["custom"]
        assert back == data, name


@pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("CI"),
                    reason="promtool not installed (apt-get install prometheus)")
def test_every_panel_query_is_promql_that_promtool_accepts(tmp_path):
    rules = [{"record": f"panel:q{i}", "expr": expr.replace("$__rate_interval", "1m")}
             for i, (_, _, expr) in enumerate(queries())]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    proc = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_panel_reads_metrics_the_services_export():
    known = exported_names()
    unknown = sorted({(name, title, metric) for name, title, expr in queries() for metric in metric_names(expr)
                      if metric not in known})
    assert not unknown, f"panels reading metrics nobody exports: {unknown}"
    assert metric_names('sum by (route) (rate(gateway_http_requests_total{status=~"5.."}[5m])) / 2') == {
        "gateway_http_requests_total"}  # the extraction itself


def test_each_service_has_a_dashboard_with_its_messaging_panels():
    titles = {name: {p["title"] for p in board["panels"]} for name, board in boards().items()}
    for service in ("gateway", "agent-runner", "log-miner", "trainer", "evaluator", "exporter"):
        assert {"Messages handled per second", "Outbox backlog"} <= titles[f"agentloop-{service}.json"], service


def test_compose_and_the_stack_provision_every_dashboard():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in compose["services"]["grafana"]["volumes"]
    stack = yaml.safe_load((ROOT / "deploy" / "stack.yml").read_text())
    shipped = {stack["configs"][c["source"]]["file"]: c["target"] for c in stack["services"]["grafana"]["configs"]}
    for name in boards():
        assert shipped.get(f"./grafana/dashboards/{name}") == f"/var/lib/grafana/dashboards/{name}", name
