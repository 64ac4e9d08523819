"""Runs over HTTP through real RabbitMQ and Postgres, with the test runner on the other side."""

from __future__ import annotations

import asyncio

import httpx
import sqlalchemy as sa

from contracts import FeedbackSubmitted, deterministic_id

from .conftest import FakeRunner


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def poll_run(client: httpx.AsyncClient, token: str, run_id: str, timeout: float = 10.0) -> dict:
    """GET the run until it is no longer queued."""
    async with asyncio.timeout(timeout):
        while True:
            resp = await client.get(f"/v1/runs/{run_id}", headers=auth(token))
            assert resp.status_code == 200, resp.text
            if resp.json()["status"] != "queued":
                return resp.json()
            await asyncio.sleep(0.05)


async def test_a_run_with_wait_returns_the_runners_answer(gateway, new_token, runner: FakeRunner):
    token, subject = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        resp = await client.post("/v1/runs?wait=true&timeout=10", json={"instruction": "6*7"}, headers=auth(token))
    assert resp.status_code == 200, resp.text
    run = resp.json()
    assert run["status"] == "completed" and run["outcome"] == "answered"
    assert run["answer"] == "echo: 6*7"
    assert run["usage"]["engine_ms"] == 1.5
    assert (run["model_version"], run["engine"]) == ("m-test", "scripted")
    assert run["steps"][0]["kind"] == "final" and run["completed_at"]
    request = runner.requests[run["run_id"]]
    assert request.principal.subject == subject and request.reply_to.startswith("gateway.replies.gw-a-")
    assert request.envelope.message_id == deterministic_id("run-requested", run["run_id"])
    assert request.options.stream is False
    timing = resp.headers["server-timing"]  # the gateway's own time, for clients and benchmarks
    assert timing.startswith("app;dur=") and 0 < float(timing.removeprefix("app;dur=")) < resp.elapsed.total_seconds() * 1000


async def test_the_waited_result_is_already_in_the_run_index(gateway, new_token, runner):
    token, _ = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        run = (await client.post("/v1/runs?wait=true", json={"instruction": "x"}, headers=auth(token))).json()
        stored = (await client.get(f"/v1/runs/{run['run_id']}", headers=auth(token))).json()
    assert stored["status"] == "completed" and stored["answer"] == run["answer"]


async def test_a_run_without_wait_is_accepted_then_completes(gateway, new_token, runner, db):
    token, subject = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        resp = await client.post("/v1/runs", json={"messages": [{"role": "user", "content": "hi"}]},
                                 headers=auth(token))
        assert resp.status_code == 202, resp.text
        accepted = resp.json()
        assert accepted["status"] == "queued"
        assert accepted["links"]["self"] == f"/v1/runs/{accepted['run_id']}"
        run = await poll_run(client, token, accepted["run_id"])
    assert run["status"] == "completed" and run["answer"] == "echo: hi"
    async with db.connect() as conn:
        row = (await conn.execute(
            sa.text("SELECT subject, request->'messages'->0->>'content' FROM gateway.runs WHERE run_id = :id"),
            {"id": accepted["run_id"]},
        )).one()
    assert tuple(row) == (subject, "hi")
    # staged in the outbox with the run, published, then marked (in a batch, shortly after)
    async with asyncio.timeout(5):
        while True:
            async with db.connect() as conn:
                marked = (await conn.execute(
                    sa.text("SELECT published_at IS NOT NULL FROM gateway.outbox WHERE message_id = :mid"),
                    {"mid": deterministic_id("run-requested", accepted["run_id"])},
                )).scalar_one()
            if marked:
                break
            await asyncio.sleep(0.05)


async def test_a_wait_that_times_out_answers_202_with_the_queued_run(gateway, new_token, runner):
    token, _ = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        resp = await client.post("/v1/runs?wait=true&timeout=0.3", json={"instruction": "silent"},
                                 headers=auth(token))
        assert resp.status_code == 202, resp.text
        run_id = resp.json()["run_id"]
        assert (await client.get(f"/v1/runs/{run_id}", headers=auth(token))).json()["status"] == "queued"


