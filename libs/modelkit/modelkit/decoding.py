"""Token-by-token decoding on a loaded llama-cpp-python model, optionally under a GBNF grammar —
the one decoder the runner's engine, GroupThink's batch and the evaluator's gate share, so the
gate measures the decoding that is served.

Under a grammar the sampler chain's pick is checked alone, and only a rejected pick is made again
under the full mask (llama.cpp's `common_sampler_sample` does the same). For greedy decoding this
gives the same tokens as masking every step; masking Gemma's 262k-token vocabulary at every step
cost 3-5x the time of the step itself on our CPUs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any


def grammar_loads(llm: Any, grammar: str) -> bool:
    """Whether llama.cpp can load `grammar` (GBNF, start rule `root`) for this model's vocabulary."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode("utf-8"), b"root")  # noqa: SLF001
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def complete_tokens(llm: Any, tokens: list[int], max_tokens: int, *, grammar: str | None = None,
                    temperature: float = 0.0, repeat_penalty: float = 1.0) -> list[int]:
    """The continuation's tokens, at most `max_tokens`, ending before an end-of-generation token."""
    out: list[int] = []
    generator = decode(llm, tokens, temperature=temperature, repeat_penalty=repeat_penalty, grammar=grammar)
    try:
        for token in generator:
            if token is EOG:
                break
            out.append(token)
            if len(out) >= max_tokens:
                break
    finally:
        generator.close()
    return out


class EndOfGeneration:
    """What `decode` yields for an end-of-generation token."""


EOG: Any = EndOfGeneration()


def decode(llm: Any, tokens: list[int], *, temperature: float, repeat_penalty: float,
           grammar: str | None) -> Iterator[Any]:
    """Tokens continuing `tokens` (then `EOG` at an end-of-generation token), reusing the KV
    cache's longest common prefix. llama-cpp-python's own sampler chain picks each token; under a
    grammar the pick is checked, and only a rejected pick is made again under the full mask
    (llama.cpp's `common_sampler_sample` does the same)."""
    import llama_cpp
    import numpy as np
    from llama_cpp import _internals

    vocab = llm._model.vocab  # noqa: SLF001 - grammar and end-of-generation checks need the vocab handle
    chain = llm._init_sampler(temp=temperature, repeat_penalty=repeat_penalty)  # noqa: SLF001 - as generate() builds it
    rule = None
    if grammar is not None:
        rule = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not rule:
            chain.close()
            raise ValueError("llama.cpp could not load the tool grammar")
    n_vocab = llm.n_vocab()
    candidates = _internals.LlamaTokenDataArray(n_vocab=n_vocab)
    one = (llama_cpp.llama_token_data * 1)()
    single = llama_cpp.llama_token_data_array(one, 1, -1, False)
    try:
        evaluate_prompt(llm, tokens)
        while True:
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))  # noqa: SLF001
            token = pick(chain, candidates, logits)
            if rule is not None and not allowed(rule, single, one, token):
                candidates.copy_logits(logits)
                llama_cpp.llama_sampler_apply(rule, ctypes.byref(candidates.candidates))
                token = pick(chain, candidates, logits, masked=True)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                yield EOG
                return
            if rule is not None:
                llama_cpp.llama_sampler_accept(rule, token)
            chain.accept(token)
            yield token
            llm.eval([token])
    finally:
        if rule is not None:
            llama_cpp.llama_sampler_free(rule)
        chain.close()


def evaluate_prompt(llm: Any, tokens: list[int]) -> None:
    """Evaluate what the KV cache does not already hold of `tokens` (at least the last token,
    whose logits the first pick needs)."""
    import numpy as np

    cached = llm.input_ids[: llm.n_tokens]
    n = min(len(cached), len(tokens) - 1)
    differ = np.flatnonzero(cached[:n] != np.asarray(tokens[:n]))
    keep = int(differ[0]) if differ.size else n
    if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):  # noqa: SLF001 - a partial removal may be refused
        llm.n_tokens = keep
    else:
        llm.reset()
    llm.eval(tokens[llm.n_tokens:])


def pick(chain: Any, candidates: Any, logits: Any, *, masked: bool = False) -> int:
    """The chain's pick among `candidates`: freshly filled from `logits` unless already masked."""
    import llama_cpp

    if not masked:
        candidates.copy_logits(logits)
    llama_cpp.llama_sampler_apply(chain.sampler, ctypes.byref(candidates.candidates))
    return int(candidates.candidates_data.id[candidates.candidates.selected])


def allowed(rule: Any, single: Any, one: Any, token: int) -> bool:
    """Whether the grammar in its current state accepts `token` next (the candidate alone)."""
    import llama_cpp

    one[0].id, one[0].logit, one[0].p = token, 0.0, 0.0
    single.size, single.selected, single.sorted = 1, -1, False
    llama_cpp.llama_sampler_apply(rule, ctypes.byref(single))
    return one[0].logit != float("-inf")


def find_stop(text: str, stop: tuple[str, ...]) -> int | None:
    hits = [i for s in stop if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


def held_back(text: str, stop: tuple[str, ...]) -> int:
    """Characters at the end of `text` that might be the start of a stop string."""
    longest = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest
