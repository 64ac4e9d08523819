"""Model routes over HTTP against a gateway process: RBAC, 404/409 from the registry's read model,
202 with the command really published on the broker, the audit trail, and ?wait=true while the
test plays the exporter (the registry's writer) with `modelregistry.write`.

The registry's aliases are global to a database, so this module runs its own gateway on a
database of its own (migrated like the session's); the broker vhost is the gateway tests' one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from contracts import ModelPromoteRequested, ModelRollbackRequested, deterministic_id
from gateway.service.api_keys import create_api_key
from modelregistry import BASE_VERSION, GateEvaluation, ModelFile
from modelregistry.write import promote, record_evaluation, register_candidate
from servicekit.db import asyncpg_dsn
from tests.harness import IsolatedEnv, ServiceProcess, create_database, drop_database, migrate
from tests.registry.state import insert_version, reset_registry


@pytest.fixture(scope="module")
def models_db(infra: IsolatedEnv) -> Iterator[str]:
    database = f"{infra.database}_models_{uuid.uuid4().hex[:6]}"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    create_database(database)
    try:
        migrate(url)
        yield url
    finally:
        drop_database(database)


@pytest.fixture(scope="module")
def gateway(gateway_env, models_db: str, session_tmp: Path) -> Iterator[ServiceProcess]:
    env = {**gateway_env.env, "DATABASE__URL": models_db, "INSTANCE_ID": f"gw-models-{uuid.uuid4().hex[:6]}"}
    proc = ServiceProcess("gateway", env, session_tmp / "logs" / "models-gateway")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
async def db(models_db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(models_db)
    yield engine
    await engine.dispose()


@pytest.fixture
async def registry(models_db: str) -> AsyncIterator[asyncpg.Connection]:
    """The registry, back to the fresh-install state (the bundled base is production)."""
    conn = await asyncpg.connect(asyncpg_dsn(models_db))
    try:
        await reset_registry(conn)
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def token(gateway: ServiceProcess, db: AsyncEngine):
    async def make(role: str) -> tuple[str, str]:
        subject = f"{role}-{uuid.uuid4().hex[:8]}"
        key = await create_api_key(db, role, subject)
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            resp = await client.post("/v1/auth/token", headers={"X-API-Key": key})
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"], subject

    return make


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def candidate(conn: asyncpg.Connection, version: str, score: float | None = None) -> None:
    """An exported version as the exporter registers it, evaluated by the gate: with a `score`,
    the verdict recorded as the exporter files it (primary suite `tools`, after `json` in the
    stored document's key order)."""
    files = [ModelFile(q, f"s3://models/{version}/{q}.gguf", f"{i:064x}", 1000 + i, "gguf")
             for i, q in enumerate(("Q4_K_M", "Q8_0"), start=1)]
    await register_candidate(conn, version=version, base_model=BASE_VERSION, files=files, job_id=f"job-{version}",
                             dataset_id="ds-7", adapter_uri=f"s3://adapters/{version}",
                             lineage={"dataset_id": "ds-7", "source_run_ids": ["run-1", "run-2"]},
                             metrics={"parity": {"ok": True}},
                             quantization="Q4_K_M")
    await conn.execute("UPDATE registry.model_versions SET evaluation_id = $2 WHERE version = $1", version,
                       f"eval-{version}")
    if score is not None:
        await record_evaluation(conn, version, GateEvaluation(
            evaluation_id=f"eval-{version}", passed=True, quantization="Q4_K_M", primary_suite="tools",
            scores={"json": 1.0, "tools": score}))


async def audit_rows(db: AsyncEngine, subject: str) -> list[dict]:
    """The caller's audit entries of the model routes, oldest first."""
    import sqlalchemy as sa

    async with db.connect() as conn:
        rows = await conn.execute(sa.text("SELECT action, outcome, target, details FROM gateway.audit_log "
                                          "WHERE subject = :s AND action LIKE 'models.%' ORDER BY id"), {"s": subject})
        return [dict(r._mapping) for r in rows]


async def test_an_operator_lists_versions_with_aliases_status_lineage_and_scores(gateway, token, registry):
    await candidate(registry, "gemma3-270m-list1", score=0.8)
    operator, _ = await token("operator")
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth(operator)) as client:
        listing = await client.get("/v1/registry/models")
        production = await client.get("/v1/registry/models", params={"alias": "production"})
        one = await client.get("/v1/registry/models/gemma3-270m-list1")
        base = await client.get(f"/v1/registry/models/{BASE_VERSION}")
        bad_alias = await client.get("/v1/registry/models", params={"alias": "staging"})
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["aliases"] == {"production": BASE_VERSION, "candidate": "gemma3-270m-list1"}
    [new] = [v for v in body["versions"] if v["version"] == "gemma3-270m-list1"]
    assert (new["status"], new["aliases"], new["quantization"], new["primary_score"]) == (
        "candidate", ["candidate"], "Q4_K_M", 0.8)
    assert new["metrics"]["primary_suite"] == "tools" and new["metrics"]["scores"] == {"json": 1.0, "tools": 0.8}
    assert new["lineage"]["source_run_ids"] == ["run-1", "run-2"] and new["evaluation_id"] == "eval-gemma3-270m-list1"
    assert {f["quantization"] for f in new["files"]} == {"Q4_K_M", "Q8_0"}
    assert [v["version"] for v in production.json()["versions"]] == [BASE_VERSION]
    assert one.status_code == 200 and one.json()["job_id"] == "job-gemma3-270m-list1"
    assert base.json()["aliases"] == ["production"] and base.json()["files"][0]["uri"] == "bundled:"
    assert bad_alias.status_code == 422


