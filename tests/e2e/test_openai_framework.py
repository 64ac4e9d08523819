"""A real agent framework from PyPI (pydantic-ai, on the official openai SDK) runs a tool loop against
the gateway with nothing changed but its base URL: the real gateway, runner, model and log-miner.
Its two completions (the call, then the answer after the tool's result) are one conversation in
the log-miner, mined once from the last run (the mining itself: tests/log_miner/integration/
test_interaction_batch.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from log_miner.service.build_dataset import dataset_id_for, job_id_for
from servicekit.artifacts import ArtifactStore
from tests.e2e.conftest import with_settings
from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass
class CallFirst(AbstractCapability):
    """The app's own choice: force its tool on the first step, text after (pydantic-ai's
    documented per-step tool_choice). The base model, untrained, rarely calls on its own."""

    tool: str

    def get_model_settings(self):
        return lambda ctx: {"tool_choice": [self.tool]} if ctx.run_step <= 1 else {"tool_choice": "none"}


@dataclass(frozen=True)
class Conversation:
    runs: list[str]  # the run ids of its completions, in order
    started_at: str  # ISO, before its first completion


# One quant exported and gated (the loop's setting; the ladder is the exporter's own tests' business).
ONE_QUANT = {"exporter": {"EXPORT__QUANTS": '["Q4_K_M"]', "EXPORT__UPLOAD_F16": "false"}}


@pytest.fixture(scope="module")
def conversation(stack, api_key) -> Conversation:
    """A pydantic-ai agent's tool loop against the gateway: only its base URL points at us."""
    started_at = datetime.now(UTC).isoformat()
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
    return Conversation([first.removeprefix("chatcmpl-"), last.removeprefix("chatcmpl-")], started_at)


def test_a_pydantic_ai_agent_runs_its_tool_loop_as_one_conversation(conversation, db) -> None:
    runs = conversation.runs

    def linked():
        rows = db.execute("SELECT run_id, continues, conversation_id FROM log_miner.interactions"
                          " WHERE run_id = ANY(%s)", (runs,)).fetchall()
        return {r[0]: r[1:] for r in rows} if len(rows) == 2 else None

    rows = wait_until(linked, timeout=60, what="both completions in the log-miner")  # linked by their messages
    assert rows == {runs[0]: (None, runs[0]), runs[1]: (runs[0], runs[0])}
    [(messages,)] = db.execute("SELECT messages FROM log_miner.interactions WHERE run_id = %s", (runs[1],)).fetchall()
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[2]["content"] == "21 C and clear in Lisbon"  # the whole conversation, the tool's result in it


def test_after_a_retrain_the_conversation_is_one_example_of_its_dataset(conversation, stack, infra, token, db) -> None:
    """An operator's retrain over the runs since the conversation began; one training step and one
    quant keep it short. The dataset it builds holds the conversation once, as one multi-turn example."""
    with_settings(stack, ONE_QUANT)
    wait_until(lambda: db.execute("SELECT 1 FROM log_miner.interactions WHERE run_id = %s AND conversation_id"
                                  " IS NOT NULL", (conversation.runs[-1],)).fetchone(), timeout=60,
               what="the conversation linked")
    body = {"reason": "e2e: a framework's conversation", "training": {"max_steps": 1, "warmup_steps": 0},
            "dataset": {"sources": ["mined"], "since": conversation.started_at, "val_fraction": 0.0}}
    resp = httpx.post(f"{stack.gateway_url}/v1/ops/retrain", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {token('operator')}"})
    assert resp.status_code == 202, resp.text
    dataset_id = dataset_id_for(resp.json()["request_id"])
    row = wait_until(lambda: db.execute("SELECT train_uri, source_run_ids FROM log_miner.datasets"
                                        " WHERE dataset_id = %s", (dataset_id,)).fetchone(),
                     timeout=120, what="the retrain's dataset")
    train_uri, source_run_ids = row
    assert set(conversation.runs) <= set(source_run_ids)
    store = ArtifactStore(infra.s3.endpoint, infra.s3.access_key, infra.s3.secret_key, infra.bucket)
    lines = [json.loads(x) for x in asyncio.run(store.get_bytes(store.key_of(train_uri))).decode().splitlines()]
    ours = [x for x in lines if set(conversation.runs) & set(x["meta"]["run_ids"])]
    assert len(ours) == 1, f"{len(ours)} examples hold the conversation's runs"
    example = ours[0]
    assert example["meta"]["run_ids"] == conversation.runs
    assert [m["role"] for m in example["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert example["messages"][2]["content"] == "21 C and clear in Lisbon"
    # The retrain goes on (train, export, gate); the next module must not share the CPU with it.
    wait_until(lambda: _retrain_over(db, dataset_id), timeout=600, interval=1, what="the retrain's training, "
               "export and gate to finish")


def _retrain_over(db, dataset_id: str) -> bool:
    """Training failed, the export failed, or the gate has decided on the version."""
    job_id = job_id_for(dataset_id)
    trained = db.execute("SELECT status FROM trainer.jobs WHERE job_id = %s", (job_id,)).fetchone()
    exported = db.execute("SELECT status FROM exporter.export_jobs WHERE job_id = %s", (job_id,)).fetchone()
    version = db.execute("SELECT version, status FROM registry.model_versions WHERE job_id = %s", (job_id,)).fetchone()
    gated = version and db.execute("SELECT status FROM evaluator.evaluations WHERE model_version = %s",
                                   (version[0],)).fetchone()
    return ((trained is not None and trained[0] == "failed") or (exported is not None and exported[0] == "failed")
            or (version is not None and version[1] != "candidate") or (gated is not None and gated[0] == "failed"))


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
