"""Operator routes: RBAC, the RetrainRequested message, and the audit trail."""

from __future__ import annotations

import httpx

from contracts import RetrainRequested, deterministic_id


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_an_operator_asks_for_a_retrain_and_the_request_is_published(gateway, new_token, tap):
    events = await tap(RetrainRequested)
    token, subject = await new_token("operator")
    body = {"reason": "accuracy dropped", "dataset": {"max_examples": 500}, "training": {"rank": 8, "epochs": 2}}
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        resp = await client.post("/v1/ops/retrain", json=body, headers=auth(token))
    assert resp.status_code == 202, resp.text
    request_id = resp.json()["request_id"]
    msg, headers = await events.next_matching(lambda b: b.get("request_id") == request_id)
    assert headers["x-message-type"] == "RetrainRequested"
    assert (msg["requested_by"], msg["reason"]) == (subject, "accuracy dropped")
    assert msg["dataset"]["max_examples"] == 500 and msg["training"]["rank"] == 8
    assert msg["envelope"]["message_id"] == deterministic_id("retrain-requested", request_id)


async def test_a_retrain_needs_no_body(gateway, new_token, tap):
    events = await tap(RetrainRequested)
    token, _ = await new_token("admin")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        resp = await client.post("/v1/ops/retrain", headers=auth(token))
    assert resp.status_code == 202, resp.text
    await events.next_matching(lambda b: b.get("request_id") == resp.json()["request_id"])


async def test_a_user_gets_403_and_the_attempt_is_audited(gateway, new_token):
    user, user_subject = await new_token("user")
    admin, admin_subject = await new_token("admin")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        resp = await client.post("/v1/ops/retrain", json={"reason": "let me"}, headers=auth(user))
        assert resp.status_code == 403 and resp.json()["required_role"] == "operator"
        resp = await client.post("/v1/ops/retrain", json={}, headers=auth("forged.token.here"))
        assert resp.status_code == 401
        entries = (await client.get("/v1/ops/audit?limit=50", headers=auth(admin))).json()
    denied = [e for e in entries if e["subject"] == user_subject]
    assert denied and denied[0]["action"] == "ops.retrain" and denied[0]["outcome"] == "denied"
    assert denied[0]["role"] == "user" and denied[0]["client_ip"] == "127.0.0.1"
    assert any(e["outcome"] == "unauthenticated" and e["action"] == "ops.retrain" for e in entries)
    assert entries[0]["action"] == "ops.audit.read" and entries[0]["subject"] == admin_subject  # newest first


async def test_a_retrain_is_audited_with_its_request_id(gateway, new_token, tap):
    await tap(RetrainRequested)  # something must consume it: the message is published as mandatory
    operator, subject = await new_token("operator")
    admin, _ = await new_token("admin")
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        request_id = (await client.post("/v1/ops/retrain", json={"reason": "r"}, headers=auth(operator))).json()[
            "request_id"]
        entries = (await client.get("/v1/ops/audit", headers=auth(admin))).json()
    [entry] = [e for e in entries if e["target"] == request_id]
    assert (entry["subject"], entry["role"], entry["action"], entry["outcome"]) == (
        subject, "operator", "ops.retrain", "ok")
    assert entry["details"] == {"reason": "r"}
