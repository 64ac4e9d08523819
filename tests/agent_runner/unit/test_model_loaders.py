"""Engine loaders that need no model file: Ollama switches model names, fixed engines refuse."""

from __future__ import annotations

import pytest

from agent_runner.adapters.model_loaders import FixedEngine, OllamaLoader
from agent_runner.domain import ModelLoadError
from agent_runner.model_slot import DesiredModel
from contracts import utcnow


def wanted(ollama_model: str | None) -> DesiredModel:
    return DesiredModel("gemma3-270m-abc", "s3://m/abc.gguf", "ab" * 32, "production", utcnow(), ollama_model)


async def test_an_ollama_deployment_serves_the_model_name_the_exporter_pushed():
    loader = OllamaLoader("http://127.0.0.1:9", keep_alive="5m", timeout_s=3, seed=1)
    engine = await loader.load(wanted("agentloop/gemma3-270m-abc"))
    try:
        assert (engine.name, engine.model, engine.model_version) == ("ollama", "agentloop/gemma3-270m-abc",
                                                                     "gemma3-270m-abc")
    finally:
        await engine.close()


async def test_an_ollama_deployment_that_was_never_pushed_fails_with_the_reason():
    loader = OllamaLoader("http://127.0.0.1:9", keep_alive="5m", timeout_s=3, seed=1)
    with pytest.raises(ModelLoadError, match="no Ollama model name"):
        await loader.load(wanted(None))


async def test_engines_that_cannot_switch_models_say_so():
    loader = FixedEngine("openai")
    assert loader.reloads is False
    with pytest.raises(ModelLoadError, match="openai engine cannot switch"):
        await loader.load(wanted(None))
