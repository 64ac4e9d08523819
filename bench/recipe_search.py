"""Choose the LoRA recipe by measurement: train on the traffic part of a BFCL-format task set,
export, and score the validation part (never the test part) with the served decoding.

    .venv/bin/python bench/recipe_search.py --tasks ../shared/eval/bfcl-dev \
        --variant name=base-lr,learning_rate=1e-3,epochs=1 --variant name=r32,rank=32 ... \
        --json /tmp/recipe.json

The split is the loop's own (`loopdemo.tasks.split` → traffic / held-out, then the held-out part
halved into validation and test by `loopdemo.tasks.validation_test`), so what is tuned here is
judged later, once, on a part neither the training nor this search has seen. Training examples are
what a user's corrections of the traffic would give (`loopdemo.judge.feedback_for`: the reference
calls, or the no-tool answer), weighted by kind as the log-miner weights them
(`--kind-weights no_call=2,parallel=2`). Each variant: train (the trainer's recipe in its own
subprocess, progress on stderr) → merge + GGUF + one quant (no parity) → the validation part
through llama.cpp, free and grammar-constrained where `modelkit.tool_grammar` is available, and
`p_continue` per category: how likely the model is to write a second call block right after the
first reference call (`continuation`), the decision that parallel calls hinge on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key in ("name", "lr_schedule", "target_modules"):
            out[key] = value.split("+") if key == "target_modules" else value
        elif key == "kind_weights":
            out[key] = dict((k, float(v)) for k, v in (kv.split(":") for kv in value.split("+")))
        else:
            out[key] = float(value) if any(c in value for c in ".e") else int(value)
    return out


def kind_of(task: Any) -> str:
    if task.expect == "no_call":
        return "no_call"
    return "parallel" if len(task.ground_truth or []) > 1 else "single_call"


def training_records(tasks: list[Any], weights: dict[str, float]) -> list[dict[str, Any]]:
    from loopdemo.tasks import NO_TOOL_ANSWER

    records: list[dict[str, Any]] = []
    for task in tasks:
        messages = task.messages()
        if task.expect == "no_call":
            messages.append({"role": "assistant", "content": NO_TOOL_ANSWER})
        else:
            calls = [{"id": f"call_{i}", "name": c["name"], "arguments": c["arguments"]}
                     for i, c in enumerate(task.reference_calls())]
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        weight = weights.get(kind_of(task), 1.0)
        copies = int(weight) + (1 if (hash(task.id) % 1000) / 1000 < weight - int(weight) else 0)
        records += [{"messages": messages, "tools": task.tools()}] * max(1, copies)
    return records


def train(variant: dict[str, Any], records: list[dict[str, Any]], work: Path, base_gguf: Path) -> tuple[Path, float]:
    options = {k: v for k, v in variant.items() if k not in ("name", "kind_weights", "quant")}
    train_path = work / "train.jsonl"
    train_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    job = {"train_path": str(train_path), "base_model": str(base_gguf), "output_dir": str(work / "adapter"),
           "checkpoint_dir": str(work / "ckpt"), "options": {"checkpoint_every": 100000, **options},
           "resume": False}
    (work / "job.json").write_text(json.dumps(job))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "trainer.training.run", "--config", str(work / "job.json")],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "progress" and (event["step"] % 10 == 0 or event["step"] == event["total_steps"]):
            print(f"  [{variant['name']}] step {event['step']}/{event['total_steps']} loss {event.get('loss')} "
                  f"{event.get('tokens_per_s')} tok/s eta {event.get('eta_s')} s", file=sys.stderr, flush=True)
        elif event.get("event") in ("started", "completed", "failed"):
            print(f"  [{variant['name']}] {json.dumps(event)[:300]}", file=sys.stderr, flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"training {variant['name']} failed")
    return work / "adapter", time.monotonic() - t0


def export(adapter: Path, work: Path, base_gguf: Path, quant: str) -> Path:
    from modelkit.export.pipeline import export_adapter
    from modelkit.hf_base import resolve_base_model

    hf_dir = resolve_base_model(str(base_gguf))
    result = export_adapter(hf_dir, adapter, work / "gguf", version="search", base_gguf=base_gguf, quants=(quant,),
                            parity_prompts=["Hello"], parity_tokens=1)
    return result.quant_paths[quant]


def score(gguf: Path, tasks: list[Any], *, constrained: bool, max_tokens: int) -> dict[str, Any]:
    from evalkit.scoring import GgufModel, evaluate
    from evalkit.suites import Suite

    model = GgufModel.load(gguf)
    try:
        if constrained:
            model = _constrained(model)
        suite = Suite(name="val", kind="ast", items=tuple(t.line() for t in tasks), primary=True)
        result = evaluate(model, [suite], max_tokens=max_tokens)
    finally:
        model.close()
    s = result.scores["val"]
    valid = [r.json_valid for r in result.items if r.json_valid is not None]
    secs = sorted(r.seconds for r in result.items)
    return {"accuracy": round(s.score, 4), "per_category": {k: round(v, 4) for k, v in s.per_category.items()},
            "valid_calls": round(sum(valid) / len(valid), 4) if valid else None,
            "p50_s": round(secs[len(secs) // 2], 3), "seconds": round(result.seconds, 1)}


def continuation(gguf: Path, tasks: list[Any]) -> dict[str, float]:
    """Does the model know when a turn's calls are done? For every task that expects calls, the
    model is shown the prompt and the first reference call up to `</tool_call` (teacher-forced),
    and we read the probability of the token that continues with a second block (`><`) against
    the one that closes the turn (`>`). Mean P(continue) per category: a recipe that learned the
    decision gives high values on parallel items and low ones on simple/multiple; equal values mean
    it learned a prior, not the decision."""
    import math

    import numpy as np
    from modelkit.chat_format import canonical_arguments, format_tool_calls, render_prompt
    from modelkit.llama import load_llama, next_token_logits, tokenize_prompt

    llm = load_llama(gguf, n_ctx=4096)
    try:
        more, done = (llm.tokenize(t, add_bos=False, special=True) for t in (b"><", b">"))
        if len(more) != 1 or len(done) != 1:
            raise RuntimeError(f"'><' and '>' are not single tokens for {gguf}")
        by_category: dict[str, list[float]] = {}
        for task in tasks:
            if task.expect == "no_call":
                continue
            tools = task.tools()
            schemas = {t["function"]["name"]: t["function"].get("parameters") for t in tools}
            first = task.reference_calls()[0]
            first = {"name": first["name"], "arguments": canonical_arguments(schemas.get(first["name"]), first["arguments"])}
            prompt = render_prompt(task.messages(), tools) + format_tool_calls([first])[: -len(">")]
            llm.reset()
            llm.eval(tokenize_prompt(llm, prompt))
            logits = next_token_logits(llm).astype(np.float64)
            p_more, p_done = (math.exp(logits[t[0]] - logits.max()) for t in (more, done))
            by_category.setdefault(task.category, []).append(p_more / (p_more + p_done))
    finally:
        llm.close()
    return {c: round(float(np.mean(v)), 3) for c, v in sorted(by_category.items())}


def _constrained(model: Any) -> Any:
    """The evaluator's model, decoding under the tools' grammar (evalkit's own switch)."""
    from evalkit.scoring import GgufModel

    return GgufModel(model.llm, constrained=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=Path, required=True, help="BFCL-format file or directory")
    parser.add_argument("--variant", action="append", default=[], type=parse_variant)
    parser.add_argument("--score", action="append", default=[], type=Path,
                        help="score this GGUF (e.g. one kept by --keep) instead of training")
    parser.add_argument("--traffic", type=int, default=None, help="at most N traffic tasks (categories in proportion)")
    parser.add_argument("--val", type=int, default=None, help="at most N validation tasks")
    parser.add_argument("--score-part", choices=("val", "heldout"), default="val",
                        help="score on the validation half (default) or the whole held-out part: for a task set "
                             "too small to halve (the demo's 70 tasks); never choose options on a part you report")
    parser.add_argument("--quant", default="Q8_0")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--decoding", default="free,grammar", help="free, grammar or both")
    parser.add_argument("--base", action="store_true", help="also score the base model")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="copy each variant's GGUF here (<name>.gguf) to score it again later")
    args = parser.parse_args()

    from loopdemo.tasks import load_tasks, split, validation_test
    from modelkit.base_model import bundled_gguf_path

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    tasks = load_tasks(args.tasks)
    parts = split(tasks)
    val, _test = validation_test(parts.heldout)
    traffic = parts.traffic if args.traffic is None else parts.limited(args.traffic).traffic
    if args.score_part == "heldout":
        val = list(parts.heldout)
    val = val if args.val is None else val[: args.val]
    base_gguf = bundled_gguf_path()
    decodings = [d for d in args.decoding.split(",") if d]
    print(f"{len(traffic)} traffic tasks, {len(val)} validation tasks", file=sys.stderr)
    report: dict[str, Any] = {"tasks": str(args.tasks), "traffic": len(traffic), "val": len(val), "variants": []}
    if args.base:
        report["base"] = {d: score(base_gguf, val, constrained=d == "grammar", max_tokens=args.max_tokens)
                          for d in decodings}
        print(json.dumps({"base": report["base"]}), flush=True)
    for gguf in args.score:
        row = {"gguf": str(gguf)}
        for d in decodings:
            row[d] = score(gguf, val, constrained=d == "grammar", max_tokens=args.max_tokens)
        row["p_continue"] = continuation(gguf, val)
        report["variants"].append(row)
        print(json.dumps(row), flush=True)
    for variant in args.variant:
        weights = variant.get("kind_weights", {})
        records = training_records(traffic, weights)
        with tempfile.TemporaryDirectory(prefix="recipe-") as tmp:
            work = Path(tmp)
            adapter, train_s = train(variant, records, work, base_gguf)
            t0 = time.monotonic()
            gguf = export(adapter, work, base_gguf, variant.get("quant", args.quant))
            export_s = time.monotonic() - t0
            if args.keep:
                import shutil

                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(gguf, args.keep / f"{variant['name']}.gguf")
            row = {"variant": variant, "examples": len(records), "train_s": round(train_s, 1),
                   "export_s": round(export_s, 1)}
            for d in decodings:
                row[d] = score(gguf, val, constrained=d == "grammar", max_tokens=args.max_tokens)
            row["p_continue"] = continuation(gguf, val)
        report["variants"].append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
