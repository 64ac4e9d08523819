"""Hot reload with real runner processes on the real model (llama.cpp), real RabbitMQ, Postgres
and S3: the bundled GGUF uploaded to S3 under new version names plays a trained model.

Two runner instances start on a registry (a database of this module's own) whose production is
that S3 version: both download, verify and serve it. Then `model.deployed` for another version
reaches both (per-instance queues) and both swap; a new run's trajectory records the version that
ran it. A deployment whose sha256 does not match leaves both serving what they served.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from contracts import ModelDeployed
from modelkit.base_model import bundled_gguf_path
from modelregistry import BASE_VERSION, ModelFile
from modelregistry.write import promote, register_candidate
from servicekit.artifacts import ArtifactStore
from servicekit.db import asyncpg_dsn
from tests.harness import IsolatedEnv, ServiceProcess, create_database, drop_database, migrate

from .conftest import RunnerInfra, eventually, fetch_all, run_request

pytestmark = pytest.mark.slow

FIRST, SECOND, BROKEN = "gemma3-270m-hotreload-a", "gemma3-270m-hotreload-b", "gemma3-270m-hotreload-c"


@dataclass(frozen=True)
class Uploaded:
    uri: str
    sha256: str


@pytest.fixture(scope="module")
async def gguf(infra: IsolatedEnv) -> Uploaded:
    """The bundled GGUF as an S3 object, as the exporter uploads a trained model's quant."""
    store = ArtifactStore(infra.s3.endpoint, infra.s3.access_key, infra.s3.secret_key, infra.bucket)
    path = await asyncio.to_thread(bundled_gguf_path)
    uri, sha256 = await store.put_file(f"models/hotreload-{uuid.uuid4().hex[:6]}/model-Q4_K_M.gguf", path)
    return Uploaded(uri, sha256)


@pytest.fixture(scope="module")
async def database(infra: IsolatedEnv, gguf: Uploaded) -> AsyncIterator[str]:
    """A migrated database whose registry has FIRST (the S3 GGUF) as production."""
    name = f"{infra.database}_reload_{uuid.uuid4().hex[:6]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    create_database(name)
    try:
        await asyncio.to_thread(migrate, url)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await register_candidate(
                conn, version=FIRST, base_model=BASE_VERSION, job_id="job-hotreload", dataset_id=None,
                adapter_uri=None, lineage={}, quantization="Q4_K_M",
                files=[ModelFile("Q4_K_M", gguf.uri, gguf.sha256, 0, "gguf")],
            )
            await promote(conn, FIRST, cause="promoted", actor="test", evaluation_id="eval-hotreload")
        finally:
            await conn.close()
        yield url
    finally:
        drop_database(name)


@pytest.fixture(scope="module")
def runners(runner_infra: RunnerInfra, database: str, session_tmp: Path) -> Iterator[list[ServiceProcess]]:
    procs = []
    for name in ("a", "b"):
        env = {
            **runner_infra.env, "DATABASE__URL": database, "INSTANCE_ID": f"runner-reload-{name}-{uuid.uuid4().hex[:4]}",
            "ENGINE__KIND": "llamacpp", "ENGINE__N_CTX": "1024", "ENGINE__N_THREADS": "1",
            "ENGINE__CACHE_DIR": str(session_tmp / f"model-cache-{name}"), "LOG__JSON_FORMAT": "false",
        }
        procs.append(ServiceProcess("agent_runner", env, session_tmp / "logs" / f"reload-{name}"))
    for proc in procs:
        proc.start(wait=False)
    try:
        for proc in procs:
            proc.wait_ready(timeout=240)
        yield procs
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture(scope="module")
async def db(database: str) -> AsyncIterator[AsyncEngine]:
    """The runners' database (not the session's, which the conftest's `db` reads)."""
    engine = create_async_engine(database)
    yield engine
    await engine.dispose()


def detailed(proc: ServiceProcess) -> dict:
    return httpx.get(f"{proc.url}/health/detailed", timeout=5).json()


def metrics(proc: ServiceProcess) -> str:
    return httpx.get(f"{proc.url}/metrics", timeout=5).text


def deployed(version: str, gguf: Uploaded, *, sha256: str | None = None) -> ModelDeployed:
    return ModelDeployed.create(correlation_id=f"deploy-{version}", model_version=version, gguf_uri=gguf.uri,
                                sha256=sha256 or gguf.sha256, previous_version=FIRST, cause="operator")


async def serving(proc: ServiceProcess, version: str, timeout: float = 180) -> dict:
    def check() -> dict | None:
        body = detailed(proc)
        return body if body["model_version"] == version else None

    return await eventually(lambda: asyncio.to_thread(check), timeout=timeout, what=f"{proc.env['INSTANCE_ID']} "
                                                                                     f"serving {version}")


async def test_every_runner_starts_on_the_registry_production_version_from_s3(runners, gguf):
    for proc in runners:
        body = detailed(proc)
        assert body["model_version"] == FIRST and body["engine"] == "llamacpp", body
        assert body["desired_model_version"] == FIRST and body["reload_pending"] is False
        assert body["last_reload_error"] is None and body["reloads"] == 1
        cached = Path(proc.env["ENGINE__CACHE_DIR"]) / gguf.sha256 / "model-Q4_K_M.gguf"
        assert cached.is_file()  # downloaded and verified into this instance's cache


async def test_a_deployment_reloads_every_runner_and_new_runs_record_the_new_version(runners, gguf, amqp, db):
    await amqp.publish(deployed(SECOND, gguf))
    for proc in runners:
        body = await serving(proc, SECOND)
        assert body["reload_pending"] is False and body["reloads"] == 2 and body["last_reload_s"] > 0
        text = metrics(proc).splitlines()
        assert [line for line in text if line.startswith("agent_runner_serving_model_info{")] == [
            f'agent_runner_serving_model_info{{engine="llamacpp",model_version="{SECOND}"}} 1.0']
        assert 'agent_runner_model_reload_seconds_count{outcome="ok"} 2.0' in text

    await amqp.collector(bind=("agent.run.completed.v1", "interaction.logged.v1", "agent.run.finished.v1"))  # routable
    replies = await amqp.collector()
    request = run_request("Say hello.", reply_to=replies.name, max_steps=1, max_tokens=8, server_tools=False)
    await amqp.publish(request)
    [completed] = await eventually(lambda: replies.typed(request.run_id, "AgentRunCompleted"), timeout=120,
                                   what="the run's completion")
    assert completed["model_version"] == SECOND and completed["engine"] == "llamacpp"
    rows = await fetch_all(db, "SELECT model_version, engine FROM agent_runner.trajectories WHERE run_id = :r",
                           r=request.run_id)
    assert [tuple(r) for r in rows] == [(SECOND, "llamacpp")]


async def test_a_deployment_that_fails_its_checksum_keeps_the_current_model_serving(runners, gguf, amqp):
    await amqp.publish(deployed(BROKEN, gguf, sha256="0" * 64))

    for proc in runners:
        def failed(p=proc) -> dict | None:
            body = detailed(p)
            return body if body["last_reload_error_version"] == BROKEN else None

        body = await eventually(lambda p=proc: asyncio.to_thread(failed, p), timeout=120, what="the failed reload")
        assert body["model_version"] == SECOND and body["desired_model_version"] == BROKEN
        assert body["reload_pending"] is True and "sha256" in body["last_reload_error"]
        assert "agent_runner_model_reload_failures_total 1.0" in metrics(proc)
