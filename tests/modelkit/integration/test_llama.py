"""modelkit.llama against the real bundled model."""

from __future__ import annotations

import pytest
from modelkit.chat_format import END_OF_TURN_ID, STOP_STRINGS, render_prompt
from modelkit.llama import complete, default_threads, greedy_tokens, load_llama, tokenize_prompt

pytestmark = pytest.mark.slow

PROMPT = render_prompt([{"role": "user", "content": "Name a colour."}])


@pytest.fixture(scope="module")
def llm(bundled_gguf):
    model = load_llama(bundled_gguf, n_ctx=512)
    yield model
    model.close()


def test_loads_with_amx_repacking_off_and_the_default_threads(llm):
    assert llm.model_params.use_extra_bufts is False
    assert llm.context_params.n_threads == default_threads() >= 1


def test_greedy_tokens_are_deterministic_and_nothing_follows_a_stop_token(llm):
    prompt = tokenize_prompt(llm, PROMPT)

    first = greedy_tokens(llm, prompt, 48)
    second = greedy_tokens(llm, prompt, 48)

    assert first == second
    stops = {END_OF_TURN_ID, llm.token_eos()}
    assert not stops & set(first[:-1])
    assert len(first) == 48 or first[-1] in stops  # the bundled base model rarely ends its turn


def test_greedy_tokens_respect_max_tokens_and_custom_stop_ids(llm):
    prompt = tokenize_prompt(llm, PROMPT)
    full = greedy_tokens(llm, prompt, 48)

    assert greedy_tokens(llm, prompt, 2) == full[:2]
    assert greedy_tokens(llm, prompt, 48, stop_ids=[full[1]]) == full[:2]


def test_complete_returns_the_answer_without_stop_markers(llm):
    text = complete(llm, PROMPT, 48)

    assert text.strip()
    assert not any(stop in text for stop in STOP_STRINGS)


def test_a_prompt_that_fills_the_context_is_refused_and_output_stops_at_its_end(llm):
    with pytest.raises(ValueError, match="context"):
        greedy_tokens(llm, [2] * 512, 8)

    assert len(greedy_tokens(llm, [2] * 510, 8)) <= 2


def test_a_missing_model_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        load_llama(tmp_path / "nope.gguf")
