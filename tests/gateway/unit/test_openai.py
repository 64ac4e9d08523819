"""OpenAI's chat completions request → a run, and a run record → OpenAI's answer (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from gateway.domain import ChatCompletionRequest, CompletionFailedError, InvalidRequestError, RunRecord, to_run
from gateway.domain.openai import UnsupportedValueError
from gateway.service.completions import check_outcome, content_of, finish_reason, run_id_of, tool_calls_of

CALL = {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'}}


def request(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "production",
                                                 "messages": [{"role": "user", "content": "hi"}], **fields})


def test_a_completion_is_one_turn_with_the_clients_tools_only():
    body = to_run(request(temperature=0.3, max_tokens=10, max_completion_tokens=20, stop="\n\n", user="u-1",
                          metadata={"session": "s1"}, tool_choice="required",
                          tools=[{"type": "function", "function": {"name": "get_weather", "strict": True}}]))
    o = body.options
    assert (o.max_steps, o.server_tools, o.model, o.temperature, o.tool_choice) == (1, False, "production", 0.3,
                                                                                     "required")
    assert o.max_tokens == 20 and o.stop == ["\n\n"]  # max_completion_tokens wins over the deprecated max_tokens
    assert body.metadata == {"session": "s1", "openai.user": "u-1"} and body.tools[0].function.name == "get_weather"


def test_messages_become_the_runners_content_parts_joined_developer_as_system_arguments_decoded():
    body = to_run(request(messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather"}, {"type": "text", "text": "in Lisbon?"}]},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_a", "content": "21 C"},
    ]))
    m = body.messages
    assert [x.role for x in m] == ["system", "user", "assistant", "tool"]
    assert m[1].content == "Weather\nin Lisbon?"
    assert m[2].tool_calls[0].arguments == {"city": "Lisbon"} and m[3].tool_call_id == "call_a"


@pytest.mark.parametrize("messages, field", [
    ([{"role": "tool", "tool_call_id": "call_a", "content": "x"}], "messages[0].tool_call_id"),
    ([{"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "call_a", "content": "x"},
      {"role": "tool", "tool_call_id": "call_a", "content": "again"}], "messages[2].tool_call_id"),
    ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
    ([{"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{nope"}}]}],
     "messages[0].tool_calls[0].function.arguments"),
    ([{"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "[1]"}}]}],
     "messages[0].tool_calls[0].function.arguments"),
    ([{"role": "user", "tool_calls": [CALL]}], "messages[0].tool_calls"),
    ([{"role": "user"}], "messages[0].content"),
], ids=["no-call", "answered-twice", "no-id", "not-json", "not-object", "user-calls", "no-content"])
def test_a_conversation_that_breaks_a_rule_names_the_parameter(messages, field):
    with pytest.raises(InvalidRequestError) as info:
        to_run(request(messages=messages))
    assert info.value.field == field


@pytest.mark.parametrize("fields, field", [
    ({"top_p": 0.9}, "top_p"), ({"presence_penalty": 0.5}, "presence_penalty"), ({"logprobs": True}, "logprobs"),
    ({"logit_bias": {"1": 2}}, "logit_bias"), ({"modalities": ["audio"]}, "modalities"), ({"n": 2, "stream": True}, "n"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0].type"),
])
def test_what_cannot_be_given_is_refused_as_unsupported(fields, field):
    with pytest.raises(UnsupportedValueError) as info:
        to_run(request(**fields))
    assert info.value.field == field


def test_response_format_makes_the_answer_json_of_the_schema():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    fmt = to_run(request(response_format={"type": "json_schema",
                                          "json_schema": {"name": "place", "schema": schema, "strict": True}}))
    assert fmt.options.response_format.type == "json_schema"
    assert fmt.options.response_format.answer_schema() == schema
    assert to_run(request(response_format={"type": "json_object"})).options.response_format.answer_schema() == {
        "type": "object"}
    with pytest.raises(InvalidRequestError) as info:
        to_run(request(response_format={"type": "json_schema"}))
    assert info.value.field == "response_format.json_schema"


def test_what_changes_nothing_is_taken():
    body = to_run(request(top_p=1, seed=7, store=True, service_tier="auto", frequency_penalty=0, logprobs=False,
                          modalities=["text"], response_format={"type": "text"}, parallel_tool_calls=False))
    assert body.options.max_steps == 1


def test_an_unknown_argument_is_a_schema_error():
    with pytest.raises(ValidationError) as info:
        request(best_of=2)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def record(**fields) -> RunRecord:
    return RunRecord(**{"run_id": "r" * 32, "subject": "u", "status": "completed",
                        "created_at": datetime(2026, 1, 1, tzinfo=UTC), **fields})


def test_client_tool_calls_become_openai_calls_with_json_string_arguments_and_unique_ids():
    r = record(outcome="client_tool_call", client_tool_calls=[
        {"id": "call_1_1", "name": "a", "arguments": {"x": 1}}, {"id": "call_1_2", "name": "b", "arguments": {}}])
    calls = tool_calls_of(r, parallel=True)
    assert [c["function"] for c in calls] == [{"name": "a", "arguments": '{"x": 1}'}, {"name": "b", "arguments": "{}"}]
    assert calls[0]["id"] == "call_rrrrrrrrrrrr_1" and finish_reason(r, 64) == "tool_calls"
    assert len(tool_calls_of(r, parallel=False)) == 1


def test_finish_reason_length_when_the_turn_used_every_token():
    assert finish_reason(record(outcome="answered", usage={"completion_tokens": 16}), 16) == "length"
    assert finish_reason(record(outcome="answered", usage={"completion_tokens": 5}), 16) == "stop"


def test_a_turn_whose_call_the_runner_refused_returns_what_the_model_wrote():
    r = record(outcome="max_steps", steps=[{"kind": "model", "text": "<tool_call>{bad</tool_call>"},
                                           {"kind": "error", "error": "no final answer"}])
    assert content_of(r) == "<tool_call>{bad</tool_call>"


@pytest.mark.parametrize("fields, kind", [
    ({"status": "queued"}, "timeout"),
    ({"status": "failed", "error_code": "prompt_too_long", "error": "too long"}, "context_length"),
    ({"status": "failed", "error_code": "model_not_served", "error": "not served"}, "model"),
    ({"status": "failed", "error_code": "engine_error", "error": "boom"}, "run"),
    ({"outcome": "timeout"}, "timeout"),
])
def test_a_run_without_a_turn_to_return_is_the_completions_error(fields, kind):
    with pytest.raises(CompletionFailedError) as info:
        check_outcome(record(**fields))
    assert info.value.kind == kind


def test_a_completion_id_names_its_run():
    assert run_id_of("chatcmpl-abc") == "abc" == run_id_of("abc")
