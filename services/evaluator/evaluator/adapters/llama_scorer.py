"""Scorer on llama.cpp: the GGUF is loaded once per call (through `modelkit.llama`) and every item
answered greedily — calls under the offered tools' grammar unless EVAL__CONSTRAINED=off, as the
runner decodes them — all on a worker thread so the event loop stays free."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from evalkit.scoring import Evaluation, GgufModel, Progress, evaluate
from evalkit.suites import Suite


class LlamaScorer:
    def __init__(self, *, n_ctx: int, n_threads: int | None, max_tokens: int, log_every: int,
                 constrained: bool = True) -> None:
        self.n_ctx = n_ctx
        self.constrained = constrained
        self.n_threads = n_threads
        self.max_tokens = max_tokens
        self.log_every = log_every

    async def score(self, gguf: Path, suites: Sequence[Suite], *, label: str,
                    on_progress: Callable[[Progress], None], stop: threading.Event) -> Evaluation:
        return await asyncio.to_thread(self._score, gguf, suites, label, on_progress, stop)

    def _score(self, gguf: Path, suites: Sequence[Suite], label: str, on_progress: Callable[[Progress], None],
               stop: threading.Event) -> Evaluation:
        model = GgufModel.load(gguf, n_ctx=self.n_ctx, n_threads=self.n_threads, constrained=self.constrained)
        try:
            return evaluate(model, suites, max_tokens=self.max_tokens, progress=on_progress,
                            log_every=self.log_every, should_stop=stop.is_set, label=label)
        finally:
            model.close()
