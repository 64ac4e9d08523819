"""Command line: check suite files, score a GGUF on them.

    python -m evalkit check SUITE...                  read the suites; the ground truth must pass
    python -m evalkit score GGUF SUITE... [options]   score a model (GGUF path or "bundled")
    python -m evalkit from-dataset VAL.jsonl [-o OUT] a dataset's val split as a BFCL suite file

SUITE: a suite file (docs/suites.md), any BFCL-format JSONL, or a directory of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from . import ast_checker
from .suites import SuiteError, load_suites


def _check(args: argparse.Namespace) -> int:
    suites = load_suites(args.suites)
    failed = 0
    for suite in suites:
        if not suite.generative:
            print(f"{suite.name:24} {suite.kind:14} measures {', '.join(suite.of) or 'every item suite'}")
            continue
        bad = [(item["id"], v) for item in suite.items
               if not (v := ast_checker.check(item, ast_checker.reference_calls(item))).ok]
        failed += len(bad)
        print(f"{suite.name:24} {suite.kind:14} {len(suite.items):5d} items, ground truth passes "
              f"{len(suite.items) - len(bad)}/{len(suite.items)}")
        for item_id, verdict in bad[:10]:
            print(f"  {item_id}: {verdict.code} {verdict.detail}")
    return 1 if failed else 0


def _score(args: argparse.Namespace) -> int:
    from .scoring import GgufModel, Progress, evaluate

    if args.gguf == "bundled":
        from modelkit.base_model import bundled_gguf_path

        gguf = bundled_gguf_path()
    else:
        gguf = Path(args.gguf)
    suites = [s.limited(args.max_items) for s in load_suites(args.suites)]

    def progress(p: Progress) -> None:
        print(f"\r{p.done}/{p.total} items ({p.elapsed_s:.0f}s)", end="", file=sys.stderr, flush=True)

    model = GgufModel.load(gguf, n_ctx=args.n_ctx, n_threads=args.threads)
    try:
        result = evaluate(model, suites, max_tokens=args.max_tokens, progress=progress)
    finally:
        model.close()
    print(file=sys.stderr)
    for name, score in result.scores.items():
        unit = "s (p95)" if score.kind == "latency" else ""
        print(f"{name:24} {score.kind:14} {score.score:.4f}{unit}  "
              + " ".join(f"{c}={v:.3f}" for c, v in score.per_category.items()))
    if args.report:
        doc = {"gguf": str(gguf), "max_tokens": args.max_tokens, "seconds": result.seconds,
               "scores": {n: s.as_dict() for n, s in result.scores.items()},
               "items": [asdict(i) for i in result.items]}
        Path(args.report).write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        print(f"report: {args.report}")
    return 0


def _from_dataset(args: argparse.Namespace) -> int:
    from .dataset_suite import dataset_suite, suite_jsonl

    path = Path(args.val)
    if not path.is_file():
        raise SuiteError(f"{path}: no such file")
    lines = []
    for lineno, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
        if not isinstance(doc, dict):
            raise SuiteError(f"{path}:{lineno}: a dataset line is a JSON object")
        lines.append(doc)
    suite, built = dataset_suite(lines, name=args.name, source=str(path))
    body = suite_jsonl(suite, source=str(path))
    if args.out:
        Path(args.out).write_bytes(body)
    else:
        sys.stdout.write(body.decode())
    summary = built.summary()
    print(f"{summary['items']} items of {summary['read']} examples {summary['categories']}; "
          f"skipped {summary['skipped']}", file=sys.stderr)
    return 0 if suite.items else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalkit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="read suites and check that their ground truth passes")
    check.add_argument("suites", nargs="+")
    check.set_defaults(run=_check)
    score = sub.add_parser("score", help="score a GGUF on suites")
    score.add_argument("gguf", help='path of a GGUF file, or "bundled" for the bundled base model')
    score.add_argument("suites", nargs="+")
    score.add_argument("--max-items", type=int, default=None, help="at most N items per suite")
    score.add_argument("--max-tokens", type=int, default=128)
    score.add_argument("--n-ctx", type=int, default=4096)
    score.add_argument("--threads", type=int, default=None)
    score.add_argument("--report", help="write scores and per-item verdicts to this JSON file")
    score.set_defaults(run=_score)
    build = sub.add_parser("from-dataset", help="a log-miner val.jsonl as a BFCL suite (docs/suites.md)")
    build.add_argument("val", help="a dataset's val.jsonl (messages, tools, meta per line)")
    build.add_argument("-o", "--out", help="write the suite here (default: stdout)")
    build.add_argument("--name", default="dataset-val", help="the suite's name (default: dataset-val)")
    build.set_defaults(run=_from_dataset)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return args.run(args)
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
