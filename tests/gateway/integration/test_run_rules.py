"""The run rules beyond the request's shape, against the real gateway process: a tool schema
that is not JSON Schema, a tool_choice naming no offered tool, GroupThink samples over the cap.
Each is a 422 naming the field, and nothing reaches the run index or the runner."""

from __future__ import annotations

import asyncio

import httpx
import sqlalchemy as sa

from .test_stream import stream, ws_url

WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused_requests(marker: str) -> dict[str, tuple[dict, list, str]]:
    """name → (request, the loc of the 422, a word its message must contain)."""
    broken = {"type": "function", "function": {"name": "broken", "parameters": {"type": "object", "required": "city"}}}
    return {
        "schema": ({"instruction": f"{marker} schema", "tools": [WEATHER, broken]},
                   ["body", "tools", 1, "function", "parameters"], "is not of type 'array'"),
        "tool_choice": ({"instruction": f"{marker} choice", "tools": [WEATHER],
                         "options": {"tool_choice": {"type": "function", "function": {"name": "calculator"}}}},
                        ["body", "options", "tool_choice"], "list it in `tools`"),
        "groupthink": ({"instruction": f"{marker} groupthink", "options": {"groupthink": {"samples": 9}}},
                       ["body", "options", "groupthink", "samples"], "at most 8"),
    }


async def test_rule_breaking_runs_are_422_naming_the_field_and_nothing_is_stored_or_sent(
        gateway, new_token, runner, db):
    token, subject = await new_token()
    marker = f"rules-{subject}"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        for name, (request, loc, word) in refused_requests(marker).items():
            for path in ("/v1/runs", "/v1/runs?wait=true"):
                resp = await client.post(path, json=request, headers=auth(token))
                assert resp.status_code == 422, (name, resp.text)
                detail = resp.json()["detail"][0]
                assert detail["loc"] == loc and word in detail["msg"], (name, detail)
        # The same rules pass a request that keeps them: a named choice of a listed tool, the cap itself.
        ok = {"instruction": f"{marker} ok", "tools": [WEATHER],
              "options": {"tool_choice": {"type": "function", "function": {"name": "weather"}},
                          "groupthink": {"samples": 8}}}
        resp = await client.post("/v1/runs?wait=true", json=ok, headers=auth(token))
        assert resp.status_code == 200, resp.text
    async with asyncio.timeout(10):  # the runner's queue is FIFO: the refused ones would be there before it
        while not any(m.messages[-1].content == f"{marker} ok" for m in runner.requests.values()):
            await asyncio.sleep(0.05)
    sent = [m.messages[-1].content for m in runner.requests.values() if marker in (m.messages[-1].content or "")]
    assert sent == [f"{marker} ok"]
    async with db.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT count(*) FROM gateway.runs WHERE subject = :s"),
                                     {"s": subject})).scalar_one()
    assert stored == 1


async def test_the_stream_refuses_them_with_4422_naming_the_field(gateway, new_token, runner):
    token, subject = await new_token()
    for name, (request, loc, word) in refused_requests(f"ws-{subject}").items():
        events, code = await stream(ws_url(gateway, token), request)
        assert code == 4422, (name, events)
        assert events[0]["type"] == "error" and events[0]["status"] == 422
        assert events[0]["detail"][0]["loc"] == loc and word in events[0]["detail"][0]["msg"], (name, events)
