"""What schema-constrained decoding costs: BFCL-format items through the runner's own llama.cpp
engine (`LlamaCppEngine.generate`), with the tools' grammar and without.

    .venv/bin/python bench/grammar_cost.py [--files simple.jsonl,multiple.jsonl,...] [--n 5]
        [--max-tokens 64] [--tool-choice auto|required] [--model GGUF] [--threads 1] [--json out.json]

For N items of each file (evalkit.suites.sample, seeded), prompts rendered as the runner renders
them (evalkit.scoring.prompt_of; tools via evalkit.tools.tool_specs), each item is answered
greedily twice, freely (`off`) and under the grammar (`on`, `ToolConstraint(tools, choice)`),
the KV cache cleared before each so both pay the prompt. Reported per mode: latency per item
p50/p95, milliseconds per generated token, valid-call rate (parsed and valid against the schema)
and AST accuracy; for `on` also how often the sampler's pick was rejected and the vocabulary
masked. Grammar building: cold (empty cache: JSON Schema -> GBNF for every tool, each tool's
part loaded once in llama.cpp as a check), warm (the cache's hit), and llama.cpp loading the
finished grammar (done at the start of every constrained turn).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BFCL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "bfcl-dev"
DEFAULT_FILES = "simple.jsonl,multiple.jsonl,parallel.jsonl,irrelevance.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default=DEFAULT_FILES,
                        help=f"comma-separated BFCL-format files (relative ones under {BFCL_DIR})")
    parser.add_argument("--n", type=int, default=5, help="items per file")
    parser.add_argument("--seed", type=int, default=0, help="which items (evalkit.suites.sample)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--tool-choice", choices=("auto", "required"), default="auto")
    parser.add_argument("--model", type=Path, default=None, help="GGUF; default: the bundled base model")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    return parser.parse_args(argv)


class RejectionCounter:
    """Counts the grammar's verdicts on the sampler's picks (wraps the engine's check; bench only)."""

    def __init__(self) -> None:
        from modelkit import decoding

        self.module = decoding  # the decoder the engine uses (modelkit.decoding.decode calls `allowed`)
        self.check = decoding.allowed
        self.checks = self.rejections = 0

    def __enter__(self) -> RejectionCounter:
        def counted(*args: Any) -> bool:
            allowed = self.check(*args)
            self.checks += 1
            self.rejections += not allowed
            return allowed

        self.module.allowed = counted
        return self

    def __exit__(self, *exc: Any) -> None:
        self.module.allowed = self.check


def judge(item: dict[str, Any], tools: list[dict[str, Any]], text: str) -> tuple[bool, bool | None]:
    """(correct by the AST checker, every call valid against its schema; None without calls)."""
    from evalkit import ast_checker
    from evalkit.tools import schema_problem
    from modelkit.chat_format import parse_output

    calls = parse_output(text).calls
    ok = ast_checker.check(item, calls).ok
    if not calls:
        return ok, None
    return ok, all(c.error is None and schema_problem(tools, c.name, c.arguments) is None for c in calls)


async def answer(engine: Any, prompt: str, max_tokens: int, constraint: Any) -> tuple[str, Any, float]:
    from modelkit.chat_format import STOP_STRINGS

    engine.llm.reset()  # both modes pay the prompt
    started = time.perf_counter()
    chunks = [c async for c in engine.generate(prompt, max_tokens=max_tokens, temperature=0.0, stop=STOP_STRINGS,
                                               constraint=constraint)]
    return "".join(c.text for c in chunks), chunks[-1], time.perf_counter() - started


def grammar_times(engine: Any, constraint: Any) -> dict[str, float]:
    """Milliseconds: cold build (empty cache, per-tool load check), warm build, llama.cpp load."""
    from modelkit.tool_grammar import GrammarCache, build_grammar

    cache = GrammarCache()
    t0 = time.perf_counter()
    grammar = build_grammar(constraint, compiles=engine._compiles, cache=cache)
    t1 = time.perf_counter()
    build_grammar(constraint, compiles=engine._compiles, cache=cache)
    t2 = time.perf_counter()
    assert engine._compiles(grammar.text)
    t3 = time.perf_counter()
    return {"cold_ms": (t1 - t0) * 1000, "warm_ms": (t2 - t1) * 1000, "load_ms": (t3 - t2) * 1000,
            "rules": grammar.text.count("\n"), "unconstrained_tools": len(grammar.unconstrained_tools)}


def summary(rows: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    from evalkit.scoring import percentile

    got = [r[mode] for r in rows]
    seconds = [g["seconds"] for g in got]
    tokens = sum(g["tokens"] for g in got)
    with_calls = [g["valid"] for g in got if g["valid"] is not None]
    out = {
        "items": len(got),
        "p50_s": percentile(seconds, 0.5),
        "p95_s": percentile(seconds, 0.95),
        "mean_s": statistics.fmean(seconds),
        "ms_per_token": 1000 * sum(seconds) / tokens if tokens else None,
        "tokens": tokens,
        "valid_calls": (sum(with_calls) / len(with_calls)) if with_calls else None,
        "turns_with_calls": len(with_calls),
        "accuracy": sum(g["ok"] for g in got) / len(got),
    }
    if mode == "on":
        checks = sum(g["checks"] for g in got)
        out["rejected_picks"] = sum(g["rejections"] for g in got)
        out["rejected_share"] = out["rejected_picks"] / checks if checks else None
    return out


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from agent_runner.adapters.llamacpp_engine import LlamaCppEngine
    from evalkit.scoring import percentile, prompt_of, tools_of
    from evalkit.suites import read_items_file, sample
    from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
    from modelkit.tool_grammar import ToolConstraint

    items: list[dict[str, Any]] = []
    for name in args.files.split(","):
        path = Path(name) if Path(name).is_absolute() or Path(name).exists() else BFCL_DIR / name
        items += sample(read_items_file(path), args.n, seed=args.seed)
    model = args.model or bundled_gguf_path()
    print(f"{len(items)} items ({args.n} per file of {args.files}), model {model.name}, tool_choice="
          f"{args.tool_choice}, max_tokens={args.max_tokens}, threads={args.threads}", flush=True)
    engine = LlamaCppEngine.load(str(model), model_version=BUNDLED_MODEL_VERSION, n_ctx=args.n_ctx,
                                 n_threads=args.threads, use_extra_bufts=False)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for i, item in enumerate(items, start=1):
            tools = tools_of(item)
            prompt = prompt_of(item)
            constraint = ToolConstraint(tuple(tools), args.tool_choice)
            row: dict[str, Any] = {"id": item["id"], "category": item["category"], "tools": len(tools),
                                   "grammar": grammar_times(engine, constraint)}
            text, last, seconds = await answer(engine, prompt, args.max_tokens, None)
            ok, valid = judge(item, tools, text)
            row["off"] = {"seconds": seconds, "tokens": last.completion_tokens, "ok": ok, "valid": valid, "text": text}
            with RejectionCounter() as counter:
                text, last, seconds = await answer(engine, prompt, args.max_tokens, constraint)
            ok, valid = judge(item, tools, text)
            row["on"] = {"seconds": seconds, "tokens": last.completion_tokens, "ok": ok, "valid": valid, "text": text,
                         "checks": counter.checks, "rejections": counter.rejections,
                         "unconstrained_tools": list(last.unconstrained_tools)}
            rows.append(row)
            print(f"[{i}/{len(items)} {time.perf_counter() - started:.0f}s] {item['id']}: "
                  f"off {row['off']['seconds']:.2f}s/{row['off']['tokens']}t, on {row['on']['seconds']:.2f}s/"
                  f"{row['on']['tokens']}t ({counter.rejections}/{counter.checks} picks masked), grammar cold "
                  f"{row['grammar']['cold_ms']:.1f} ms", flush=True)
    finally:
        await engine.close()

    table = {mode: summary(rows, mode) for mode in ("off", "on")}
    builds = {key: [r["grammar"][key] for r in rows] for key in ("cold_ms", "warm_ms", "load_ms")}
    grammar = {key: {"p50": percentile(values, 0.5), "max": max(values)} for key, values in builds.items()}
    print(f"\n{'mode':<5} {'p50 s':>7} {'p95 s':>7} {'ms/tok':>7} {'valid':>6} {'acc':>5} {'masked':>7}")
    for mode, s in table.items():
        valid = f"{s['valid_calls']:.0%}" if s["valid_calls"] is not None else "-"
        masked = f"{s['rejected_share']:.0%}" if s.get("rejected_share") is not None else "-"
        print(f"{mode:<5} {s['p50_s']:>7.2f} {s['p95_s']:>7.2f} {s['ms_per_token']:>7.1f} {valid:>6} "
              f"{s['accuracy']:>5.0%} {masked:>7}")
    ratio = [r["on"]["seconds"] / r["off"]["seconds"] for r in rows if r["off"]["seconds"]]
    print(f"on/off latency per item: p50 {percentile(ratio, 0.5):.2f}x, max {max(ratio):.2f}x")
    print("grammar ms: " + ", ".join(f"{k} p50 {v['p50']:.2f} max {v['max']:.2f}" for k, v in grammar.items()))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": table,
                                         "grammar_ms": grammar, "items": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
