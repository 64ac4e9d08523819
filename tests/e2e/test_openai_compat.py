"""The OpenAI-compatible gateway through the official `openai` SDK: the real gateway, RabbitMQ, runner
and Gemma model, an API key as the SDK sends it (`Authorization: Bearer al_...`)."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import httpx
import openai
import pytest

from modelkit.base_model import bundled_gguf_path
from modelregistry import BASE_VERSION, ModelFile
from modelregistry.write import register_candidate
from servicekit.artifacts import ArtifactStore
from servicekit.db import asyncpg_dsn
from tests.harness import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Lisbon?"}]
FORCED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def client(stack, api_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=api_key("user"), max_retries=0, timeout=150)


@pytest.fixture(scope="module")
def async_client(stack, api_key) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.gateway_url}/v1", api_key=api_key("user"), max_retries=0, timeout=150)


def run_of(stack, token, completion_id: str) -> dict:
    resp = httpx.get(f"{stack.gateway_url}/v1/runs/{completion_id}", headers={"Authorization": f"Bearer {token('user')}"},
                     timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def candidate(stack, infra) -> str:
    """A registered candidate: the bundled GGUF uploaded to S3 under a version name of its own, as
    the exporter registers a trained model (no event: nothing deploys it)."""
    version = f"gemma3-270m-e2e-candidate-{uuid.uuid4().hex[:6]}"

    async def register() -> None:
        store = ArtifactStore(infra.s3.endpoint, infra.s3.access_key, infra.s3.secret_key, infra.bucket)
        path = await asyncio.to_thread(bundled_gguf_path)
        uri, sha256 = await store.put_file(f"models/{version}/model-Q4_K_M.gguf", path)
        conn = await asyncpg.connect(asyncpg_dsn(infra.database_url))
        try:
            await register_candidate(conn, version=version, base_model=BASE_VERSION, job_id=f"job-{version}",
                                     dataset_id=None, adapter_uri=None, lineage={}, quantization="Q4_K_M",
                                     files=[ModelFile("Q4_K_M", uri, sha256, path.stat().st_size, "gguf")])
        finally:
            await conn.close()

    asyncio.run(register())
    return version


def test_models_lists_what_a_completion_may_name(client, candidate) -> None:
    def listed() -> list[str] | None:  # the gateway reads the registry at most every 2 s
        ids = [m.id for m in client.models.list().data]
        return ids if candidate in ids else None

    ids = wait_until(listed, timeout=15, what="the candidate listed")
    assert ids[0] == "production" and "candidate" in ids
    assert client.models.retrieve("production").owned_by == "agent-loop"
    assert client.models.retrieve(candidate).id == candidate
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=ASK, max_tokens=4)


def test_a_completion_naming_the_candidate_runs_on_it_while_production_serves_the_rest(
        client, stack, token, candidate) -> None:
    say = [{"role": "user", "content": "Say hello."}]
    on_candidate = client.chat.completions.create(model="candidate", messages=say, max_tokens=8, temperature=0)
    by_version = client.chat.completions.create(model=candidate, messages=say, max_tokens=8, temperature=0)
    on_production = client.chat.completions.create(model="production", messages=say, max_tokens=8, temperature=0)
    assert on_candidate.model == by_version.model == candidate
    assert on_production.model != candidate
    assert run_of(stack, token, on_candidate.id)["model_version"] == candidate
    details = httpx.get(f"{stack.service('agent_runner').url}/health/detailed", timeout=10).json()
    assert [m["model_version"] for m in details["extra_models"]] == [candidate]
    assert details["model_version"] == on_production.model  # production was not swapped


def test_a_completion_answers_in_openai_shape_and_is_recorded_as_a_run(client, stack, token) -> None:
    out = client.chat.completions.create(model="production", messages=[{"role": "user", "content": "Say hello."}],
                                         max_tokens=16, temperature=0)
    assert out.id.startswith("chatcmpl-") and out.object == "chat.completion"
    choice = out.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length") and not choice.message.tool_calls
    assert out.usage.prompt_tokens > 0 and 0 < out.usage.completion_tokens <= 16
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    run = run_of(stack, token, out.id)
    assert run["status"] == "completed" and run["answer"] == choice.message.content
    assert out.model == run["model_version"]
    resp = httpx.post(f"{stack.gateway_url}/v1/runs/{out.id}/feedback", json={"rating": 1},
                      headers={"Authorization": f"Bearer {token('user')}"}, timeout=10)
    assert resp.status_code == 201 and resp.json()["run_id"] == run["run_id"]  # feedback by completion id


def test_a_completions_user_and_metadata_are_stored_and_filterable(client, stack, token) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    out = client.chat.completions.create(model="production", messages=[{"role": "user", "content": "Hi."}],
                                         max_tokens=8, user="user-7", metadata={"session": session})
    headers = {"Authorization": f"Bearer {token('user')}"}
    listed = httpx.get(f"{stack.gateway_url}/v1/runs", params={"metadata": f"session:{session}"}, headers=headers,
                       timeout=10).json()["runs"]
    assert [r["run_id"] for r in listed] == [out.id.removeprefix("chatcmpl-")]
    assert listed[0]["metadata"] == {"session": session, "openai.user": "user-7"}
    bad = httpx.get(f"{stack.gateway_url}/v1/runs", params={"metadata": "no-colon"}, headers=headers, timeout=10)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "metadata", 0]


def test_a_named_tool_choice_gets_a_tool_call_with_json_string_arguments(client) -> None:
    out = client.chat.completions.create(model="production", messages=ASK, tools=[WEATHER], tool_choice=FORCED,
                                         max_tokens=48)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert isinstance(json.loads(call.function.arguments), dict)


def test_tool_choice_required_and_n_give_one_call_per_choice(client) -> None:
    out = client.chat.completions.create(model="production", messages=ASK, tools=[WEATHER], tool_choice="required",
                                         n=2, max_tokens=48)
    assert [c.index for c in out.choices] == [0, 1]
    for choice in out.choices:
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls[0].function.name == "get_weather"
    assert out.choices[0].message.tool_calls[0].id != out.choices[1].message.tool_calls[0].id  # two runs


def test_a_multi_turn_tool_loop_sends_the_tool_result_back(client, stack, token) -> None:
    first = client.chat.completions.create(model="production", messages=ASK, tools=[WEATHER], tool_choice=FORCED,
                                           max_tokens=48)
    call = first.choices[0].message.tool_calls[0]
    messages = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21, "sky": "clear"})}]
    second = client.chat.completions.create(model="production", messages=messages, tools=[WEATHER],
                                            tool_choice="none", max_tokens=32)
    assert second.choices[0].finish_reason in ("stop", "length") and second.choices[0].message.content is not None
    run = run_of(stack, token, second.id)
    assert run["status"] == "completed" and run["outcome"] == "answered"


def test_response_format_json_schema_gets_an_answer_of_that_schema(client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}}, "required": ["city"],
              "additionalProperties": False}
    out = client.chat.completions.create(
        model="production", messages=[{"role": "user", "content": "Which city is the capital of France? Answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}, max_tokens=48)
    answer = json.loads(out.choices[0].message.content)
    assert set(answer) == {"city"} and isinstance(answer["city"], str)
    loose = client.chat.completions.create(model="production", response_format={"type": "json_object"},
                                           messages=[{"role": "user", "content": "Give a JSON object about Paris."}],
                                           max_tokens=64)
    if loose.choices[0].finish_reason == "stop":  # cut off at max_tokens, an object may be unfinished
        assert isinstance(json.loads(loose.choices[0].message.content), dict)


def test_a_stream_sends_role_content_deltas_finish_and_usage(client, stack, token) -> None:
    chunks = list(client.chat.completions.create(
        model="production", messages=[{"role": "user", "content": "Count from one to five."}], max_tokens=24,
        stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["stop"], ["length"]) and text
    assert not chunks[-1].choices and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1
    assert run_of(stack, token, chunks[0].id)["answer"] == text


def test_a_streamed_tool_call_arrives_as_tool_call_deltas(client) -> None:
    chunks = list(client.chat.completions.create(model="production", messages=ASK, tools=[WEATHER],
                                                 tool_choice=FORCED, max_tokens=48, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function.name == "get_weather" and deltas[0].id.startswith("call_")
    assert isinstance(json.loads("".join(d.function.arguments or "" for d in deltas)), dict)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_the_async_client_answers_concurrent_requests(async_client) -> None:
    async def ask(i: int):
        return await async_client.chat.completions.create(
            model="production", messages=[{"role": "user", "content": f"Say the number {i}."}], max_tokens=12)

    async def both():
        return await asyncio.gather(ask(1), ask(2))

    outs = asyncio.run(both())
    assert all(o.choices[0].message.content for o in outs) and outs[0].id != outs[1].id


@pytest.mark.parametrize("kwargs, status, param", [
    ({"model": "gpt-4o"}, 404, "model"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi\u0000"}]}, 400, "messages[0].content"),
    ({"messages": [{"role": "tool", "tool_call_id": "call_x", "content": "21 C"}]}, 400, "messages[0].tool_call_id"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, 400, "tool_choice"),
    ({"n": 2, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, 400,
     "tool_choice"),
    ({"extra_body": {"best_of": 3}}, 400, "best_of"),
    ({"top_p": 0.5}, 400, "top_p"),
], ids=["unknown-model", "bad-role", "nul-in-content", "tool-without-call", "unknown-tool-choice", "unknown-tool-choice-n2",
        "unknown-argument", "top_p"])
def test_bad_input_is_refused_in_openai_error_shape(client, kwargs, status, param) -> None:
    args = {"model": "production", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, **kwargs}
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**args)
    err = caught.value
    assert err.status_code == status
    assert err.body["param"] == param and err.body["message"] and err.body["type"] == "invalid_request_error"


def test_a_bad_key_is_a_401_and_a_jwt_works_too(stack, token) -> None:
    bad = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key="al_0000000000000000_" + "x" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.models.list()
    assert caught.value.body["code"] == "invalid_api_key"
    with_jwt = openai.OpenAI(base_url=f"{stack.gateway_url}/v1", api_key=token("user"), max_retries=0)
    assert with_jwt.models.list().data[0].id == "production"


def test_a_stream_dropped_mid_way_cancels_the_run_frees_the_engine_and_records_it(stack, api_key, token) -> None:
    # An answer the grammar holds to at least 40 lines of 40 characters: ~20 s of decoding whatever the model
    # (the session's production may be a trained version by now), unless the cancel stops it.
    long = {"type": "object", "required": ["lines"], "properties": {"lines": {
        "type": "array", "minItems": 40, "items": {"type": "string", "minLength": 40}}}}
    body = {"model": "production", "messages": [{"role": "user", "content": "Write a long story about a fox."}],
            "max_tokens": 512, "stream": True,
            "response_format": {"type": "json_schema", "json_schema": {"name": "story", "schema": long}}}
    with httpx.stream("POST", f"{stack.gateway_url}/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {api_key('user')}"}) as resp:
        assert resp.status_code == 200
        first = next(line for line in resp.iter_lines() if line.startswith("data: "))
    completion_id = json.loads(first.removeprefix("data: "))["id"]
    run = wait_until(lambda: (r := run_of(stack, token, completion_id))["status"] != "queued" and r, timeout=120)
    assert run["status"] == "failed" and run["error"]["code"] == "cancelled", run
    assert run["completed_at"] is not None
