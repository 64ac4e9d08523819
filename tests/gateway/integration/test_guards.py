"""Rate limits, body size, validation messages, health and metrics."""

from __future__ import annotations

import httpx
from sqlalchemy import text as sql


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_runs_beyond_the_per_subject_limit_get_429_with_retry_after(gateway, new_token, runner):
    from .conftest import RUNS_LIMIT

    token, _ = await new_token()
    other, _ = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        statuses = [
            (await client.post("/v1/runs", json={"instruction": "x"}, headers=auth(token))).status_code
            for _ in range(RUNS_LIMIT)
        ]
        assert statuses == [202] * RUNS_LIMIT
        resp = await client.post("/v1/runs", json={"instruction": "x"}, headers=auth(token))
        assert resp.status_code == 429, resp.text
        assert int(resp.headers["retry-after"]) >= 1 and resp.json()["limit"] == "runs"
        # the limit is per subject: someone else is unaffected
        assert (await client.post("/v1/runs", json={"instruction": "x"}, headers=auth(other))).status_code == 202
        assert 'gateway_rate_limited_total{limit="runs"}' in (await client.get("/metrics")).text


async def test_token_requests_beyond_the_per_ip_limit_get_429(gateways, db):
    from gateway.service.api_keys import create_api_key

    _, b = gateways  # replica B allows 3 token requests per minute per client IP
    key = await create_api_key(db, "user", "limit-test")
    async with httpx.AsyncClient(base_url=b.url) as client:
        statuses = [(await client.post("/v1/auth/token", headers={"X-API-Key": key})).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        resp = await client.post("/v1/auth/token", headers={"X-API-Key": key})
        assert 'gateway_rate_limited_total{limit="token"} 2.0' in (await client.get("/metrics")).text
    assert "retry-after" in resp.headers


async def test_a_body_over_the_limit_gets_413(gateway, new_token):
    token, _ = await new_token()
    big = {"instruction": "x" * (1024 * 1024 + 1)}
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        resp = await client.post("/v1/runs", json=big, headers=auth(token))
        assert resp.status_code == 413, resp.text

        async def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(40):
                yield b"x" * 32768

        resp = await client.post("/v1/runs", content=chunks(), headers=auth(token))
        assert resp.status_code == 413, resp.text


async def test_validation_errors_are_422_and_name_the_field(gateway, new_token):
    token, _ = await new_token()
    cases = {
        "neither": ({}, ["body", "messages"]),
        "both": ({"instruction": "a", "messages": [{"role": "user", "content": "b"}]}, ["body", "messages"]),
        "empty instruction": ({"instruction": ""}, ["body", "instruction"]),
        "bad option": ({"instruction": "a", "options": {"max_steps": 0}}, ["body", "options", "max_steps"]),
        "unknown field": ({"instruction": "a", "temperature": 2}, ["body", "temperature"]),
        "bad role": ({"messages": [{"role": "robot", "content": "b"}]}, ["body", "messages", 0, "role"]),
        "bad tool": ({"instruction": "a", "tools": [{"type": "function", "function": {"name": "bad name!"}}]},
                     ["body", "tools", 0, "function", "name"]),
    }
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for name, (body, loc) in cases.items():
            resp = await client.post("/v1/runs", json=body, headers=auth(token))
            assert resp.status_code == 422, (name, resp.text)
            assert resp.json()["detail"][0]["loc"] == loc, (name, resp.json())
        resp = await client.post("/v1/runs?wait=true&timeout=-1", json={"instruction": "a"}, headers=auth(token))
        assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["query", "timeout"]


async def test_text_storage_cannot_hold_is_a_422_naming_where_it_is_never_a_500(gateway, new_token, db):
    """A NUL or a lone surrogate anywhere (body, query, path) and JSON nested too deep: refused
    before anything is stored or published (schemathesis found the NUL as a 500)."""
    token, _ = await new_token()
    nul_in_content = b'{"messages": [{"role": "user", "content": "hi\\u0000"}], "metadata": {"a": "b"}}'
    cases = {
        "nul in a message": (nul_in_content, ["body", "messages", 0, "content"], "NUL"),
        "nul in a metadata key": (b'{"instruction": "a", "metadata": {"k\\u0000": "v"}}',
                                  ["body", "metadata", "k\u0000"], "NUL"),
        "lone surrogate": (b'{"instruction": "\\ud83d alone"}', ["body", "instruction"], "surrogate"),
        "nested too deep": (b'{"instruction": "a", "metadata": ' + b"[" * 70 + b"]" * 70 + b"}", ["body"], "deep"),
    }
    async def runs() -> int:
        async with db.connect() as conn:
            return await conn.scalar(sql("SELECT count(*) FROM gateway.runs"))

    before = await runs()
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for name, (raw, loc, word) in cases.items():
            resp = await client.post("/v1/runs", content=raw,
                                     headers={**auth(token), "Content-Type": "application/json"})
            assert resp.status_code == 422, (name, resp.text)
            detail = resp.json()["detail"][0]
            assert detail["loc"] == loc and word in detail["msg"], (name, detail)
        resp = await client.get("/v1/runs/abc%00def", headers=auth(token))
        assert resp.status_code == 422 and resp.json()["detail"][0]["loc"][0] == "path", resp.text
        resp = await client.get("/v1/runs?metadata=k:%00", headers=auth(token))
        assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["query", "metadata"], resp.text
        good = await client.post("/v1/runs", json={"instruction": "an emoji \U0001F600 is fine"}, headers=auth(token))
        assert good.status_code == 202, good.text
    assert await runs() == before + 1  # only the good one


async def test_ready_checks_every_dependency(gateway):
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        live = await client.get("/health")
        ready = await client.get("/health/ready")
        detailed = await client.get("/health/detailed")
    assert live.json() == {"status": "ok", "service": "gateway"}
    assert ready.status_code == 200
    doc = ready.json()
    assert doc["status"] == "ok"
    assert set(doc["checks"]) == {"broker", "postgres", "redis", "s3"}
    assert all(check["ok"] and check["ms"] >= 0 for check in doc["checks"].values())
    details = detailed.json()
    assert details["instance_id"].startswith("gw-a-") and details["reply_queue"].startswith("gateway.replies.gw-a-")


async def test_metrics_cover_http_runs_and_messages(gateway, new_token, runner):
    token, _ = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        assert (await client.post("/v1/runs?wait=true", json={"instruction": "m"}, headers=auth(token))).status_code == 200
        text = (await client.get("/metrics")).text
    for needle in (
        'gateway_http_requests_total{method="POST",route="/v1/runs",status="200"}',
        'gateway_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/runs"}',
        'gateway_runs_submitted_total{mode="wait"}',
        'gateway_run_duration_seconds_count{status="completed"}',
        "gateway_websockets_active",
        "gateway_reply_steps_forwarded_total",
        'gateway_run_index_batch_size_count{kind="create"}',
        'gateway_run_index_batch_size_count{kind="finish"}',
        "faststream_received_messages_total",
    ):
        assert needle in text, needle
