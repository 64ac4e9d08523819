"""llama.cpp (llama-cpp-python) as the project uses it: one way to load a GGUF, one greedy decoder.

Every place that runs a GGUF in-process — the runner's engine, the exporter's parity check, the
evaluator — loads it through `load_llama`, so the CPU workaround below lives once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .chat_format import END_OF_TURN_ID, STOP_STRINGS

_LOAD_LOCK = threading.Lock()


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """One core is left for the event loop and everything else the process does."""
    return max(1, usable_cores() - 1)


@contextlib.contextmanager
def model_defaults(*, use_extra_bufts: bool) -> Iterator[None]:
    """While active, llama.cpp model params default to the given `use_extra_bufts`.

    `Llama()` builds its model params from `llama_model_default_params()` and offers no way to
    set `use_extra_bufts` (llama.cpp's `--no-repack`). With it on, quantized weights are
    repacked for AMX, which faults on the CPUs we run on (SIGILL at `ldtilecfg`), so we swap in
    a defaults function that sets the field. Process-wide while active: hold it only around a
    load (or for the lifetime of a server that loads lazily).
    """
    from llama_cpp import llama as llama_module

    low_level = llama_module.llama_cpp  # the module object `Llama.__init__` reads defaults from
    original = low_level.llama_model_default_params

    def model_params() -> Any:
        params = original()
        params.use_extra_bufts = use_extra_bufts
        return params

    with _LOAD_LOCK:
        low_level.llama_model_default_params = model_params
        try:
            yield
        finally:
            low_level.llama_model_default_params = original


@contextlib.contextmanager
def _context_defaults(*, n_seq_max: int) -> Iterator[None]:
    """While active, llama.cpp context params default to `n_seq_max` sequences in one unified
    KV cache. `Llama()` has no argument for either (it sets them only for embeddings). Unified:
    every sequence may use the whole `n_ctx`, and sequences that share a prefix share its cells.
    Call it with `_LOAD_LOCK` held (inside `model_defaults`)."""
    from llama_cpp import llama as llama_module

    low_level = llama_module.llama_cpp
    original = low_level.llama_context_default_params

    def context_params() -> Any:
        params = original()
        params.n_seq_max = n_seq_max
        params.kv_unified = True
        return params

    low_level.llama_context_default_params = context_params
    try:
        yield
    finally:
        low_level.llama_context_default_params = original


def load_llama(
    path: str | os.PathLike[str],
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    seed: int = 0,
    verbose: bool = False,
    use_extra_bufts: bool = False,
    n_seq_max: int = 1,
) -> Any:
    """Load a GGUF into a `llama_cpp.Llama` with AMX repacking off (see `model_defaults`).

    `n_threads` defaults to the usable cores minus one (at least one) and is used for prompt
    batches too. `n_seq_max` > 1 gives the context that many sequences over one unified KV cache
    of `n_ctx` cells (batched sampling, e.g. the runner's GroupThink); 1 leaves llama.cpp's
    defaults as they are.
    """
    import llama_cpp

    if not Path(path).is_file():
        raise FileNotFoundError(f"GGUF model {path} does not exist")
    if n_seq_max < 1:
        raise ValueError("n_seq_max must be at least 1")
    threads = n_threads or default_threads()
    sequences = _context_defaults(n_seq_max=n_seq_max) if n_seq_max > 1 else contextlib.nullcontext()
    with model_defaults(use_extra_bufts=use_extra_bufts), sequences:
        llm = llama_cpp.Llama(
            str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            seed=seed,
            verbose=verbose,
        )
    if (
        bool(llm.model_params.use_extra_bufts) != use_extra_bufts
    ):  # the field did not reach the load
        llm.close()
        raise RuntimeError("use_extra_bufts did not reach llama.cpp's model params")
    if int(llama_cpp.llama_n_seq_max(llm.ctx)) != n_seq_max:
        llm.close()
        raise RuntimeError(f"n_seq_max={n_seq_max} did not reach llama.cpp's context params")
    return llm


def stop_token_ids(llm: Any) -> frozenset[int]:
    """Gemma's end-of-generation tokens: `<end_of_turn>` (106) and the model's eos."""
    return frozenset({END_OF_TURN_ID, int(llm.token_eos())})


def tokenize_prompt(llm: Any, prompt: str) -> list[int]:
    """Prompt tokens the way every engine sends them: BOS added once, turn markers parsed."""
    return llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)


def next_token_logits(llm: Any) -> Any:
    """The logits (numpy float32, a copy) after the last evaluated token."""
    import llama_cpp
    import numpy as np

    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def greedy_steps(
    llm: Any,
    prompt_tokens: list[int],
    max_tokens: int,
    stop_ids: Iterable[int] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Greedy decoding (argmax, first index on exact ties) yielding (token, logits it came from).

    Stops after `max_tokens` tokens (fewer if the context fills up) or after yielding a stop token
    (included). ValueError when the prompt alone fills the context. The context is reset first, so
    calls are independent of each other.
    """
    import numpy as np

    if not prompt_tokens:
        raise ValueError("greedy decoding needs at least one prompt token")
    room = llm.n_ctx() - len(prompt_tokens)
    if room <= 0:
        raise ValueError(f"prompt is {len(prompt_tokens)} tokens; the context holds {llm.n_ctx()}")
    max_tokens = min(max_tokens, room)
    stops = stop_token_ids(llm) if stop_ids is None else frozenset(stop_ids)
    llm.reset()
    llm.eval(list(prompt_tokens))
    for _ in range(max_tokens):
        logits = next_token_logits(llm)
        token = int(np.argmax(logits))
        yield token, logits
        if token in stops:
            return
        llm.eval([token])


def greedy_tokens(
    llm: Any,
    prompt_tokens: list[int],
    max_tokens: int,
    stop_ids: Iterable[int] | None = None,
) -> list[int]:
    """Deterministic continuation of `prompt_tokens` (temperature 0: argmax at every step).

    The result ends with the stop token when one was produced (default stop ids: 106
    `<end_of_turn>` and the model's eos), so two models that stop at the same place compare equal
    token for token.
    """
    return [token for token, _ in greedy_steps(llm, prompt_tokens, max_tokens, stop_ids)]


def complete(llm: Any, prompt: str, max_tokens: int) -> str:
    """Greedy completion of a rendered chat prompt, cut at the Gemma stop tokens and strings."""
    tokens = greedy_tokens(llm, tokenize_prompt(llm, prompt), max_tokens)
    return text_of(llm, tokens)


def text_of(llm: Any, tokens: Iterable[int]) -> str:
    """Generated tokens as the model's turn text: stop tokens dropped, cut at the stop strings."""
    stops = stop_token_ids(llm)
    body = [t for t in tokens if t not in stops]
    text = llm.detokenize(body, special=True).decode("utf-8", errors="replace")
    for stop in STOP_STRINGS:
        text = text.split(stop, 1)[0]
    return text
