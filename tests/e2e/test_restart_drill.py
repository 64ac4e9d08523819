"""Drill: RabbitMQ and then Postgres restart under load, and no accepted run is lost.

Gateway, agent-runner (scripted engine) and log-miner run as processes on a vhost, database and
bucket of their own. Clients submit runs the whole time (fire-and-forget, `POST /v1/runs`). In
the middle, the broker application restarts (`rabbitmqctl stop_app` / `start_app`: every
connection drops, the quorum queues come back from disk), and later the Postgres cluster
restarts (every connection drops). A submission refused while a server is away is the client's
to retry and is not counted; every run the gateway accepted (202) must end completed in the
gateway's index, with exactly one trajectory, and reach the log-miner exactly once, and no
message may be dead-lettered.

The drill restarts the machine's shared servers, so `tests/conftest.py` runs it after every
other test (marker `drill`).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from contracts import dead_letter_queue_name
from tests.harness import isolated_env, rabbitmqctl, run_path, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.drill]

RUNNER_QUEUES = ("agent-runner.agent.run.requested.v1", "gateway.agent.run.finished.v1",
                 "log-miner.agent.run.finished.v1")


def restart_rabbitmq() -> None:
    rabbitmqctl("stop_app")
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup")


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   capture_output=True, timeout=120)
    wait_until(lambda: _pg_up(), 60, what="Postgres back")


def _pg_up() -> bool:
    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


class Load:
    """Clients submitting runs back to back until stopped; keeps the accepted run ids."""

    def __init__(self, url: str, token: str, clients: int = 4) -> None:
        self.url, self.token, self.clients = url, token, clients
        self.accepted: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {self.token}"}) as c:
            while not self._stop.is_set():
                try:
                    resp = c.post("/v1/runs", json={"instruction": "ping"})
                except httpx.HTTPError:
                    self.refused += 1
                    time.sleep(0.1)
                    continue
                if resp.status_code == 202:
                    self.accepted.append(resp.json()["run_id"])
                else:
                    self.refused += 1
                    time.sleep(0.1)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def accounted(dsn: str, run_ids: list[str]) -> tuple[int, int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        completed = conn.execute("SELECT count(*) FROM gateway.runs WHERE run_id = ANY(%s) AND status = 'completed'",
                                 (run_ids,)).fetchone()[0]
        trajectories = conn.execute("SELECT count(*) FROM agent_runner.trajectories WHERE run_id = ANY(%s)",
                                    (run_ids,)).fetchone()[0]
        mined = conn.execute(
            "SELECT count(*) FROM log_miner.inbox i JOIN agent_runner.outbox o ON o.message_id = i.message_id"
            " WHERE o.message_type = 'AgentRunFinished' AND o.body->>'run_id' = ANY(%s)", (run_ids,)).fetchone()[0]
    return completed, trajectories, mined


def dead_lettered(vhost: str) -> dict[str, int]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages"], capture_output=True,
                         text=True, check=True).stdout
    counts = dict(line.split("\t") for line in out.strip().splitlines() if "\t" in line)
    return {name: int(n) for name, n in counts.items() if name in {dead_letter_queue_name(q) for q in RUNNER_QUEUES}
            and int(n) > 0}


def test_a_rabbitmq_and_a_postgres_restart_under_load_lose_no_accepted_run(tmp_path: Path) -> None:
    with isolated_env(tmp_path) as env, run_path(env, tmp_path / "logs", prefix="drill") as path:
        with Load(path.gateway.url, path.token) as load:
            wait_until(lambda: len(load.accepted) >= 20, 60, what="runs under way")
            restart_rabbitmq()
            before_pg = len(load.accepted)
            wait_until(lambda: len(load.accepted) >= before_pg + 20, 120, what="runs accepted after the broker")
            restart_postgres()
            after_pg = len(load.accepted)
            wait_until(lambda: len(load.accepted) >= after_pg + 20, 120, what="runs accepted after Postgres")
        print(f"drill: {len(load.accepted)} runs accepted, {load.refused} submissions refused while a server was away")
        run_ids = list(dict.fromkeys(load.accepted))
        assert len(run_ids) == len(load.accepted), "a run id was accepted twice"
        n = len(run_ids)
        dsn = env.database_url.replace("+asyncpg", "")
        try:
            wait_until(lambda: accounted(dsn, run_ids) == (n, n, n), 180, interval=1.0, what="every run")
        except TimeoutError:
            pass
        assert accounted(dsn, run_ids) == (n, n, n), f"of {n} accepted runs (refused: {load.refused})"
        assert dead_lettered(env.vhost) == {}
        for svc in path.services:
            assert svc.process.poll() is None, f"{svc.module} died"
