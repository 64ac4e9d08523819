"""GroupThink sampling on llama.cpp: N samples of one prompt decoded together as sequences.

The prompt is decoded once, as sequence 0; its KV cells are then shared with sequences
1..N-1 (`llama_memory_seq_cp`: in a unified KV cache that only adds sequence ids to the
cells). Every step then puts one token per unfinished sequence into ONE batch, so N samples
cost one pass over the prompt plus one batched decode per generated position — not N
generations in a row.

Each sequence has its own sampler chain: the truncation the engine's sampled turns use
(top-k 40, top-p 0.95, min-p 0.05), the temperature, then a random draw seeded per sequence
(the same seed for every sequence would draw the same first token N times), and, when
a grammar (GBNF) is given, its own grammar state, which checks each pick (see `_Picker`). A sample's `mean_logprob` is the mean, over every token it drew
(the end-of-turn token included: stopping is a choice too), of the log-softmax of that token
under the model's *raw* logits — before temperature and before the grammar's mask. It measures
how much the model itself believed the answer, comparable across temperatures and between
constrained and free decoding; it is only used to break ties between candidates.

The context needs `n_seq_max >= N` and a unified KV cache (`modelkit.llama.load_llama(...,
n_seq_max=N)`). All sequences share the context's cells, so each sample may generate at most
`(n_ctx - prompt) // N` tokens. Blocking C calls: run it on the engine's worker thread.

Afterwards only the prompt stays in the cache, as sequence 0, and the `Llama` object's own
bookkeeping (`input_ids`, `n_tokens`) says so: its next `generate` reuses that prefix, and the
next call here reuses the longest prefix it shares with what is cached.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ports import Sample

_GRAMMAR_ROOT = b"root"
TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05  # llama-cpp-python's sampling defaults, as `generate` uses them


class BatchSamplingError(RuntimeError):
    """llama.cpp refused a batch (no KV slot, invalid batch) or a grammar."""


@dataclass(frozen=True)
class BatchStats:
    prompt_tokens: int
    reused_tokens: int  # prompt prefix already in the KV cache, not decoded again
    decode_calls: int  # llama_decode calls: prompt chunks + one per generated position
    decoded_tokens: int  # tokens put through llama_decode (prompt rest + one per live sequence per step)


def sequences_of(llm: Any) -> int:
    """How many sequences the loaded context holds (its n_seq_max)."""
    import llama_cpp

    return int(llama_cpp.llama_n_seq_max(llm.ctx))


def sample_batch(llm: Any, prompt_tokens: Sequence[int], *, n: int, max_tokens: int, temperature: float,
                 stop: Sequence[str] = (), grammar: str | None = None, seed: int = 0, first_sample: int = 0,
                 repeat_penalty: float = 1.0, cancel: threading.Event | None = None) -> tuple[list[Sample], BatchStats]:
    """N samples of the continuation of `prompt_tokens` (see the module docstring).

    `first_sample` numbers the samples' seeds (another round of the same turn draws others).
    ValueError when `n` exceeds the context's sequences or the prompt leaves no room;
    BatchSamplingError when llama.cpp refuses a decode or the grammar. A set `cancel` stops the
    samples at the next step (they finish with "cancelled").
    """
    import llama_cpp

    from modelkit.decoding import find_stop  # the engine's stop-string rule, shared

    prompt = [int(t) for t in prompt_tokens]
    size = len(prompt)
    if size == 0:
        raise ValueError("sampling needs at least one prompt token")
    if n < 1:
        raise ValueError("n must be at least 1")
    if n > (capacity := sequences_of(llm)):
        raise ValueError(f"{n} samples asked for; the context was loaded with n_seq_max={capacity}")
    if temperature <= 0:
        raise ValueError("sampling needs a temperature above 0 (temperature 0 is greedy decoding)")
    n_ctx = llm.n_ctx()
    budget = min(max_tokens, (n_ctx - size) // n)
    if budget <= 0:
        raise ValueError(f"prompt is {size} tokens; the context holds {n_ctx}, shared by {n} samples")

    ctx = llm.ctx
    vocab = llm._model.vocab  # noqa: SLF001 - grammar and end-of-generation checks need the vocab handle
    mem = llama_cpp.llama_get_memory(ctx)
    n_vocab = llm.n_vocab()
    picker = _Picker(n_vocab)
    chains: list[Any] = []
    rules: list[Any] = []
    batch = llama_cpp.llama_batch_init(max(llm.n_batch, n), 0, 1)
    decode_calls = decoded = 0
    clean = False
    try:
        for i in range(n):
            chains.append(_sampler_chain(temperature, _seed(seed, first_sample + i), repeat_penalty))
            if grammar is not None:
                rules.append(_grammar_rule(vocab, grammar))
        keep = _reuse_prefix(llm, mem, prompt, capacity)
        # The prompt's rest, as sequence 0, in chunks of n_batch; logits for its last token only.
        last = 0
        for start in range(keep, size, llm.n_batch):
            chunk = prompt[start:start + llm.n_batch]
            batch.n_tokens = len(chunk)
            for j, token in enumerate(chunk):
                _put(batch, j, token, start + j, 0, j == len(chunk) - 1 and start + len(chunk) == size)
            _decode(llama_cpp, ctx, batch)
            decode_calls += 1
            decoded += len(chunk)
            last = len(chunk) - 1
        for s in range(1, n):
            llama_cpp.llama_memory_seq_cp(mem, 0, s, -1, -1)

        outs = [_Out() for _ in range(n)]
        rows = {s: last for s in range(n)}  # sequence -> its row among the last decode's outputs
        pos = size
        while True:
            # The last decode's outputs, by batch index (the first step: all share the prompt's row).
            tables: dict[int, tuple[np.ndarray, float]] = {}
            live = []
            for s, row in rows.items():
                if row not in tables:
                    raw = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,)).copy()
                    tables[row] = (raw, _logsumexp(raw))
                raw, lse = tables[row]
                token = picker.pick(chains[s], rules[s] if rules else None, raw)
                out = outs[s]
                out.logprob += float(raw[token]) - lse
                out.drawn += 1
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    out.finish = "stop"
                    continue
                llama_cpp.llama_sampler_accept(chains[s], token)
                if rules:
                    llama_cpp.llama_sampler_accept(rules[s], token)
                out.count += 1
                out.text += out.decoder.decode(llm.detokenize([token], special=True))
                cut = find_stop(out.text, tuple(stop))
                if cut is not None:
                    out.text, out.finish = out.text[:cut], "stop"
                    continue
                if out.count >= budget:
                    out.finish = "length"
                    continue
                live.append((s, token))
            if not live:
                break
            if cancel is not None and cancel.is_set():
                for s, _ in live:
                    outs[s].finish = "cancelled"
                break
            batch.n_tokens = len(live)
            for j, (s, token) in enumerate(live):
                _put(batch, j, token, pos, s, True)
            _decode(llama_cpp, ctx, batch)
            decode_calls += 1
            decoded += len(live)
            rows = {s: j for j, (s, _) in enumerate(live)}
            pos += 1
        clean = True
    finally:
        _release(llama_cpp, llm, mem, prompt, capacity, keep_prompt=clean)
        llama_cpp.llama_batch_free(batch)
        for sampler in chains + rules:
            llama_cpp.llama_sampler_free(sampler)
    samples = []
    for out in outs:
        out.text += out.decoder.decode(b"", final=True)
        samples.append(Sample(out.text, out.count, out.logprob / max(1, out.drawn), out.finish, size))
    return samples, BatchStats(size, keep, decode_calls, decoded)


@dataclass
class _Out:
    text: str = ""
    count: int = 0  # tokens of the text (the end-of-turn token excluded)
    drawn: int = 0  # tokens drawn (end-of-turn included): the mean log-probability's denominator
    logprob: float = 0.0
    finish: str = "length"

    def __post_init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")


def _seed(seed: int, i: int) -> int:
    # 0xFFFFFFFF is LLAMA_DEFAULT_SEED ("random"): stay below it, so runs are reproducible.
    return (seed * 7919 + i) % 0xFFFFFFFF


class _Picker:
    """One sequence's next token: its chain (truncation, temperature, a seeded draw) picks from
    the raw logits; under a grammar the pick is checked alone and, only when the grammar rejects
    it, drawn again from the grammar-masked logits. Over one candidate set that is exactly a draw
    from the masked distribution (an accepted first draw has probability p(t); a redraw adds
    (1 - Z) p(t) / Z, Z the allowed mass: p(t) / Z in all); the truncation makes it close to it,
    as in llama.cpp's own server. It costs a fraction of masking Gemma's 262k-token vocabulary
    every step (the engine's greedy path checks its picks the same way)."""

    def __init__(self, n_vocab: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self.candidates = _internals.LlamaTokenDataArray(n_vocab=n_vocab)
        self.one = (llama_cpp.llama_token_data * 1)()
        self.single = llama_cpp.llama_token_data_array(self.one, 1, -1, False)

    def pick(self, chain: Any, rule: Any, logits: np.ndarray) -> int:
        from modelkit.decoding import allowed  # the engine's check of one token against the grammar

        token = self._draw(chain, logits, None)
        if rule is not None and not allowed(rule, self.single, self.one, token):
            token = self._draw(chain, logits, rule)
        return token

    def _draw(self, chain: Any, logits: np.ndarray, rule: Any) -> int:
        import llama_cpp

        self.candidates.copy_logits(logits)
        self.candidates.candidates.selected = -1
        if rule is not None:
            llama_cpp.llama_sampler_apply(rule, ctypes.byref(self.candidates.candidates))
        llama_cpp.llama_sampler_apply(chain, ctypes.byref(self.candidates.candidates))
        return int(self.candidates.candidates_data.id[self.candidates.candidates.selected])


def _grammar_rule(vocab: Any, grammar: str) -> Any:
    import llama_cpp

    rule = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), _GRAMMAR_ROOT)
    if not rule:
        raise BatchSamplingError("llama.cpp could not parse the grammar (GBNF with a `root` rule)")
    return rule


