"""Engine: llama.cpp embedded in the process (llama-cpp-python), the default.

Generation is blocking C code, so it runs on one dedicated worker thread and its tokens are
forwarded to the event loop as they come. One model instance, one generation at a time:
the single-thread executor serialises every call into the model (a llama context is not
thread-safe), and the lock keeps the turns of concurrent runs from interleaving.

With a `ToolConstraint` the turn decodes under the tools' grammar (modelkit.tool_grammar)
through `modelkit.decoding`, the decoder the evaluator's gate uses too.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelkit import llama as modelkit_llama
from modelkit.decoding import EOG, decode, find_stop, grammar_loads, held_back
from modelkit.llama import model_defaults  # noqa: F401 - llamacpp_server imports it from here
from modelkit.tool_grammar import ToolConstraint, ToolGrammar, build_grammar

from ..domain import PromptTooLongError
from ..ports import Chunk, Sample

_DONE = object()


def load_llama(model_path: str, *, n_ctx: int, n_threads: int, use_extra_bufts: bool, seed: int = 0,
               n_seq_max: int = 1) -> Any:
    """Load a GGUF with llama-cpp-python, with `use_extra_bufts` applied to the model params and
    `n_seq_max` sequences (GroupThink samples decode together as sequences)."""
    return modelkit_llama.load_llama(
        model_path, n_ctx=n_ctx, n_threads=n_threads, seed=seed, use_extra_bufts=use_extra_bufts, n_seq_max=n_seq_max
    )


class LlamaCppEngine:
    name = "llamacpp"

    def __init__(self, llm: Any, *, model_version: str, repeat_penalty: float = 1.0, seed: int = 0) -> None:
        self.llm = llm
        self.seed = seed
        self.model_version = model_version
        self.repeat_penalty = repeat_penalty
        self.n_ctx = llm.n_ctx()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._lock = asyncio.Lock()

    @classmethod
    def load(cls, model_path: str, *, model_version: str, n_ctx: int, n_threads: int, use_extra_bufts: bool,
             repeat_penalty: float = 1.0, seed: int = 0, n_seq_max: int = 1) -> LlamaCppEngine:
        llm = load_llama(model_path, n_ctx=n_ctx, n_threads=n_threads, use_extra_bufts=use_extra_bufts, seed=seed,
                         n_seq_max=n_seq_max)
        return cls(llm, model_version=model_version, repeat_penalty=repeat_penalty, seed=seed)

    @property
    def use_extra_bufts(self) -> bool:
        return bool(self.llm.model_params.use_extra_bufts)

    def tokenize(self, prompt: str) -> list[int]:
        # The turn markers are special tokens: parse them; BOS is added here, once.
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)

    async def generate(self, prompt: str, *, max_tokens: int, temperature: float,
                       stop: Sequence[str], constraint: ToolConstraint | None = None) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        async with self._lock:
            tokens = await loop.run_in_executor(self._executor, self.tokenize, prompt)
            room = self.n_ctx - len(tokens)
            if room <= 0:
                raise PromptTooLongError(f"prompt is {len(tokens)} tokens; the context holds {self.n_ctx}")
            queue: asyncio.Queue[Any] = asyncio.Queue()
            cancel = threading.Event()

            def emit(item: Any) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            work = loop.run_in_executor(
                self._executor, self._generate, tokens, min(max_tokens, room), temperature, tuple(stop), cancel, emit,
                constraint,
            )
            finished = False
            try:
                while (item := await queue.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
                finished = True
            finally:
                cancel.set()
                if not finished:
                    await asyncio.wait([work])  # the thread stops within one token
            await work

    def _generate(self, tokens: list[int], max_tokens: int, temperature: float, stop: tuple[str, ...],
                  cancel: threading.Event, emit: Any, constraint: ToolConstraint | None = None) -> None:
        """Runs on the engine thread: sample tokens, decode them to text, hand chunks to the loop."""
        llm = self.llm
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = ""  # decoded output so far, for stop strings that are not single tokens
        sent = 0
        count = 0
        finish = "length"
        generator: Iterator[int] | None = None
        try:
            grammar = self.grammar(constraint) if constraint is not None else None
            generator = decode(llm, tokens, temperature=temperature, repeat_penalty=self.repeat_penalty,
                                grammar=grammar.text if grammar else None)
            for token in generator:
                if cancel.is_set():
                    break
                if token is EOG:  # <end_of_turn> (106), <eos>
                    finish = "stop"
                    break
                count += 1
                text += decoder.decode(llm.detokenize([token], special=True))
                cut = find_stop(text, stop)
                if cut is not None:
                    text, finish = text[:cut], "stop"
                    break
                safe = len(text) - held_back(text, stop)
                if safe > sent:
                    emit(Chunk(text[sent:safe]))
                    sent = safe
                if count >= max_tokens:
                    break
            text += decoder.decode(b"", final=True)
            emit(Chunk(text[sent:], prompt_tokens=len(tokens), completion_tokens=count, finish_reason=finish,
                       constrained=grammar is not None,
                       unconstrained_tools=grammar.unconstrained_tools if grammar else ()))
        except Exception as exc:  # handed to the event loop, where the caller sees it raised
            emit(exc)
        finally:
            if generator is not None:
                generator.close()
            emit(_DONE)

    def grammar(self, constraint: ToolConstraint) -> ToolGrammar:
        """The turn's grammar, each tool's part checked to load in llama.cpp (cached by content)."""
        return build_grammar(constraint, compiles=self._compiles)

    def _compiles(self, grammar: str) -> bool:
        return grammar_loads(self.llm, grammar)

    async def ping(self) -> None:
        return None  # in-process: loaded means ready

    async def close(self) -> None:
        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.llm.close)
        self._executor.shutdown(wait=False)

    async def sample(self, prompt: str, *, n: int, max_tokens: int, temperature: float, stop: Sequence[str],
                     grammar: str | None = None, constraint: ToolConstraint | None = None) -> list[Sample]:
        """GroupThink: `n` samples of the turn, decoded together as llama.cpp sequences that share
        the prompt's KV cache (adapters/llamacpp_batch.py). On the engine thread, under its lock.

        A `constraint` decodes every sample under the same grammar as `generate` (`self.grammar`);
        `grammar` is a GBNF text of the caller's own. A context loaded with fewer sequences than
        `n` samples in rounds of its n_seq_max; each round reuses the prompt's cells the round
        before left in the cache."""
        from .llamacpp_batch import sample_batch, sequences_of

        loop = asyncio.get_running_loop()
        async with self._lock:
            tokens = await loop.run_in_executor(self._executor, self.tokenize, prompt)
            width = min(n, sequences_of(self.llm))
            if self.n_ctx - len(tokens) < width:
                raise PromptTooLongError(
                    f"prompt is {len(tokens)} tokens; the context holds {self.n_ctx}, shared by {width} samples")
            cancel = threading.Event()

            def rounds() -> list[Sample]:
                rules = self.grammar(constraint) if constraint is not None else None
                samples: list[Sample] = []
                for first in range(0, n, width):
                    if cancel.is_set():
                        break
                    batch, _ = sample_batch(
                        self.llm, tokens, n=min(width, n - first), max_tokens=max_tokens, temperature=temperature,
                        stop=tuple(stop), grammar=rules.text if rules is not None else grammar, seed=self.seed,
                        first_sample=first, repeat_penalty=self.repeat_penalty, cancel=cancel)
                    samples += batch
                if rules is not None:
                    samples = [dataclasses.replace(s, constrained=True, unconstrained_tools=rules.unconstrained_tools)
                               for s in samples]
                return samples

            work = loop.run_in_executor(self._executor, rounds)
            try:
                return await asyncio.shield(work)
            finally:
                if not work.done():  # cancelled (the run's timeout): stop the thread within one step
                    cancel.set()
                    await asyncio.wait([work])
