"""`agentloop models | promote | rollback` as a user runs them, against a gateway process on a
database and vhost of this module's own (the registry's aliases are global to a database). The
test plays the exporter: it consumes the commands from a queue bound on the events exchange and
moves the aliases with `modelregistry.write`, as the exporter does."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from contracts import EVENTS_EXCHANGE, ModelPromoteRequested, ModelRollbackRequested
from modelregistry import BASE_VERSION, GateEvaluation, ModelFile
from modelregistry.write import promote, record_evaluation, register_candidate
from servicekit.db import asyncpg_dsn
from tests.harness import IsolatedEnv, ServiceProcess, create_database, create_vhost, delete_vhost, drop_database, \
    make_api_key, migrate
from tests.registry.state import reset_registry

EXE = Path(sys.executable).parent / "agentloop"


@pytest.fixture(scope="module")
def setup(infra: IsolatedEnv, session_tmp: Path) -> Iterator[dict[str, str]]:
    """Environment of a gateway on its own database and vhost."""
    suffix = uuid.uuid4().hex[:6]
    database, vhost = f"{infra.database}_cli_{suffix}", f"{infra.vhost}-cli-{suffix}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    create_database(database)
    create_vhost(vhost)
    try:
        migrate(url)
        yield {**infra.env, "DATABASE__URL": url, "BROKER__URL": infra.broker_url.rsplit("/", 1)[0] + "/" + vhost,
               "LOG__JSON_FORMAT": "false"}
    finally:
        delete_vhost(vhost)
        drop_database(database)


@pytest.fixture(scope="module")
def gateway(setup: dict[str, str], session_tmp: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("gateway", {**setup, "INSTANCE_ID": f"gw-cli-{uuid.uuid4().hex[:6]}"},
                          session_tmp / "logs" / "cli-models")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def agentloop(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


async def agentloop_async(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The CLI while this test's event loop plays the exporter."""
    proc = await asyncio.create_subprocess_exec(str(EXE), *args, env={**os.environ, **env},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


@pytest.fixture(scope="module")
def keys(setup: dict[str, str], gateway: ServiceProcess) -> dict[str, dict[str, str]]:
    """CLI environments with an operator's and a user's API key (made with `python -m gateway.admin`)."""
    envs = {}
    for role in ("operator", "user"):
        key = make_api_key(setup, role, f"cli-models-{role}")
        envs[role] = {**setup, "AGENTLOOP_URL": gateway.url, "AGENTLOOP_API_KEY": key}
        envs[role].pop("AGENTLOOP_TOKEN", None)
    return envs


@pytest.fixture
async def registry(setup: dict[str, str]) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(setup["DATABASE__URL"]))
    try:
        await reset_registry(conn)
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def commands(setup: dict[str, str]) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue receiving the promote and rollback commands the gateway publishes."""
    connection = await aio_pika.connect_robust(setup["BROKER__URL"])
    channel = await connection.channel()
    exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(f"test.cli-commands.{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True)
    for contract in (ModelPromoteRequested, ModelRollbackRequested):
        await queue.bind(exchange, routing_key=contract.routing_key)
    yield queue
    await connection.close()


async def next_command(queue: aio_pika.abc.AbstractQueue, timeout: float = 20) -> tuple[str, dict]:
    async with asyncio.timeout(timeout):
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                return message.headers["x-message-type"], json.loads(message.body)
    raise AssertionError("unreachable")


async def candidate(conn: asyncpg.Connection, version: str, score: float) -> None:
    """An exported version with the gate's verdict recorded as the exporter files it."""
    files = [ModelFile("Q4_K_M", f"s3://models/{version}/Q4_K_M.gguf", "ab" * 32, 1000, "gguf")]
    await register_candidate(conn, version=version, base_model=BASE_VERSION, files=files, job_id=f"job-{version}",
                             dataset_id="ds-1", adapter_uri=None, lineage={}, metrics={"parity": {"ok": True}},
                             quantization="Q4_K_M")
    await conn.execute("UPDATE registry.model_versions SET evaluation_id = 'eval-1' WHERE version = $1", version)
    await record_evaluation(conn, version, GateEvaluation(evaluation_id="eval-1", passed=True, quantization="Q4_K_M",
                                                          primary_suite="tools", scores={"json": 1.0, "tools": score}))