def _sampler_chain(temperature: float, seed: int, repeat_penalty: float) -> Any:
    """What the engine's own sampled turns use (llama-cpp-python's `generate` defaults): the
    truncation keeps the 262k-token tail out of the samples, and costs less than drawing from all
    of it."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if repeat_penalty != 1.0:  # the same window llama-cpp-python's generate uses
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_penalties(64, repeat_penalty, 0.0, 0.0))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(TOP_K))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(TOP_P, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(temperature))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


def _put(batch: Any, j: int, token: int, pos: int, seq: int, logits: bool) -> None:
    batch.token[j] = token
    batch.pos[j] = pos
    batch.n_seq_id[j] = 1
    batch.seq_id[j][0] = seq
    batch.logits[j] = logits


def _decode(llama_cpp: Any, ctx: Any, batch: Any) -> None:
    rc = llama_cpp.llama_decode(ctx, batch)
    if rc != 0:
        raise BatchSamplingError(f"llama_decode returned {rc} for a batch of {batch.n_tokens} tokens"
                                 + (" (no KV slot: the context is full)" if rc == 1 else ""))


def _reuse_prefix(llm: Any, mem: Any, prompt: list[int], capacity: int) -> int:
    """Drop what the cache holds beyond the prompt's longest cached prefix; return that prefix's length.

    At least the prompt's last token is decoded again: its logits are the first step's."""
    import llama_cpp

    cached = [int(t) for t in llm.input_ids[:llm.n_tokens]]
    keep = 0
    for a, b in zip(cached, prompt[:-1], strict=False):
        if a != b:
            break
        keep += 1
    for s in range(1, capacity):
        llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
    if not llama_cpp.llama_memory_seq_rm(mem, 0, keep, -1):  # a partial removal may be refused
        llama_cpp.llama_memory_clear(mem, True)
        keep = 0
    llm.n_tokens = keep
    return keep


def _release(llama_cpp: Any, llm: Any, mem: Any, prompt: list[int], capacity: int, *, keep_prompt: bool) -> None:
    """Free the samples' cells; keep the prompt as sequence 0 (and tell the `Llama` so) when intact."""
    for s in range(1, capacity):
        llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
    if keep_prompt and llama_cpp.llama_memory_seq_rm(mem, 0, len(prompt), -1):
        llm.input_ids[:len(prompt)] = prompt
        llm.n_tokens = len(prompt)
    else:
        llama_cpp.llama_memory_clear(mem, True)
        llm.n_tokens = 0


def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + float(np.log(np.exp(values - top, dtype=np.float64).sum()))
