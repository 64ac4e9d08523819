"""The exported GGUF's Jinja chat template renders exactly `render_prompt`, in the two renderers other
tools use: llama-cpp-python's (`llama_cpp.server`) and transformers' (`apply_chat_template`)."""

from __future__ import annotations

import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from transformers.utils.chat_template_utils import render_jinja_template

from modelkit.chat_format import render_prompt
from modelkit.export.chat_template import CHAT_TEMPLATE
from modelkit.export.parity import PARITY_CONVERSATIONS

BOS = "<bos>"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                            "parameters": {"type": "object", "required": ["city"], "properties": {
                                                "unit": {"type": "string"}, "city": {"type": "string"},
                                                "days": {"type": "integer"}}}}}

MORE = {
    "arguments-in-the-schemas-order": ([
        {"role": "user", "content": "Weather in Oslo for 3 days?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"name": "get_weather", "arguments": {"unit": "c", "days": 3, "city": "Oslo", "x": 1}}]},
        {"role": "tool", "name": "get_weather", "content": {"temp": 3, "sky": "snow ❄"}},
    ], [WEATHER]),
    "openai-shaped-calls": ([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "3 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "24 C"},
        {"role": "assistant", "content": "  Oslo 3 C, Rome 24 C.  "},
        {"role": "user", "content": "Thanks — ça va?"},
    ], [WEATHER]),
    "a-model-turn-first": ([{"role": "system", "content": "S"}, {"role": "assistant", "content": "Hello."}], []),
    "empty-system": ([{"role": "system", "content": ""}, {"role": "user", "content": "hi"}], [WEATHER]),
}

CASES = {f"parity-{i}": case for i, case in enumerate(PARITY_CONVERSATIONS)} | MORE


def llama_cpp_prompt(messages, tools) -> str:
    formatter = Jinja2ChatFormatter(CHAT_TEMPLATE, eos_token="<eos>", bos_token=BOS)
    return formatter(messages=messages, tools=tools or None).prompt


def transformers_prompt(messages, tools) -> str:
    rendered = render_jinja_template(conversations=[messages], tools=tools or None, chat_template=CHAT_TEMPLATE,
                                     add_generation_prompt=True, bos_token=BOS)
    return rendered[0][0]


@pytest.mark.parametrize("render", [llama_cpp_prompt, transformers_prompt], ids=["llama-cpp", "transformers"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_template_renders_exactly_the_runners_prompt(render, case):
    messages, tools = CASES[case]
    assert render(messages, tools) == BOS + render_prompt(messages, tools)


def test_without_the_generation_prompt_the_models_turn_is_not_opened():
    messages = [{"role": "user", "content": "hi"}]
    rendered = render_jinja_template(conversations=[messages], chat_template=CHAT_TEMPLATE,
                                     add_generation_prompt=False, bos_token=BOS)[0][0]
    assert rendered == BOS + render_prompt(messages).removesuffix("<start_of_turn>model\n")


def test_an_unknown_role_is_an_error():
    with pytest.raises(Exception, match="unknown role robot"):
        llama_cpp_prompt([{"role": "robot", "content": "x"}], [])
