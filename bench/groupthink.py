"""GroupThink against greedy decoding on a BFCL-format file, with the runner's own llama.cpp engine.

    .venv/bin/python bench/groupthink.py [--file ../shared/eval/bfcl-dev/simple.jsonl] [--k 10]
        [--samples 3,5] [--temperature 0.7] [--max-tokens 64] [--model GGUF] [--threads 1]
        [--constrained [--tool-choice required]] [--no-sequential] [--json out.json]

For K items (evalkit.suites.sample: categories take turns, seeded) each item is answered:

- greedy: `LlamaCppEngine.generate` at temperature 0 (the runner's default turn);
- groupthink-N: `LlamaCppEngine.sample` (N sequences sharing the prompt's KV cache, one batch
  per step), then `agent_runner.groupthink.vote`; the winner is judged;
- sequential-N (timing only): the same N samples drawn one after another with `sample_batch(n=1)`,
  twice: `fresh` clears the KV cache before each (the prompt evaluated N times, as N independent
  generations are), `cached` keeps the prompt's cells (only the samples' tokens are repeated).
  Same seeds as the batch, so the samples are the same up to floating-point differences.

Every answer is parsed with `chat_format.parse_output` and judged by evalkit's AST checker
(the BFCL rules). Prompts are rendered exactly as the runner renders them (`evalkit.scoring.
prompt_of`). `--constrained` decodes every mode under the tools' grammar
(`modelkit.tool_grammar`, the engine's `grammar`; `--tool-choice auto|required`).

Prints one line per item and a table: accuracy, valid-call rate, mean agreement, latency p50/p95
per mode, and batched vs sequential sampling time per N.
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

DEFAULT_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "bfcl-dev" / "simple.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE, help="BFCL-format items (JSONL)")
    parser.add_argument("--k", type=int, default=10, help="items to answer")
    parser.add_argument("--seed", type=int, default=0, help="which items (evalkit.suites.sample)")
    parser.add_argument("--samples", default="3,5", help="GroupThink N values, comma-separated")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", type=Path, default=None, help="GGUF; default: the bundled base model")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-sequential", action="store_true", help="skip the sequential timing baselines")
    parser.add_argument("--constrained", action="store_true", help="decode under the tools' grammar")
    parser.add_argument("--tool-choice", choices=("auto", "required"), default="auto",
                        help="the grammar's tool choice (with --constrained)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    return parser.parse_args(argv)


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


def constraint_for(tools: list[dict[str, Any]], choice: str) -> Any:
    """The turn's constraint, as the runner builds it for `tool_choice`."""
    from modelkit.tool_grammar import ToolConstraint

    return ToolConstraint(tuple(tools), mode=choice)


async def greedy(engine: Any, prompt: str, max_tokens: int, constraint: Any) -> str:
    from modelkit.chat_format import STOP_STRINGS

    extra = {"constraint": constraint} if constraint is not None else {}
    parts = [c.text async for c in engine.generate(prompt, max_tokens=max_tokens, temperature=0.0,
                                                   stop=STOP_STRINGS, **extra)]
    return "".join(parts)


def sequential(engine: Any, prompt: str, n: int, args: argparse.Namespace, constraint: Any,
               fresh: bool) -> float:
    """Seconds to draw the same n samples one after another (see the module docstring)."""
    from agent_runner.adapters.llamacpp_batch import sample_batch
    from modelkit.chat_format import STOP_STRINGS

    tokens = engine.tokenize(prompt)
    grammar = engine.grammar(constraint).text if constraint is not None else None
    started = time.perf_counter()
    for i in range(n):
        if fresh:
            engine.llm.reset()
        sample_batch(engine.llm, tokens, n=1, max_tokens=args.max_tokens, temperature=args.temperature,
                     stop=STOP_STRINGS, grammar=grammar, seed=engine.seed, first_sample=i)
    return time.perf_counter() - started


