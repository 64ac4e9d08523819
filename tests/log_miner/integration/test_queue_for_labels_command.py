"""`agentloop label-queue` as an operator runs it: the CLI calls the real gateway
(GET /v1/ops/label-queue), which reads the real log-miner's internal route (decision 0013); the
runs come in as AgentRunFinished events with their GroupThink confidence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import ServiceProcess
from tests.log_miner.integration.conftest import MinerEnv, eventually
from tests.log_miner.integration.test_retrain_command import agentloop, cli_env
from tests.log_miner.runs import WEATHER, Trajectory, rid


@pytest.fixture(scope="module")
def gateway(miner_env: MinerEnv, miner: ServiceProcess, session_tmp: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("gateway", {**miner_env.env, "INSTANCE_ID": "gateway-label-queue-test",
                                      "LOG_MINER_URL": miner.url}, session_tmp / "log-miner-logs" / "label-queue")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def operator(miner_env, gateway) -> dict[str, str]:
    return cli_env(miner_env, gateway, "operator")


async def logged_runs(events, db) -> tuple[str, list[str]]:
    """Three runs of a model version of this test's own, in the order the queue must list them."""
    mv = f"label-cli-{rid()}@v1"
    split = Trajectory("Weather in Oslo?", tools=[WEATHER], model_version=mv, confidence=0.3).client_call(
        "get_weather", {"city": "Oslo"})
    nearly = Trajectory("Say hi", tools=[WEATHER], model_version=mv, confidence=0.9).answer("Hi!")
    broken = Trajectory("Weather in Rome?", tools=[WEATHER], model_version=mv).malformed().end("max_steps")
    runs = [broken, nearly, split]
    for logged in runs:
        await events.publish(logged)
    ids = [r.run_id for r in runs]
    await eventually(lambda: db.execute("SELECT count(*) FROM log_miner.interactions WHERE run_id = ANY(%s)",
                                        (ids,)).fetchone()[0] == 3, 30, "the three runs on record")
    return mv, [split.run_id, nearly.run_id, broken.run_id]


async def test_label_queue_lists_the_least_confident_runs_first_then_the_failed_ones(operator, events, db):
    mv, expected = await logged_runs(events, db)
    out = agentloop(operator, "label-queue", "--model", mv, "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert [r["run_id"] for r in body["runs"]] == expected and body["waiting"] == 3
    first, _, last = body["runs"]
    assert (first["confidence"], first["reason"], first["calls"]) == (
        0.3, "low_confidence", [{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    assert (last["confidence"], last["reason"], last["label"]) == (None, "failed", "invalid_json")

    head = json.loads(agentloop(operator, "label-queue", "--model", mv, "--limit", "1", "--json").stdout)
    assert [r["run_id"] for r in head["runs"]] == expected[:1] and head["waiting"] == 3

    table = agentloop(operator, "label-queue", "--model", mv)
    assert table.returncode == 0, table.stderr
    assert "3 of 3 runs waiting for a label" in table.stdout
    assert expected[0] in table.stdout and "get_weather" in table.stdout and "0.30" in table.stdout


def test_label_queue_needs_an_operator(miner_env, gateway):
    out = agentloop(cli_env(miner_env, gateway, "user"), "label-queue")
    assert out.returncode == 2 and "403" in out.stderr and "operator" in out.stderr


def test_a_limit_out_of_range_is_a_422_naming_it_at_the_gateway_and_at_the_log_miner(operator, gateway, miner):
    token = httpx.post(f"{gateway.url}/v1/auth/token", headers={"X-API-Key": operator["AGENTLOOP_API_KEY"]},
                       timeout=10).json()["access_token"]
    at_gateway = httpx.get(f"{gateway.url}/v1/ops/label-queue", params={"limit": 0},
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
    at_miner = httpx.get(f"{miner.url}/v1/label-queue", params={"limit": 501}, timeout=10)
    for resp in (at_gateway, at_miner):
        assert resp.status_code == 422
        assert resp.json()["detail"][0]["loc"] == ["query", "limit"]
