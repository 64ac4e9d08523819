"""An operator's promotion and rollback through the real services: `agentloop promote --wait`
→ gateway → `model.promote.requested` → exporter (moves the aliases) → `model.deployed` → the
runner hot-reloads the real model; `agentloop rollback --wait` brings the base back. Runs through
the gateway record the version that served them.

The registry's aliases are global to a database, so these services run on a database and vhost
of this module's own (the session's stack and its loop test keep theirs). The "trained" version
is the bundled GGUF uploaded to S3 under a new name and registered as an evaluated candidate.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
from modelregistry import BASE_VERSION, ModelFile
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
        for module in ("gateway", "exporter", "agent_runner"):
            stack.service(module, **env, INSTANCE_ID=f"{module}-ops-{suffix}",
                          ENGINE__CACHE_DIR=str(session_tmp / "model-ops-cache"),
                          ENGINE__N_CTX="1024")
        stack.start("gateway", "exporter", "agent_runner")
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
