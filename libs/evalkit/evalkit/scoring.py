"""Score a model on suites: one generation per item, then every suite's score from them.

The model answers each item of the item suites (`ast`, `regression`) once: the prompt is the
item's conversation and tools rendered exactly as the runner renders them
(`modelkit.chat_format.render_prompt`), decoding is greedy with a max-token bound, the output is
parsed with `chat_format.parse_output` and judged by the AST checker. `json_validity` and
`latency` suites are computed from those same generations: no second pass.

Blocking (llama.cpp is C code): a service runs `evaluate` in a worker thread.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelkit.chat_format import parse_output, render_prompt

from . import ast_checker
from .suites import JSON_VALIDITY, LATENCY, Suite, messages_of
from .tools import function_of, schema_problem, tool_specs

logger = logging.getLogger("evalkit.scoring")

CATEGORY_ITEMS = "category_items"  # key of an accuracy's details: category -> items scored (the gate reads it)

GENERATION_ERROR = "generation_error"  # the model could not answer (prompt longer than the context, ...)


class TextModel(Protocol):
    def generate(self, prompt: str, max_tokens: int, tools: Sequence[Mapping[str, Any]] = ()) -> str:
        """Greedy completion of a rendered prompt, cut at the end of the model's turn; `tools` are
        the offered tools (a model that decodes as the runner does constrains its calls to them).
        ValueError when the prompt cannot be answered (too long for the context)."""
        ...


class GgufModel:
    """A GGUF loaded once through `modelkit.llama` (AMX repack off). `constrained`: decode the
    calls under the offered tools' grammar (tool_choice auto), as the runner serves them
    (`modelkit.decoding`, the runner's own decoder), so the gate measures what users get."""

    def __init__(self, llm: Any, *, constrained: bool = False) -> None:
        self.llm = llm
        self.constrained = constrained

    @classmethod
    def load(cls, path: str | Path, *, n_ctx: int = 4096, n_threads: int | None = None, seed: int = 0,
             constrained: bool = False) -> GgufModel:
        from modelkit.llama import load_llama

        return cls(load_llama(path, n_ctx=n_ctx, n_threads=n_threads, seed=seed), constrained=constrained)

    def generate(self, prompt: str, max_tokens: int, tools: Sequence[Mapping[str, Any]] = ()) -> str:
        from modelkit.llama import complete

        if not (self.constrained and tools):
            return complete(self.llm, prompt, max_tokens)
        from modelkit.decoding import complete_tokens, grammar_loads
        from modelkit.llama import text_of, tokenize_prompt
        from modelkit.tool_grammar import ToolConstraint, build_grammar

        grammar = build_grammar(ToolConstraint(tuple(tools), "auto"), compiles=lambda g: grammar_loads(self.llm, g))
        tokens = tokenize_prompt(self.llm, prompt)
        return text_of(self.llm, complete_tokens(self.llm, tokens, min(max_tokens, self.llm.n_ctx() - len(tokens)),
                                                 grammar=grammar.text))

    def close(self) -> None:
        close = getattr(self.llm, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class ItemResult:
    suite: str
    id: str
    category: str
    expect: str
    code: str  # ast_checker reason code, or generation_error
    detail: str
    output: str
    seconds: float
    calls: int  # tool-call blocks in the output
    json_valid: bool | None  # None when the output holds no tool call
    json_problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == ast_checker.OK


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    kind: str
    score: float
    per_category: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    suite: str
    item_id: str
    elapsed_s: float


@dataclass(frozen=True)
class Evaluation:
    scores: dict[str, SuiteResult]
    items: list[ItemResult]
    seconds: float


class EvaluationCancelledError(Exception):
    """`should_stop` said stop: the evaluation was abandoned part-way."""


def prompt_of(item: Mapping[str, Any]) -> str:
    """The item as the runner would prompt the model: conversation + tools in the runner's format."""
    return render_prompt(messages_of(item), tools_of(item))


def tools_of(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    return tool_specs([function_of(f) for f in item.get("function") or []])


def answer_item(model: TextModel, suite: str, item: Mapping[str, Any], max_tokens: int) -> ItemResult:
    """Generate, parse and judge one item."""
    tools = tools_of(item)
    prompt = render_prompt(messages_of(item), tools)
    started = time.perf_counter()
    try:
        output = model.generate(prompt, max_tokens, tools)
    except ValueError as exc:
        return ItemResult(suite, item["id"], item["category"], item["expect"], GENERATION_ERROR, str(exc)[:300], "",
                          time.perf_counter() - started, 0, None)
    seconds = time.perf_counter() - started
    parsed = parse_output(output)
    verdict = ast_checker.check(item, parsed.calls)
    problem = None
    for call in parsed.calls:
        problem = call.error or schema_problem(tools, call.name, call.arguments)
        if problem:
            break
    valid = None if not parsed.calls else problem is None
    return ItemResult(suite, item["id"], item["category"], item["expect"], verdict.code, verdict.detail, output,
                      seconds, len(parsed.calls), valid, problem)


def evaluate(model: TextModel, suites: Sequence[Suite], *, max_tokens: int = 128,
             progress: Callable[[Progress], None] | None = None, log_every: int = 10,
             should_stop: Callable[[], bool] = lambda: False, label: str = "") -> Evaluation:
    """Answer every item of the item suites once, then score every suite."""
    work = [(s.name, item) for s in suites if s.generative for item in s.items]
    started = time.perf_counter()
    results: list[ItemResult] = []
    for n, (suite, item) in enumerate(work, start=1):
        if should_stop():
            raise EvaluationCancelledError(f"stopped after {n - 1} of {len(work)} items")
        results.append(answer_item(model, suite, item, max_tokens))
        elapsed = time.perf_counter() - started
        if progress is not None:
            progress(Progress(n, len(work), suite, item["id"], elapsed))
        if n % max(1, log_every) == 0 or n == len(work):
            logger.info("%s%d/%d items answered (%.1fs, %.2fs per item)", f"{label}: " if label else "", n,
                        len(work), elapsed, elapsed / n)
    return Evaluation(score_suites(suites, results), results, time.perf_counter() - started)


# --------------------------------------------------------------------------- scores


def score_suites(suites: Sequence[Suite], results: Sequence[ItemResult]) -> dict[str, SuiteResult]:
    item_suites = [s.name for s in suites if s.generative]
    scores: dict[str, SuiteResult] = {}
    for s in suites:
        if s.generative:
            mine = [r for r in results if r.suite == s.name]
            if not mine:
                continue  # a regression suite whose source had no examples: nothing to score
            scores[s.name] = accuracy(s.name, s.kind, mine)
            continue
        measured = set(s.of or item_suites)
        mine = [r for r in results if r.suite in measured]
        if not mine:
            continue
        scores[s.name] = json_validity(s.name, mine) if s.kind == JSON_VALIDITY else latency(s.name, mine)
    return scores


def accuracy(suite: str, kind: str, results: Sequence[ItemResult]) -> SuiteResult:
    """Share of items passed, overall and per category (with each category's item count, which
    the gate needs: `details["category_items"]`); reason codes counted."""
    by_category: dict[str, list[ItemResult]] = {}
    codes: dict[str, int] = {}
    for r in results:
        by_category.setdefault(r.category, []).append(r)
        codes[r.code] = codes.get(r.code, 0) + 1
    per_category = {c: sum(r.ok for r in rs) / len(rs) for c, rs in sorted(by_category.items())}
    passed = sum(r.ok for r in results)
    return SuiteResult(suite, kind, passed / len(results), per_category,
                       {"items": len(results), "passed": passed, "codes": dict(sorted(codes.items())),
                        CATEGORY_ITEMS: {c: len(rs) for c, rs in sorted(by_category.items())}})


def json_validity(suite: str, results: Sequence[ItemResult]) -> SuiteResult:
    """Of the outputs that contain a tool call, the share whose every call parses and matches the
    offered tool's schema. 0.0 when no output contained a call (nothing to credit)."""
    attempted = [r for r in results if r.json_valid is not None]
    valid = sum(bool(r.json_valid) for r in attempted)
    by_category: dict[str, list[ItemResult]] = {}
    for r in attempted:
        by_category.setdefault(r.category, []).append(r)
    per_category = {c: sum(bool(r.json_valid) for r in rs) / len(rs) for c, rs in sorted(by_category.items())}
    return SuiteResult(suite, JSON_VALIDITY, valid / len(attempted) if attempted else 0.0, per_category,
                       {"outputs": len(results), "with_calls": len(attempted), "valid": valid})


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in [0, 1])."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency(suite: str, results: Sequence[ItemResult]) -> SuiteResult:
    """Seconds per request. The score is p95 (what the gate compares); p50 and mean in details."""
    seconds = [r.seconds for r in results]
    p50, p95 = percentile(seconds, 0.5), percentile(seconds, 0.95)
    return SuiteResult(suite, LATENCY, p95, {},
                       {"requests": len(seconds), "p50_s": p50, "p95_s": p95, "mean_s": sum(seconds) / len(seconds)})
