"""The scripted engine, settings defaults, and tool registration by entry point."""

from __future__ import annotations

import pytest

from agent_runner.adapters.scripted_engine import ScriptedEngine
from agent_runner.settings import AgentRunnerSettings, split_csv
from agent_runner.tools import load_tools
from modelkit.chat_format import render_prompt


async def collect(engine, prompt: str, max_tokens: int = 100):
    return [c async for c in engine.generate(prompt, max_tokens=max_tokens, temperature=0, stop=())]


async def test_the_scripted_engine_replies_with_its_script_word_by_word():
    chunks = await collect(ScriptedEngine("The answer is 42."), render_prompt([{"role": "user", "content": "q"}]))
    assert "".join(c.text for c in chunks) == "The answer is 42."
    assert len(chunks) == 4 and chunks[-1].completion_tokens == 4 and chunks[-1].finish_reason == "stop"


async def test_a_scripted_list_gives_successive_model_turns():
    engine = ScriptedEngine('["first", "second"]')
    one = render_prompt([{"role": "user", "content": "q"}])
    two = render_prompt([{"role": "user", "content": "q"}, {"role": "assistant", "content": "first"},
                         {"role": "user", "content": "more"}])
    assert "".join(c.text for c in await collect(engine, one)) == "first"
    assert "".join(c.text for c in await collect(engine, two)) == "second"


async def test_the_scripted_engine_respects_max_tokens():
    chunks = await collect(ScriptedEngine("a b c d"), "p", max_tokens=2)
    assert "".join(c.text for c in chunks) == "a b" and chunks[-1].finish_reason == "length"


def test_settings_default_to_the_embedded_engine_without_extra_buffer_types(monkeypatch):
    monkeypatch.setenv("S3__ACCESS_KEY", "k")
    monkeypatch.setenv("S3__SECRET_KEY", "s")
    settings = AgentRunnerSettings()
    assert settings.engine.kind == "llamacpp"
    assert settings.engine.use_extra_bufts is False
    assert settings.engine.n_ctx == 4096
    assert settings.http.port == 8101
    assert settings.tools.http_allowlist == ""


def test_settings_read_nested_environment_variables(monkeypatch):
    monkeypatch.setenv("S3__ACCESS_KEY", "k")
    monkeypatch.setenv("S3__SECRET_KEY", "s")
    monkeypatch.setenv("ENGINE__KIND", "scripted")
    monkeypatch.setenv("ENGINE__USE_EXTRA_BUFTS", "true")
    monkeypatch.setenv("ENGINE__N_THREADS", "3")
    monkeypatch.setenv("TOOLS__HTTP_ALLOWLIST", "example.com, api.example.org")
    monkeypatch.setenv("OLLAMA_HOST", "http://ollama:11434")
    settings = AgentRunnerSettings()
    assert settings.engine.kind == "scripted" and settings.engine.use_extra_bufts is True
    assert settings.engine.n_threads == 3
    assert split_csv(settings.tools.http_allowlist) == ["example.com", "api.example.org"]
    assert settings.ollama_host == "http://ollama:11434"


def test_the_three_builtin_tools_are_registered_by_entry_point():
    tools = load_tools(None, {})
    assert set(tools) >= {"calculator", "python", "http_get"}
    assert all(tool.spec.function.name == name for name, tool in tools.items())


def test_only_enabled_tools_are_loaded_and_unknown_names_are_refused():
    assert set(load_tools(["calculator"], {})) == {"calculator"}
    with pytest.raises(ValueError, match="no-such-tool"):
        load_tools(["no-such-tool"], {})
