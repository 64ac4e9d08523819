"""How `agentloop run` prints a streamed run, reads a tools file and finds credentials."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from agentloop_cli.commands.runs import StepPrinter, load_tools
from agentloop_cli.config import ConfigError, credentials


def printer() -> tuple[StepPrinter, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return StepPrinter(Console(file=out, width=200), Console(file=err, width=200)), out, err


def step(kind: str, **fields) -> dict:
    return {"type": "step", "kind": kind, **fields}


def test_tokens_print_inline_and_tool_calls_on_their_own_lines():
    p, out, _ = printer()
    for event in [
        {"type": "accepted", "run_id": "r1"},
        step("started"),
        step("token", text="Let me "),
        step("token", text="compute."),
        step("tool_call", tool_call={"id": "c1", "name": "calculator", "arguments": {"expression": "17*23"}}),
        step("tool_result", tool_result="391"),
        step("token", text="It is 391."),
        step("final", text="It is 391."),
    ]:
        p.event(event)
    code = p.finish({"type": "completed", "answer": "It is 391.", "outcome": "answered"})
    assert code == 0
    assert out.getvalue().splitlines() == [
        "Let me compute.",
        '-> calculator({"expression": "17*23"})',
        "<- 391",
        "It is 391.",
        "answer: It is 391.",
    ]


def test_a_failed_run_exits_non_zero_with_its_reason():
    p, _, err = printer()
    assert p.finish({"type": "failed", "error": {"code": "engine_error", "reason": "model crashed"}}) == 1
    assert "engine_error" in err.getvalue() and "model crashed" in err.getvalue()


def test_a_refused_or_timed_out_stream_exits_non_zero():
    p, _, err = printer()
    assert p.finish({"type": "error", "status": 429, "detail": "rate limit"}) == 1
    assert p.finish({"type": "timeout", "run_id": "r9"}) == 1
    assert "rate limit" in err.getvalue() and "/v1/runs/r9" in err.getvalue()


@pytest.mark.parametrize(("outcome", "code"), [("answered", 0), ("client_tool_call", 0), ("max_steps", 1), ("error", 1)])
def test_exit_status_follows_the_outcome(outcome: str, code: int):
    p, _, _ = printer()
    assert p.finish({"type": "completed", "answer": None, "outcome": outcome}) == code


def test_tools_file_accepts_a_list_or_an_object_with_tools(tmp_path: Path):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    (tmp_path / "a.json").write_text(json.dumps([tool]))
    (tmp_path / "b.json").write_text(json.dumps({"tools": [tool]}))
    assert load_tools(tmp_path / "a.json")[0]["function"]["name"] == "lookup"
    assert load_tools(tmp_path / "b.json") == load_tools(tmp_path / "a.json")


def test_tools_file_that_is_not_function_format_is_refused(tmp_path: Path):
    (tmp_path / "bad.json").write_text(json.dumps([{"name": "x"}]))
    with pytest.raises(ConfigError, match="OpenAI function format"):
        load_tools(tmp_path / "bad.json")


def test_credentials_come_from_the_flag_then_env_then_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AGENTLOOP_TOKEN", raising=False)
    monkeypatch.delenv("AGENTLOOP_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="make up"):
        credentials()
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "api-key").write_text("al_file\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert credentials().api_key == "al_file"
    monkeypatch.setenv("AGENTLOOP_API_KEY", "al_env")
    assert credentials().api_key == "al_env"
    assert credentials("al_flag").api_key == "al_flag"


def test_model_and_tool_text_is_printed_verbatim_never_as_markup():
    p, out, _ = printer()
    p.event(step("tool_call", tool_call={"id": "c1", "name": "lookup", "arguments": {"tags": ["a", "/b"]}}))
    p.event(step("tool_result", tool_result={"rows": ["[/x]", "[bold]y"]}))
    answer = 'Tools:\n{"required": ["expression"]} [/] [bold]not bold'
    assert p.finish({"type": "completed", "answer": answer, "outcome": "answered",
                     "client_tool_calls": [{"name": "c", "arguments": {"k": ["[/z]"]}}]}) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == '-> lookup({"tags": ["a", "/b"]})'
    assert lines[1] == '<- {"rows": ["[/x]", "[bold]y"]}'
    assert lines[2] == 'client tool call: c({"k": ["[/z]"]})'
    assert "\n".join(lines[3:]) == "answer: " + answer
