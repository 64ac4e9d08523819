"""Session fixtures shared by every test area. See tests/harness.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import IsolatedEnv, ServiceProcess, isolated_env, want_session_prometheus

SERVICE_MODULES = ("gateway", "agent_runner", "log_miner", "trainer", "evaluator", "exporter")
# The session's gateway serves every e2e and CLI test: their token exchanges and runs together exceed
# the production defaults (20 exchanges/minute per IP). The limits themselves are tested against a
# gateway of their own (tests/gateway/integration).
GENEROUS_LIMITS = {"LIMITS__TOKEN": "10000/minute", "LIMITS__RUNS": "10000/minute"}


LOG_SCAN_MODULE = "test_secrets_in_logs.py"
LIVE_DASHBOARDS_MODULE = "test_dashboards_live.py"


@pytest.hookimpl(trylast=True)  # after -m / -k deselected what will not run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The dashboards are read back from the session's Prometheus once every other test has made
    its traffic; drills restart the machine's shared servers and run after that; the scan of the
    session's logs for secrets runs last, when every log is written."""
    items.sort(key=lambda item: (item.path.name == LOG_SCAN_MODULE, item.get_closest_marker("drill") is not None,
                                 item.path.name == LIVE_DASHBOARDS_MODULE))
    if any(item.path.name == LIVE_DASHBOARDS_MODULE for item in items):
        want_session_prometheus()  # every service process of the session is then scraped


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agentloop")


@pytest.fixture(scope="session")
def infra(session_tmp: Path) -> Iterator[IsolatedEnv]:
    """A fresh vhost, database (migrated), bucket and Redis prefix for this test session."""
    with isolated_env(session_tmp) as env:
        yield env


class Stack:
    """The six services as processes against `infra`. Services start on first use."""

    def __init__(self, infra: IsolatedEnv, log_dir: Path) -> None:
        self.infra = infra
        self.log_dir = log_dir
        self.services: dict[str, ServiceProcess] = {}

    def service(self, module: str, **extra_env: str) -> ServiceProcess:
        if module not in self.services:
            # the gateway reads the log-miner's operator routes (label queue, dataset export) over HTTP
            gateway = {**GENEROUS_LIMITS, "LOG_MINER_URL": self.service("log_miner").url} if module == "gateway" else {}
            env = {**self.infra.env, "INSTANCE_ID": f"{module}-{self.infra.suffix}", **gateway, **extra_env}
            self.services[module] = ServiceProcess(module, env, self.log_dir)
        return self.services[module]

    def start(self, *modules: str) -> None:
        procs = [self.service(m) for m in modules]
        for p in procs:
            if p.process is None or p.process.poll() is not None:
                p.start(wait=False)
        for p in procs:
            p.wait_ready()

    def close(self) -> None:
        for p in self.services.values():
            p.stop()

    @property
    def gateway_url(self) -> str:
        return self.service("gateway").url


@pytest.fixture(scope="session")
def stack(infra: IsolatedEnv, session_tmp: Path) -> Iterator[Stack]:
    """All six services running against the isolated infrastructure (runner on the real model)."""
    s = Stack(infra, session_tmp / "logs")
    try:
        s.start(*SERVICE_MODULES)
        yield s
    finally:
        s.close()
