"""Every panel of every generated dashboard returns data from a real Prometheus (issue 13).

The session's Prometheus (tests/harness.SessionPrometheus, Debian's `prometheus`) has scraped
every service process this test session started, every 2 s, and RabbitMQ's detailed queue
metrics: the session stack and the module stacks of the loop, canary, hot-reload and other
tests. This module runs after every other test except the drills and the log scan
(tests/conftest.py orders it), adds the traffic no other test makes (a refused credential, a
rate-limit refusal, a run), and then evaluates each panel's queries through the HTTP API over
the session's whole time range, as Grafana would (`$__rate_interval` by Grafana's rule). A query
with no series, or with only NaN values, fails the test with its dashboard and panel.

It proves the dashboards against the traffic of the whole suite (`make test`): run alone, the
training, export, gate and canary panels have nothing to show and it fails, naming them. With
AGENTLOOP_TEST_KEEP_PROMETHEUS=1 the session's Prometheus data is kept (its folder is printed at
exit) to be queried afterwards."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.harness import SCRAPE_INTERVAL_S, ServiceProcess, session_prometheus, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
STEP_S = 5
# Grafana's $__rate_interval: max(step + scrape interval, 4 × scrape interval).
RATE_INTERVAL = f"{max(STEP_S + SCRAPE_INTERVAL_S, 4 * SCRAPE_INTERVAL_S)}s"


def panel_queries() -> list[tuple[str, str, str, str]]:
    out = []
    for path in sorted(BOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((board["uid"], panel["title"], target.get("legendFormat", ""), target["expr"]))
    return out


def finite_points(result: list[dict]) -> int:
    return sum(1 for series in result for _, value in series["values"] if math.isfinite(float(value)))


@pytest.fixture(scope="module")
def prometheus():
    prom = session_prometheus()
    assert prom is not None, "the session's Prometheus did not start (tests/conftest.py asks for it)"
    return prom


@pytest.fixture(scope="module")
def traffic(stack, token, infra, session_tmp, prometheus):
    """What no other test does to a scraped service: a refused credential and a rate-limit refusal
    (on a gateway of its own with a limit of two exchanges a minute, kept until Prometheus has
    scraped the refusal), and one run on the session stack, so the latest scrapes hold fresh
    samples too."""
    bad = httpx.get(f"{stack.gateway_url}/v1/runs/{uuid.uuid4()}", headers={"Authorization": "Bearer not-a-jwt"},
                    timeout=10)
    assert bad.status_code == 401, bad.text
    limited = ServiceProcess("gateway", {**infra.env, "INSTANCE_ID": f"gw-limited-{infra.suffix}",
                                         "LIMITS__TOKEN": "2/minute", "LOG_MINER_URL": stack.service("log_miner").url},
                             session_tmp / "logs" / "limited-gateway")
    limited.start()
    try:
        statuses = [httpx.post(f"{limited.url}/v1/auth/token", headers={"X-API-Key": "al_not_a_key"}, timeout=10)
                    .status_code for _ in range(3)]
        assert statuses[-1] == 429, statuses
        run = httpx.post(f"{stack.gateway_url}/v1/runs?wait=true", timeout=180,
                         headers={"Authorization": f"Bearer {token('user')}"},
                         json={"instruction": "What is 12 times 7?", "options": {"max_tokens": 48, "max_steps": 3}})
        assert run.status_code == 200, run.text
        # file discovery hands new targets on every 5 s, then the first scrape comes within 2 s
        wait_until(lambda: prometheus.query(f'gateway_rate_limited_total{{limit="token", '
                                            f'service_instance="gw-limited-{infra.suffix}"}} > 0'),
                   60, interval=1, what="Prometheus to scrape the limited gateway's refusal")
    finally:
        limited.stop()


@pytest.mark.skipif(shutil.which("prometheus") is None and not os.environ.get("CI"),
                    reason="prometheus not installed (apt-get install prometheus; .ci/run installs it)")
def test_every_panel_of_every_dashboard_returns_data(prometheus, traffic):
    time.sleep(2 * SCRAPE_INTERVAL_S)  # the run's last samples scraped
    end = time.time()
    queries = panel_queries()
    assert len({board for board, *_ in queries}) == 7  # six services and the loop
    empty = []
    for board, title, legend, expr in queries:
        result = prometheus.query_range(expr.replace("$__rate_interval", RATE_INTERVAL),
                                        prometheus.started_at, end, STEP_S)
        if finite_points(result) == 0:
            empty.append(f"{board} / {title} / {legend or expr}: {len(result)} series, no finite value")
    assert not empty, f"{len(empty)} of {len(queries)} panel queries with no data:\n" + "\n".join(empty)