async def test_a_user_gets_403_on_every_model_route_and_each_refusal_is_audited(gateway, token, db, registry):
    user, subject = await token("user")
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth(user)) as client:
        answers = [
            await client.get("/v1/registry/models"),
            await client.get(f"/v1/registry/models/{BASE_VERSION}"),
            await client.post(f"/v1/registry/models/{BASE_VERSION}/promote", json={"reason": "mine"}),
            await client.post("/v1/registry/models/rollback"),
        ]
    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert all(a.json()["required_role"] == "operator" for a in answers)
    rows = await audit_rows(db, subject)
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("models.read", "denied"), ("models.read", "denied"), ("models.promote", "denied"),
        ("models.rollback", "denied")]


async def test_an_unknown_version_is_404_and_nothing_is_published(gateway, token, db, registry, tap):
    events = await tap(ModelPromoteRequested)
    operator, subject = await token("operator")
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth(operator)) as client:
        read = await client.get("/v1/registry/models/no-such-version")
        promoted = await client.post("/v1/registry/models/no-such-version/promote")
    assert read.status_code == 404 and promoted.status_code == 404
    assert "no-such-version" in promoted.json()["detail"]
    [row] = await audit_rows(db, subject)
    assert (row["action"], row["outcome"], row["target"]) == ("models.promote", "error", "no-such-version")
    with pytest.raises(TimeoutError):
        await events.next_matching(lambda b: b.get("model_version") == "no-such-version", timeout=1.0)


async def test_a_version_the_exporter_would_refuse_is_409_with_the_reason(gateway, token, registry):
    await insert_version(registry, "gemma3-270m-rejected", status="rejected", evaluation_id="e1")
    await candidate(registry, "gemma3-270m-q8only")
    operator, _ = await token("operator")
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth(operator)) as client:
        rejected = await client.post("/v1/registry/models/gemma3-270m-rejected/promote")
        no_quant = await client.post("/v1/registry/models/gemma3-270m-q8only/promote", json={"quantization": "Q5_K_M"})
        unknown_field = await client.post("/v1/registry/models/gemma3-270m-q8only/promote", json={"quant": "Q8_0"})
    assert rejected.status_code == 409 and "rejected by the gate" in rejected.json()["detail"]
    assert no_quant.status_code == 409 and "Q5_K_M" in no_quant.json()["detail"]
    assert unknown_field.status_code == 422