def summary(rows: list[dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    from evalkit.scoring import percentile

    out: dict[str, Any] = {}
    for mode in modes:
        got = [r[mode] for r in rows if mode in r]
        if not got:
            continue
        seconds = [g["seconds"] for g in got]
        with_calls = [g["valid"] for g in got if g["valid"] is not None]
        agreements = [g["agreement"] for g in got if g.get("agreement") is not None]
        out[mode] = {
            "items": len(got),
            "accuracy": sum(g["ok"] for g in got) / len(got),
            "valid_calls": (sum(with_calls) / len(with_calls)) if with_calls else None,
            "mean_agreement": statistics.fmean(agreements) if agreements else None,
            "p50_s": percentile(seconds, 0.5),
            "p95_s": percentile(seconds, 0.95),
            "mean_s": statistics.fmean(seconds),
        }
    return out


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from agent_runner.adapters.llamacpp_engine import LlamaCppEngine
    from agent_runner.groupthink import vote
    from evalkit.scoring import prompt_of, tools_of
    from evalkit.suites import read_items_file, sample
    from modelkit.base_model import BUNDLED_MODEL_VERSION, bundled_gguf_path
    from modelkit.chat_format import STOP_STRINGS

    ns = sorted({int(n) for n in args.samples.split(",") if n.strip()})
    items = sample(read_items_file(args.file), args.k, seed=args.seed)
    model = args.model or bundled_gguf_path()
    print(f"{len(items)} items of {args.file}, model {model.name}, N={ns}, T={args.temperature}, "
          f"max_tokens={args.max_tokens}, threads={args.threads}, constrained={args.constrained}"
          f"{f' ({args.tool_choice})' if args.constrained else ''}", flush=True)
    engine = LlamaCppEngine.load(str(model), model_version=BUNDLED_MODEL_VERSION, n_ctx=args.n_ctx,
                                 n_threads=args.threads, use_extra_bufts=False, n_seq_max=max(ns))
    modes = ["greedy", *(f"groupthink-{n}" for n in ns)]
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for i, item in enumerate(items, start=1):
            tools = tools_of(item)
            prompt = prompt_of(item)
            constraint = constraint_for(tools, args.tool_choice) if args.constrained else None
            row: dict[str, Any] = {"id": item["id"], "category": item["category"]}
            t0 = time.perf_counter()
            text = await greedy(engine, prompt, args.max_tokens, constraint)
            ok, valid = judge(item, tools, text)
            row["greedy"] = {"ok": ok, "valid": valid, "seconds": time.perf_counter() - t0, "text": text}
            for n in ns:
                t0 = time.perf_counter()
                samples = await engine.sample(prompt, n=n, max_tokens=args.max_tokens, temperature=args.temperature,
                                              stop=STOP_STRINGS, constraint=constraint)
                result = vote(samples)
                seconds = time.perf_counter() - t0
                ok, valid = judge(item, tools, result.winner.text)
                row[f"groupthink-{n}"] = {"ok": ok, "valid": valid, "seconds": seconds, "agreement": result.agreement,
                                         "text": result.winner.text,
                                         "sample_tokens": sum(s.completion_tokens for s in samples)}
                if not args.no_sequential:
                    row[f"sequential-fresh-{n}"] = sequential(engine, prompt, n, args, constraint, fresh=True)
                    row[f"sequential-cached-{n}"] = sequential(engine, prompt, n, args, constraint, fresh=False)
            rows.append(row)
            marks = " ".join(f"{m}={'ok' if row[m]['ok'] else '--'}({row[m]['seconds']:.1f}s)" for m in modes)
            print(f"[{i}/{len(items)} {time.perf_counter() - started:.0f}s] {item['id']}: {marks}", flush=True)
    finally:
        await engine.close()

    table = summary(rows, modes)
    timing: dict[str, Any] = {}
    if not args.no_sequential:
        for n in ns:
            batched = sum(r[f"groupthink-{n}"]["seconds"] for r in rows)
            fresh = sum(r[f"sequential-fresh-{n}"] for r in rows)
            cached = sum(r[f"sequential-cached-{n}"] for r in rows)
            timing[str(n)] = {"batched_s": batched, "sequential_fresh_s": fresh, "sequential_cached_s": cached,
                              "speedup_vs_fresh": fresh / batched if batched else None,
                              "speedup_vs_cached": cached / batched if batched else None}
    print(f"\n{'mode':<14} {'acc':>6} {'valid':>6} {'agree':>6} {'p50 s':>7} {'p95 s':>7}")
    for mode, s in table.items():
        valid = f"{s['valid_calls']:.0%}" if s["valid_calls"] is not None else "-"
        agree = f"{s['mean_agreement']:.2f}" if s["mean_agreement"] is not None else "-"
        print(f"{mode:<14} {s['accuracy']:>6.0%} {valid:>6} {agree:>6} {s['p50_s']:>7.2f} {s['p95_s']:>7.2f}")
    if timing:
        print(f"\n{'N':>3} {'batched s':>10} {'seq fresh s':>12} {'seq cached s':>13} {'x fresh':>8} {'x cached':>9}")
        for n, t in timing.items():
            print(f"{n:>3} {t['batched_s']:>10.1f} {t['sequential_fresh_s']:>12.1f} {t['sequential_cached_s']:>13.1f} "
                  f"{t['speedup_vs_fresh']:>8.2f} {t['speedup_vs_cached']:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": table,
                                         "sampling_time": timing, "items": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