async def test_a_failed_run_reports_its_error(gateway, new_token, runner):
    token, _ = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        resp = await client.post("/v1/runs?wait=true", json={"instruction": "fail"}, headers=auth(token))
    assert resp.status_code == 200, resp.text
    run = resp.json()
    assert run["status"] == "failed"
    assert run["error"] == {"code": "engine_error", "reason": "the engine fell over"}


async def test_an_outcome_that_only_reaches_the_events_exchange_still_completes_the_run(gateway, new_token, runner):
    """The durable work queue keeps the index right when the reply is lost (e.g. replica died)."""
    token, _ = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        resp = await client.post("/v1/runs", json={"instruction": "events-only"}, headers=auth(token))
        run = await poll_run(client, token, resp.json()["run_id"])
    assert run["status"] == "completed" and run["answer"] == "echo: events-only"


async def test_users_see_only_their_own_runs_and_operators_see_all(gateway, new_token, runner):
    alice, _ = await new_token()
    bob, _ = await new_token()
    operator, _ = await new_token("operator")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        run_id = (await client.post("/v1/runs?wait=true", json={"instruction": "x"}, headers=auth(alice))).json()[
            "run_id"]
        assert (await client.get(f"/v1/runs/{run_id}", headers=auth(alice))).status_code == 200
        assert (await client.get(f"/v1/runs/{run_id}", headers=auth(bob))).status_code == 404
        assert (await client.get(f"/v1/runs/{run_id}", headers=auth(operator))).status_code == 200
        assert (await client.get("/v1/runs/no-such-run", headers=auth(alice))).status_code == 404


async def test_feedback_is_stored_and_published(gateway, new_token, runner, db, tap):
    events = await tap(FeedbackSubmitted)
    token, subject = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        run_id = (await client.post("/v1/runs?wait=true", json={"instruction": "2+2"}, headers=auth(token))).json()[
            "run_id"]
        resp = await client.post(
            f"/v1/runs/{run_id}/feedback",
            json={"rating": -1, "corrected_answer": "4", "comment": "wrong",
                  "corrected_tool_calls": [{"name": "calculator", "arguments": {"expression": "2+2"}}]},
            headers=auth(token),
        )
    assert resp.status_code == 201, resp.text
    feedback_id = resp.json()["feedback_id"]
    async with db.connect() as conn:
        row = (await conn.execute(
            sa.text("SELECT run_id, subject, rating, corrected_answer, comment, corrected_tool_calls"
                    " FROM gateway.feedback WHERE feedback_id = :id"),
            {"id": feedback_id},
        )).one()
    assert tuple(row[:5]) == (run_id, subject, -1, "4", "wrong")
    assert row[5][0]["name"] == "calculator"
    body, headers = await events.next_matching(lambda b: b.get("feedback_id") == feedback_id)
    assert headers["x-message-type"] == "FeedbackSubmitted"
    assert (body["run_id"], body["rating"], body["submitted_by"]) == (run_id, -1, subject)
    assert body["envelope"]["message_id"] == deterministic_id("feedback-submitted", feedback_id)


async def test_feedback_on_an_unfinished_run_is_409_and_on_an_unknown_run_404(gateway, new_token, runner):
    token, _ = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        run_id = (await client.post("/v1/runs", json={"instruction": "silent"}, headers=auth(token))).json()["run_id"]
        resp = await client.post(f"/v1/runs/{run_id}/feedback", json={"rating": 1}, headers=auth(token))
        assert resp.status_code == 409, resp.text
        resp = await client.post("/v1/runs/nope/feedback", json={"rating": 1}, headers=auth(token))
        assert resp.status_code == 404, resp.text
        resp = await client.post(f"/v1/runs/{run_id}/feedback", json={"rating": 5}, headers=auth(token))
        assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "rating"]


async def test_concurrent_waits_each_get_their_own_answer(gateway, new_token, runner):
    token, _ = await new_token()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        async def one(i: int) -> tuple[int, dict]:
            resp = await client.post("/v1/runs?wait=true", json={"instruction": f"n{i}"}, headers=auth(token))
            assert resp.status_code == 200, resp.text
            return i, resp.json()

        results = await asyncio.gather(*(one(i) for i in range(20)))
    assert all(run["answer"] == f"echo: n{i}" for i, run in results)
