"""An operator's promotion and rollback through the real services: `agentloop promote --wait`
→ gateway → `model.promote.requested` → exporter (moves the aliases) → `model.deployed` → the
runner hot-reloads the real model; `agentloop rollback --wait` brings the base back. Runs through
the gateway record the version that served them.

Canaries (decision 0020) on the same services plus the log-miner's judge: a share of live runs
routed by hash of the run id (across a runner restart), a runner without room refusing with its
reason, bad commands refused with nothing changed, and the judge's verdicts acted on: a worse
candidate rolled back, a better one promoted. For the verdicts the live outcomes are published
as a runner publishes them (`agent.run.finished`, valid and invalid calls as chosen), since both
arms here serve the same weights.

The registry's aliases are global to a database, so these services run on a database and vhost
of this module's own (the session's stack and its loop test keep theirs). The "trained" version
is the bundled GGUF uploaded to S3 under a new name and registered as an evaluated candidate.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest

from contracts import EVENTS_EXCHANGE, AgentRunFinished, ChatMessage, ToolCall, TrajectoryStep, Usage, new_id
from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
from modelregistry import BASE_VERSION, ModelFile, canary_bucket
from modelregistry.write import register_candidate
from servicekit.artifacts import ArtifactStore
from servicekit.db import asyncpg_dsn
from tests.conftest import Stack
from tests.harness import IsolatedEnv, create_database, make_api_key, create_vhost, delete_vhost, drop_database, migrate, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VERSION = f"gemma3-270m-ops{uuid.uuid4().hex[:6]}"
EXE = Path(sys.executable).parent / "agentloop"


async def _register(database_url: str, infra: IsolatedEnv) -> None:
    store = ArtifactStore(infra.s3.endpoint, infra.s3.access_key, infra.s3.secret_key, infra.bucket)
    path = await asyncio.to_thread(bundled_gguf_path)
    uri, sha256 = await store.put_file(f"models/{VERSION}/{VERSION}-Q4_K_M.gguf", path)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await register_candidate(conn, version=VERSION, base_model=BASE_VERSION, job_id=f"job-{VERSION}",
                                 dataset_id=None, adapter_uri=None, lineage={}, quantization="Q4_K_M",
                                 files=[ModelFile("Q4_K_M", uri, sha256, path.stat().st_size, "gguf")])
        await conn.execute("UPDATE registry.model_versions SET evaluation_id = 'eval-ops' WHERE version = $1", VERSION)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def services(infra: IsolatedEnv, session_tmp: Path) -> Iterator[tuple[Stack, dict[str, str]]]:
    suffix = uuid.uuid4().hex[:6]
    database, vhost = f"{infra.database}_ops_{suffix}", f"{infra.vhost}-ops-{suffix}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    create_database(database)
    create_vhost(vhost)
    env = {"DATABASE__URL": url, "BROKER__URL": infra.broker_url.rsplit("/", 1)[0] + "/" + vhost}
    stack = Stack(infra, session_tmp / "logs" / "model-ops")
    try:
        migrate(url)
        asyncio.run(_register(url, infra))
        # The log-miner judges canaries (every 0.5 s here); its retrain policy is off: no trainer runs here.
        stack.service("log_miner", **env, INSTANCE_ID=f"log_miner-ops-{suffix}", POLICY__ENABLED="false",
                      CANARY__JUDGE_INTERVAL_S="0.5")
        for module in ("gateway", "exporter", "agent_runner"):
            stack.service(module, **env, INSTANCE_ID=f"{module}-ops-{suffix}",
                          ENGINE__CACHE_DIR=str(session_tmp / "model-ops-cache"),
                          ENGINE__N_CTX="1024")
        stack.start("log_miner", "gateway", "exporter", "agent_runner")
        yield stack, env
    finally:
        stack.close()
        delete_vhost(vhost)
        drop_database(database)


@pytest.fixture(scope="module")
def cli_env(services, infra: IsolatedEnv) -> dict[str, str]:
    stack, env = services
    base = {**infra.env, **env, "AGENTLOOP_URL": stack.gateway_url}
    keys = {}
    for role in ("operator", "user"):
        keys[role] = make_api_key(base, role, f"e2e-ops-{role}")
    return {**base, "AGENTLOOP_API_KEY": keys["operator"], "USER_KEY": keys["user"]}


def agentloop(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    environ = {**os.environ, **env}
    environ.pop("AGENTLOOP_TOKEN", None)
    return subprocess.run([str(EXE), *args], env=environ, capture_output=True, text=True, timeout=timeout)


def runner_serving(stack: Stack, version: str) -> None:
    runner = stack.service("agent_runner")
    wait_until(lambda: httpx.get(f"{runner.url}/health/detailed", timeout=5).json()["model_version"] == version,
               180, interval=0.5, what=f"the runner to serve {version}")


def run_version(stack: Stack, user_key: str) -> str:
    token = httpx.post(f"{stack.gateway_url}/v1/auth/token", headers={"X-API-Key": user_key}, timeout=10).json()
    resp = httpx.post(f"{stack.gateway_url}/v1/runs", params={"wait": "true"},
                      json={"instruction": "Say hi.", "options": {"max_tokens": 8, "max_steps": 1}},
                      headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=180)
    assert resp.status_code == 200, resp.text
    return resp.json()["model_version"]


def test_an_operator_promotion_is_served_by_the_runner_and_a_rollback_restores_the_base(services, cli_env):
    stack, _ = services
    runner_serving(stack, BUNDLED_MODEL_VERSION)  # a fresh install serves the bundled base

    promoted = agentloop(cli_env, "promote", VERSION, "--reason", "e2e", "--wait", "--wait-s", "120")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"production is now {VERSION}" in promoted.stderr
    listing = agentloop(cli_env, "models", "--alias", "production", "--json")
    assert VERSION in listing.stdout
    runner_serving(stack, VERSION)
    assert run_version(stack, cli_env["USER_KEY"]) == VERSION

    rolled_back = agentloop(cli_env, "rollback", "--reason", "e2e back", "--wait", "--wait-s", "120")
    assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
    assert f"production is now {BUNDLED_MODEL_VERSION}" in rolled_back.stderr
    runner_serving(stack, BUNDLED_MODEL_VERSION)
    assert run_version(stack, cli_env["USER_KEY"]) == BUNDLED_MODEL_VERSION
    detailed = httpx.get(f"{stack.service('agent_runner').url}/health/detailed", timeout=5).json()
    assert detailed["reloads"] == 3 and detailed["last_reload_error"] is None  # start-up, promote, rollback


# ---------------------------------------------------------------------- canaries (decision 0020)


def run_once(stack: Stack, user_key: str) -> tuple[str, str]:
    token = httpx.post(f"{stack.gateway_url}/v1/auth/token", headers={"X-API-Key": user_key}, timeout=10).json()
    resp = httpx.post(f"{stack.gateway_url}/v1/runs", params={"wait": "true"},
                      json={"instruction": "Say hi.", "options": {"max_tokens": 8, "max_steps": 1}},
                      headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=180)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return body["run_id"], body["model_version"]


def canary_status(cli_env: dict[str, str]) -> dict:
    out = agentloop(cli_env, "canary", "status", "--json")
    return json.loads(out.stdout)


def past_the_runner_cache() -> None:
    """A runner reads the running canary at most every 2 s (ServedModels.lookup_ttl_s): a run
    sent sooner after a start or stop may still be routed by the previous answer."""
    time.sleep(2.5)


def runner_canary(stack: Stack) -> dict | None:
    return httpx.get(f"{stack.service('agent_runner').url}/health/detailed", timeout=5).json()["canary"]


def test_a_canary_routes_its_share_by_run_id_and_survives_a_runner_restart(services, cli_env):
    stack, _ = services
    started = agentloop(cli_env, "canary", "start", VERSION, "--share", "50%", "--mode", "ab", "--wait")
    assert started.returncode == 0, started.stdout + started.stderr
    canary_id = started.stdout.strip()
    past_the_runner_cache()
    seen: dict[str, int] = {}
    for i in range(16):
        if i == 8:  # the share is read from the registry: a restarted runner routes the same way
            stack.service("agent_runner").restart()
        run_id, version = run_once(stack, cli_env["USER_KEY"])
        expected = VERSION if canary_bucket(run_id) < 5000 else BASE_VERSION
        assert version == expected, (run_id, canary_bucket(run_id))
        seen[version] = seen.get(version, 0) + 1
        if i >= 9 and len(seen) == 2:
            break
    assert set(seen) == {VERSION, BASE_VERSION}, seen
    assert runner_canary(stack)["state"] == "routing"
    wait_until(lambda: canary_status(cli_env)["report"]["candidate"]["runs"] >= seen[VERSION], 30, interval=0.5,
               what="the judge's report to count the canary's runs")
    view = canary_status(cli_env)
    assert view["canary_id"] == canary_id and view["mode"] == "ab" and view["status"] == "running"
    stopped = agentloop(cli_env, "canary", "stop", "--reason", "e2e done", "--wait")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert canary_status(cli_env)["status"] == "stopped"
    past_the_runner_cache()


def test_a_runner_that_cannot_hold_two_models_refuses_the_canary_with_its_reason(services, cli_env):
    stack, _ = services
    runner = stack.service("agent_runner")
    runner.env["RUNNER__MODEL_MEMORY_RESERVE_MB"] = str(10 ** 8)  # no host has that much to spare
    runner.restart()
    try:
        started = agentloop(cli_env, "canary", "start", VERSION, "--share", "100%", "--mode", "ab", "--wait")
        assert started.returncode == 0, started.stdout + started.stderr
        past_the_runner_cache()
        for _ in range(2):
            assert run_once(stack, cli_env["USER_KEY"])[1] == BASE_VERSION  # the runs still run, on production
        state = runner_canary(stack)
        assert state["state"] == "refused" and "RUNNER__MODEL_MEMORY_RESERVE_MB" in state["refused_because"]
        assert "refuses canary" in runner.log_text()
    finally:
        agentloop(cli_env, "canary", "stop", "--wait")
        runner.env.pop("RUNNER__MODEL_MEMORY_RESERVE_MB")
        runner.restart()


def test_bad_canary_commands_get_a_4xx_with_the_reason_and_change_nothing(services, cli_env):
    stack, env = services
    token = httpx.post(f"{stack.gateway_url}/v1/auth/token", headers={"X-API-Key": cli_env["AGENTLOOP_API_KEY"]},
                       timeout=10).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{stack.gateway_url}/v1/registry/canary"

    def canaries() -> int:
        return asyncio.run(_count(env["DATABASE__URL"], "SELECT count(*) FROM registry.canaries"))

    before = canaries()
    for share in (0, -5, 100.5, "150%", "ten"):
        resp = httpx.post(url, json={"model_version": VERSION, "share": share}, headers=auth, timeout=10)
        assert resp.status_code == 422, resp.text
        assert any(err["loc"][-1] == "share" for err in resp.json()["detail"]), resp.text
    unknown = httpx.post(url, json={"model_version": "no-such-version", "share": 10}, headers=auth, timeout=10)
    assert unknown.status_code == 404 and "no-such-version" in unknown.json()["detail"]
    production = httpx.post(url, json={"model_version": BASE_VERSION, "share": 10}, headers=auth, timeout=10)
    assert production.status_code == 409 and "production already" in production.json()["detail"]
    stop = httpx.post(f"{url}/stop", headers=auth, timeout=10)
    assert stop.status_code == 409 and "no canary is running" in stop.json()["detail"]
    assert canaries() == before
    first = httpx.post(url, params={"wait": "true"}, json={"model_version": VERSION, "share": 10, "mode": "ab"},
                       headers=auth, timeout=40)
    assert first.status_code == 200, first.text
    second = httpx.post(url, json={"model_version": VERSION, "share": 20}, headers=auth, timeout=10)
    assert second.status_code == 409 and "is running" in second.json()["detail"]
    assert canaries() == before + 1
    assert canary_status(cli_env)["share_pct"] == 10.0  # the running one is untouched
    refused = asyncio.run(_count(env["DATABASE__URL"], "SELECT count(*) FROM gateway.audit_log WHERE action = "
                                 "'canary.start' AND outcome = 'error'"))
    assert refused >= 2  # unknown version, production, second canary: audited
    assert httpx.post(f"{url}/stop", params={"wait": "true"}, headers=auth, timeout=40).status_code == 200


async def _count(database_url: str, query: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def _publish_outcomes(broker_url: str, outcomes: list[tuple[str, bool]]) -> None:
    """`agent.run.finished` as a runner publishes it: one run per (version, valid call?)."""
    connection = await aio_pika.connect_robust(broker_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)
        for version, valid in outcomes:
            run_id = new_id()
            call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
            msg = AgentRunFinished.create(
                correlation_id=run_id, run_id=run_id, status="completed", outcome="answered", answer="done",
                messages=[ChatMessage(role="user", content="Weather in Paris?")], model_version=version,
                engine="llamacpp", usage=Usage(total_ms=120.0),
                steps=[TrajectoryStep(index=0, kind="tool_call", tool_call=call, valid=valid,
                                      error=None if valid else "schema_violation: city is required"),
                       TrajectoryStep(index=1, kind="final", text="done")],
            )
            await exchange.publish(
                aio_pika.Message(json.dumps(msg.model_dump(mode="json")).encode(), message_id=msg.envelope.message_id,
                                 content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=msg.routing_key, mandatory=True)
    finally:
        await connection.close()


def _judged(cli_env, env, candidate_valid: int, production_valid: int) -> subprocess.CompletedProcess:
    started = agentloop(cli_env, "canary", "start", VERSION, "--share", "10%", "--min-samples", "12", "--wait")
    assert started.returncode == 0, started.stdout + started.stderr
    outcomes = [(VERSION, i < candidate_valid) for i in range(16)] + [(BASE_VERSION, i < production_valid)
                                                                        for i in range(16)]
    asyncio.run(_publish_outcomes(env["BROKER__URL"], outcomes))
    return agentloop(cli_env, "canary", "status", "--follow", "--interval-s", "0.5", timeout=120)


def test_the_judge_rolls_back_a_candidate_worse_on_live_valid_calls(services, cli_env):
    stack, env = services
    followed = _judged(cli_env, env, candidate_valid=6, production_valid=16)
    assert followed.returncode == 1, followed.stdout + followed.stderr  # exit 1: rolled back
    view = canary_status(cli_env)
    assert view["status"] == "rolled_back" and "valid_call_ratio 0.375 against production's 1.000" in view["reason"]
    assert view["report"]["decision"] == "rollback" and view["ended_by"] == "canary-judge"
    listing = json.loads(agentloop(cli_env, "models", "--json").stdout)
    assert listing["aliases"]["production"] == BASE_VERSION  # production untouched


def test_the_judge_promotes_a_better_candidate_through_the_registry(services, cli_env):
    stack, env = services
    followed = _judged(cli_env, env, candidate_valid=16, production_valid=8)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    view = canary_status(cli_env)
    assert view["status"] == "promoted" and view["report"]["decision"] == "promote", view
    listing = json.loads(agentloop(cli_env, "models", "--json").stdout)
    assert listing["aliases"]["production"] == VERSION
    runner_serving(stack, VERSION)  # model.deployed (cause canary): the runner hot-reloaded it
    rolled_back = agentloop(cli_env, "rollback", "--reason", "e2e: back to the base", "--wait", "--wait-s", "120")
    assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
    runner_serving(stack, BUNDLED_MODEL_VERSION)
