"""Property-based fuzzing of every gateway route (schemathesis, from the gateway's own OpenAPI) with
a user and an operator token: no response is a 5xx, and every status a route answers is declared
in the OpenAPI document. A fixed seed and a bounded number of examples keep it reproducible and
short. The gateway is a process of its own on the gateway tests' vhost, where no log-miner or
trainer consumes: fuzzing the operator routes starts no training. Run alone: `pytest -m fuzz`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.service.api_keys import create_api_key
from tests.harness import ServiceProcess, migrated_database

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(900)]

ST = Path(sys.executable).parent / "st"
SEED = 20261207
EXAMPLES = 12  # per operation and phase


@pytest.fixture(scope="module")
def fuzz_database() -> Iterator[str]:
    """A registry of the fuzzer's own, holding only the base model: no earlier test's versions, so
    a model command the fuzzer sends is refused at once (nothing to roll back to, an unknown
    version) rather than accepted and waited on (`?wait=true&wait_s=300`) with no exporter here."""
    with migrated_database("agentloop_fuzz") as url:
        yield url


@pytest.fixture(scope="module")
def fuzz_gateway(gateway_env, fuzz_database: str, session_tmp: Path, runner):
    """A gateway with its log-miner (the label queue and the dataset export read it; without one they
    answer 503); no trainer listens, so the retrains the fuzzer asks for build datasets at most."""
    logs = session_tmp / "logs" / "fuzz"
    env = {**gateway_env.env, "DATABASE__URL": fuzz_database}
    miner = ServiceProcess("log_miner", {**env, "INSTANCE_ID": "log-miner-fuzz", "POLICY__ENABLED": "false"}, logs)
    miner.start()
    proc = ServiceProcess("gateway", {**env, "INSTANCE_ID": f"gw-fuzz-{uuid.uuid4().hex[:6]}",
                                      "LIMITS__RUNS": "100000/minute", "LIMITS__TOKEN": "100000/minute",
                                      "LOG_MINER_URL": miner.url,
                                      "REDIS__KEY_PREFIX": f"{gateway_env.env['REDIS__KEY_PREFIX']}-fuzz"}, logs)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
        miner.stop()


@pytest.mark.parametrize("role", ["user", "operator"])
async def test_no_route_answers_a_5xx_or_a_status_it_does_not_declare(fuzz_gateway, fuzz_database, role, tmp_path):
    db = create_async_engine(fuzz_database)
    try:
        key = await create_api_key(db, role, f"fuzz-{role}-{uuid.uuid4().hex[:6]}")
    finally:
        await db.dispose()
    async with httpx.AsyncClient(base_url=fuzz_gateway.url) as client:
        token = (await client.post("/v1/auth/token", headers={"X-API-Key": key})).json()["access_token"]
    cmd = [str(ST), "run", f"{fuzz_gateway.url}/openapi.json", "--header", f"Authorization: Bearer {token}",
           "--checks", "not_a_server_error,status_code_conformance", "--seed", str(SEED),
           "--max-examples", str(EXAMPLES), "--phases", "examples,coverage,fuzzing", "--workers", "1",
           "--request-timeout", "30", "--no-color", "--report", "junit", "--report-dir", str(tmp_path)]
    # In a thread: the fake runner answering the fuzzed runs lives on this test's event loop.
    out = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=840)
    assert out.returncode == 0, (out.stdout + out.stderr)[-12000:]
