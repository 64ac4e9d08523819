"""A real agent framework from PyPI (pydantic-ai, on the official openai SDK) runs a tool loop against
the gateway with nothing changed but its base URL: the real gateway, runner, model and log-miner.
Its two completions (the call, then the answer after the tool's result) are one conversation in
the log-miner, mined once from the last run (the mining itself: tests/log_miner/integration/
test_interaction_batch.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass
class CallFirst(AbstractCapability):
    """The app's own choice: force its tool on the first step, text after (pydantic-ai's
    documented per-step tool_choice). The base model, untrained, rarely calls on its own."""

    tool: str

    def get_model_settings(self):
        return lambda ctx: {"tool_choice": [self.tool]} if ctx.run_step <= 1 else {"tool_choice": "none"}


def test_a_pydantic_ai_agent_runs_its_tool_loop_as_one_conversation(stack, api_key, db) -> None:
    model = OpenAIChatModel("production", provider=OpenAIProvider(base_url=f"{stack.gateway_url}/v1",
                                                                  api_key=api_key("user")))
    agent = Agent(model, model_settings={"max_tokens": 48, "temperature": 0}, capabilities=[CallFirst("get_weather")])
    cities: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        cities.append(city)
        return f"21 C and clear in {city}"

    result = agent.run_sync("What is the weather in Lisbon?")
    assert cities and isinstance(result.output, str)
    calls = [p for m in result.all_messages() for p in m.parts if isinstance(p, ToolCallPart)]
    assert [c.tool_name for c in calls] == ["get_weather"]
    responses = [m for m in result.all_messages() if getattr(m, "provider_response_id", None)]
    first, last = (m.provider_response_id for m in (responses[0], responses[-1]))
    assert first.startswith("chatcmpl-") and first != last
    runs = [first.removeprefix("chatcmpl-"), last.removeprefix("chatcmpl-")]

    def linked():
        rows = db.execute("SELECT run_id, continues, conversation_id FROM log_miner.interactions"
                          " WHERE run_id = ANY(%s)", (runs,)).fetchall()
        return {r[0]: r[1:] for r in rows} if len(rows) == 2 else None

    rows = wait_until(linked, timeout=60, what="both completions in the log-miner")  # linked by their messages
    assert rows == {runs[0]: (None, runs[0]), runs[1]: (runs[0], runs[0])}
    [(messages,)] = db.execute("SELECT messages FROM log_miner.interactions WHERE run_id = %s", (runs[1],)).fetchall()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[2]["content"] == "21 C and clear in Lisbon"  # the whole conversation, the tool's result in it


def test_completions_sent_with_one_session_header_are_one_conversation(stack, api_key, db) -> None:
    import openai

    session = f"sess-{__import__('uuid').uuid4().hex[:8]}"
    client = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=api_key("user"), max_retries=0, timeout=120,
                           default_headers={"X-Session-Id": session})
    ids = [client.chat.completions.create(model="production", max_tokens=8,
                                          messages=[{"role": "user", "content": text}]).id.removeprefix("chatcmpl-")
           for text in ("Hello.", "A question unrelated to the first.")]

    def linked():
        rows = db.execute("SELECT run_id, continues, conversation_id, session_id FROM log_miner.interactions"
                          " WHERE run_id = ANY(%s)", (ids,)).fetchall()
        return {r[0]: r[1:] for r in rows} if len(rows) == 2 else None

    rows = wait_until(linked, timeout=60, what="both completions in the log-miner")
    assert rows == {ids[0]: (None, ids[0], session), ids[1]: (ids[0], ids[0], session)}
