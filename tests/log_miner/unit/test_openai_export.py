"""A dataset line in OpenAI's chat fine-tuning shape, and back through the OpenAI importer."""

from __future__ import annotations

import json

from log_miner.domain.openai_export import openai_line
from log_miner.importers.openai_messages import OpenAIMessagesImporter
from tests.log_miner.openai_ft import problems

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
LINE = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1_1", "name": "get_weather", "arguments": {"city": "Oslo"}},
            {"id": "call_1_2", "name": "get_weather", "arguments": {"city": "Rome"}}]},
        {"role": "tool", "tool_call_id": "call_1_1", "name": "get_weather", "content": "3 C"},
        {"role": "tool", "tool_call_id": "call_1_2", "name": "get_weather", "content": "24 C"},
        {"role": "assistant", "content": "Oslo 3 C, Rome 24 C."},
    ],
    "tools": TOOLS,
    "meta": {"source": "mined", "kind": "success", "run_ids": ["r1"]},
}


def test_calls_get_openais_shape_with_json_string_arguments_and_lineage_goes():
    out = openai_line(LINE)
    assert problems(out) == []
    calls = out["messages"][2]["tool_calls"]
    assert calls[0] == {"id": "call_1_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    assert "content" not in out["messages"][2] and out["messages"][3] == {"role": "tool", "tool_call_id": "call_1_1",
                                                                          "content": "3 C"}
    assert out["tools"] == TOOLS and out["parallel_tool_calls"] is True and "meta" not in out


def test_a_text_only_line_has_no_tools_and_assistant_text_is_never_null():
    out = openai_line({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}],
                       "tools": [], "meta": {}})
    assert out == {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}
    assert problems(out) == []


def test_the_openai_importer_reads_the_export_back():
    item = OpenAIMessagesImporter().convert(json.loads(json.dumps(openai_line(LINE))))
    seen = [(m["role"], m.get("content"), [(c["name"], c["arguments"]) for c in m.get("tool_calls") or []])
            for m in item.messages]
    want = [(m["role"], m.get("content"), [(c["name"], c["arguments"]) for c in m.get("tool_calls") or []])
            for m in LINE["messages"]]
    assert seen == want
    assert [t["function"]["name"] for t in item.tools] == ["get_weather"]
