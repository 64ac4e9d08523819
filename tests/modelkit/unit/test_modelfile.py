"""The Modelfile TEMPLATE renders the runner's prompt (evaluated by our Go-template subset)."""

from __future__ import annotations

import pytest
from modelkit.chat_format import STOP_STRINGS, render_prompt
from modelkit.export.modelfile import TEMPLATE, modelfile_text

from tests.modelkit.gotemplate import GoTemplate, TemplateError, go_json, ollama_values, render_modelfile_template

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}

CONVERSATIONS = {
    "user only": ([{"role": "user", "content": "Hello"}], []),
    "system and user": (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        [],
    ),
    "with tools": ([{"role": "user", "content": "What is 17*23?"}], [CALCULATOR, WEATHER]),
    "system, tools, tool call and result (OpenAI call shape)": (
        [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "What is 17*23?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "calculator", "arguments": '{"expression": "17*23"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "391"},
        ],
        [CALCULATOR],
    ),
    "multi-turn with text before a call, two arguments, and a final answer": (
        [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}],
            },
            {"role": "tool", "name": "get_weather", "content": '{"temp": 4}'},
            {"role": "assistant", "content": "It is 4 degrees."},
            {"role": "user", "content": "Thanks"},
        ],
        [WEATHER],
    ),
    "assistant speaks first with a preamble": (
        [
            {"role": "system", "content": "S"},
            {"role": "assistant", "content": "Welcome!"},
            {"role": "user", "content": "Hi"},
        ],
        [],
    ),
    "call with no arguments, then a user turn": (
        [
            {"role": "user", "content": "Ping"},
            {"role": "assistant", "content": "", "tool_calls": [{"name": "ping", "arguments": {}}]},
            {"role": "tool", "content": "pong"},
            {"role": "user", "content": "and?"},
        ],
        [],
    ),
}


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_template_renders_the_same_prompt_as_the_runner(name):
    messages, tools = CONVERSATIONS[name]

    assert render_modelfile_template(messages, tools) == render_prompt(messages, tools)


def test_the_comparison_can_fail_when_the_template_drifts():
    messages, tools = CONVERSATIONS["system, tools, tool call and result (OpenAI call shape)"]
    drifted = TEMPLATE.replace("<tool_result name=", "<tool_result tool=")

    assert render_modelfile_template(messages, tools, template=drifted) != render_prompt(
        messages, tools
    )


def test_consecutive_user_messages_differ_as_documented():
    """Ollama merges same-role runs with a blank line; render_prompt joins with one newline."""
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]

    assert "a\n\nb" in render_modelfile_template(messages)
    assert "a\nb" in render_prompt(messages)


def test_modelfile_points_at_the_gguf_and_stops_at_every_stop_string():
    text = modelfile_text("v1.Q4_K_M.gguf")
    lines = text.splitlines()

    assert lines[0] == "FROM ./v1.Q4_K_M.gguf"
    assert f'TEMPLATE """{TEMPLATE}"""' in text
    for stop in STOP_STRINGS:
        assert f'PARAMETER stop "{stop}"' in lines
    assert "PARAMETER temperature 0" in lines


@pytest.mark.parametrize("bad", ["../x.gguf", "model.bin", "dir/model.gguf"])
def test_modelfile_rejects_a_gguf_outside_its_directory(bad):
    with pytest.raises(ValueError):
        modelfile_text(bad)


def test_ollama_values_collate_system_messages_and_tool_names():
    values = ollama_values(
        [
            {"role": "system", "content": "one"},
            {"role": "system", "content": "two"},
            {"role": "user", "content": "q"},
            {"role": "tool", "name": "calc", "content": {"x": 1}},
        ]
    )

    assert values["System"] == "one\n\ntwo"
    assert [m["Role"] for m in values["Messages"]] == ["system", "user", "tool"]
    assert values["Messages"][2] == {
        "Role": "tool",
        "Content": '{"x": 1}',
        "ToolName": "calc",
        "ToolCalls": [],
    }


def test_go_template_ranges_maps_in_key_order_and_scopes_variables():
    template = GoTemplate(
        "{{ $n := 0 }}{{ range $k, $v := .M }}{{ $k }}={{ $v }};{{ $n = $k }}{{ end }}{{ $n }}"
    )

    assert template.execute({"M": {"b": 2, "a": 1}}) == "a=1;b=2;b"


def test_go_template_and_or_return_operands_like_go():
    template = GoTemplate('{{ or .A "dflt" }}|{{ and .A .B }}|{{ if not .A }}empty{{ end }}')

    assert template.execute({"A": "", "B": "b"}) == "dflt||empty"
    assert template.execute({"A": "a", "B": "b"}) == "a|b|"


def test_go_template_keeps_braces_inside_quoted_strings():
    assert GoTemplate('{{ printf "%s}}%s" "a" "b" }}!').execute({}) == "a}}b!"


@pytest.mark.parametrize(
    "source",
    ["{{ with .A }}x{{ end }}", "{{- .A }}", "{{ .A | json }}", "{{ if .A }}x", "{{ upper .A }}"],
)
def test_go_template_rejects_what_it_does_not_implement(source):
    with pytest.raises(TemplateError):
        GoTemplate(source).execute({"A": "a"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": [1, 2.5, None], "a": True}, '{"a":true,"b":[1,2.5,null]}'),
        ("<a & b>", '"\\u003ca \\u0026 b\\u003e"'),
        ("é\n\x01", '"é\\n\\u0001"'),
        (17.0, "17"),
    ],
)
def test_go_json_matches_go_encoding(value, expected):
    assert go_json(value) == expected