async def test_a_rollback_without_a_previous_version_is_409_with_a_reason(gateway, token, db, registry):
    operator, subject = await token("operator")
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth(operator)) as client:
        resp = await client.post("/v1/registry/models/rollback", json={"reason": "just in case"})
    assert resp.status_code == 409
    assert "nothing to roll back to" in resp.json()["detail"]
    [row] = await audit_rows(db, subject)
    assert (row["action"], row["outcome"], row["target"]) == ("models.rollback", "error", BASE_VERSION)
    assert row["details"]["reason"] == "just in case"


async def test_a_promotion_is_audited_published_on_the_broker_and_answered_202(gateway, token, db, registry, tap):
    events = await tap(ModelPromoteRequested)
    await candidate(registry, "gemma3-270m-p1")
    operator, subject = await token("operator")
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth(operator)) as client:
        resp = await client.post("/v1/registry/models/gemma3-270m-p1/promote",
                                 json={"reason": "beats production", "quantization": "Q8_0"})
    assert resp.status_code == 202, resp.text
    answer = resp.json()
    assert (answer["status"], answer["action"], answer["model_version"], answer["production"]) == (
        "accepted", "promote", "gemma3-270m-p1", BASE_VERSION)
    msg, headers = await events.next_matching(lambda b: b.get("request_id") == answer["request_id"])
    assert headers["x-message-type"] == "ModelPromoteRequested"
    assert (msg["model_version"], msg["requested_by"], msg["quantization"], msg["reason"]) == (
        "gemma3-270m-p1", subject, "Q8_0", "beats production")
    assert msg["envelope"]["message_id"] == deterministic_id("model-promote-requested", answer["request_id"])
    [row] = await audit_rows(db, subject)
    assert (row["action"], row["outcome"], row["target"]) == ("models.promote", "ok", "gemma3-270m-p1")
    assert row["details"]["request_id"] == answer["request_id"] and row["details"]["production"] == BASE_VERSION


async def test_a_rollback_is_published_and_names_the_previous_version(gateway, token, registry, tap):
    events = await tap(ModelRollbackRequested)
    await candidate(registry, "gemma3-270m-r1")
    await promote(registry, "gemma3-270m-r1", cause="promoted", actor="gate")
    operator, subject = await token("operator")
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth(operator)) as client:
        resp = await client.post("/v1/registry/models/rollback", json={"reason": "r1 regressed"})
    assert resp.status_code == 202, resp.text
    answer = resp.json()
    assert (answer["model_version"], answer["production"]) == (BASE_VERSION, "gemma3-270m-r1")
    msg, headers = await events.next_matching(lambda b: b.get("request_id") == answer["request_id"])
    assert headers["x-message-type"] == "ModelRollbackRequested"
    assert (msg["requested_by"], msg["reason"]) == (subject, "r1 regressed")


async def test_waiting_answers_200_once_the_exporter_has_moved_production(gateway, token, registry, tap):
    events = await tap(ModelPromoteRequested)
    await candidate(registry, "gemma3-270m-w1")
    operator, _ = await token("operator")

    async def exporter() -> None:
        msg, _ = await events.next_matching(lambda b: b.get("model_version") == "gemma3-270m-w1")
        await promote(registry, msg["model_version"], cause="operator", actor=msg["requested_by"])

    playing = asyncio.create_task(exporter())
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth(operator), timeout=30) as client:
        resp = await client.post("/v1/registry/models/gemma3-270m-w1/promote", params={"wait": "true", "wait_s": "20"})
    await playing
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["status"] == "done" and answer["production"] == "gemma3-270m-w1"
    assert answer["aliases"] == {"production": "gemma3-270m-w1", "previous": BASE_VERSION}


async def test_waiting_gives_up_with_202_pending_when_production_does_not_move(gateway, token, registry, tap):
    await tap(ModelPromoteRequested)  # bound, so the command is routable; nobody acts on it
    await candidate(registry, "gemma3-270m-w2")
    operator, _ = await token("operator")
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth(operator)) as client:
        resp = await client.post("/v1/registry/models/gemma3-270m-w2/promote", params={"wait": "true", "wait_s": "0.5"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "pending" and resp.json()["production"] == BASE_VERSION