async def test_models_prints_a_table_of_versions_with_aliases_and_scores(keys, registry):
    await candidate(registry, "gemma3-270m-cli1", 0.8)
    out = agentloop(keys["operator"], "models")
    assert out.returncode == 0, out.stderr
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") > 2}
    assert "production" in rows[BASE_VERSION] and "Q4_K_M" in rows[BASE_VERSION]
    assert "candidate" in rows["gemma3-270m-cli1"] and "0.800" in rows["gemma3-270m-cli1"]

    only = agentloop(keys["operator"], "models", "--alias", "production", "--json")
    assert only.returncode == 0, only.stderr
    assert [v["version"] for v in json.loads(only.stdout)["versions"]] == [BASE_VERSION]


async def test_promote_with_wait_returns_once_the_exporter_has_moved_production(keys, registry, commands):
    await candidate(registry, "gemma3-270m-cli2", 0.9)

    async def exporter() -> dict:
        kind, body = await next_command(commands)
        assert kind == "ModelPromoteRequested"
        await promote(registry, body["model_version"], cause="operator", actor=body["requested_by"],
                      reason=body["reason"])
        return body

    playing = asyncio.create_task(exporter())
    out = await agentloop_async(keys["operator"], "promote", "gemma3-270m-cli2", "--reason", "better", "--wait",
                                "--wait-s", "30")
    body = await playing
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == body["request_id"]
    assert "production is now gemma3-270m-cli2" in out.stderr
    assert (body["requested_by"], body["reason"]) == ("cli-models-operator", "better")


async def test_rollback_sends_the_command_and_prints_its_request_id(keys, registry, commands):
    await candidate(registry, "gemma3-270m-cli3", 0.7)
    await promote(registry, "gemma3-270m-cli3", cause="promoted", actor="gate")
    out = agentloop(keys["operator"], "rollback", "--reason", "regressed")
    assert out.returncode == 0, out.stderr
    kind, body = await next_command(commands)
    assert kind == "ModelRollbackRequested" and body["request_id"] == out.stdout.strip()
    assert body["reason"] == "regressed"
    assert f"{BASE_VERSION} becomes production" in out.stderr


async def test_rollback_without_a_previous_version_fails_with_the_reason(keys, registry):
    out = agentloop(keys["operator"], "rollback")
    assert out.returncode == 2
    assert "409" in out.stderr and "nothing to roll back to" in out.stderr


async def test_promote_of_an_unknown_version_fails_with_404(keys, registry):
    out = agentloop(keys["operator"], "promote", "no-such-version")
    assert out.returncode == 2 and "404" in out.stderr and "no-such-version" in out.stderr


async def test_promote_with_wait_exits_1_when_production_does_not_move_in_time(keys, registry, commands):
    await candidate(registry, "gemma3-270m-cli4", 0.6)
    out = agentloop(keys["operator"], "promote", "gemma3-270m-cli4", "--wait", "--wait-s", "0.5")
    assert out.returncode == 1, out.stderr
    assert "still" in out.stderr and out.stdout.strip()
    kind, _ = await next_command(commands)  # it was sent all the same
    assert kind == "ModelPromoteRequested"


def test_a_user_key_may_not_list_or_promote_models(keys):
    for args in (("models",), ("promote", BASE_VERSION), ("rollback",)):
        out = agentloop(keys["user"], *args)
        assert out.returncode == 2, out.stdout
        assert "403" in out.stderr and "operator" in out.stderr
