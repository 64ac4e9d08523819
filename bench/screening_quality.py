"""Prompt-injection screening on a labelled corpus: detection and false-positive rates per category
for the rules alone, the classifier alone and both together (the shipped setting), on the
corpus's held-out fifth (never trained or tuned on: `screening.classifier.split_of`), and the
latency of one screen of a 2 KB text.

    .venv/bin/python bench/screening_quality.py ../shared/eval/injection-dev.jsonl [--part test|dev|all]
        [--kfold 5] [--latency 2000] [--json out.json]

`--part test` (default) screens the held-out fifth with the shipped artifact. `--kfold K` instead
screens every line once, each by a classifier trained (threshold chosen on inner folds, as
`python -m screening.train` does) on the other K-1 folds: K times as many items per category,
so the rates of small categories are less noisy. `--part dev` reports on the part the shipped
classifier trained on (for contrast, not a quality number).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from screening import Screener, load_rules
from screening.classifier import Classifier, read_corpus, sha256_of, split_of

MODES = ("rules", "classifier", "both")
HARD = ("benign_hard_negative", "benign_trigger_words")


def table(rows: list[dict], verdicts: dict[str, list[bool]]) -> dict[str, dict[str, float | int]]:
    """Per category (and overall): items, and the share each mode flags."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by[row.get("category", row["label"])].append(i)
        by[f"ALL {row['label']}"].append(i)
    return {cat: {"items": len(idx), **{m: sum(verdicts[m][i] for i in idx) / len(idx) for m in MODES}}
            for cat, idx in sorted(by.items())}


def kfold_verdicts(rows: list[dict], rules, k: int) -> dict[str, list[bool]]:
    """Every row's verdict in each mode, its classifier trained on the other folds only."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from screening.normalize import normalize
    from screening.train import choose_threshold, cross_validated_scores, fit

    verdicts = {m: [False] * len(rows) for m in MODES}
    cats = [r.get("category", r["label"]) for r in rows]
    rule_flags = np.array([bool(rules.hits(normalize(r["text"]))) for r in rows])
    folds = StratifiedKFold(k, shuffle=True, random_state=1).split(rows, cats)
    for n, (train, held) in enumerate(folds, 1):
        train_rows = [rows[i] for i in train]
        inner = cross_validated_scores(train_rows, log=lambda _: None)
        threshold, _ = choose_threshold(inner, rule_flags[train], train_rows)
        coef, intercept = fit([normalize(r["text"]).text for r in train_rows],
                              [r["label"] == "malicious" for r in train_rows])
        screener = Screener(rules, Classifier(coef, intercept, threshold, {}), mode="both")
        for i in held:
            v = screener.screen(rows[i]["text"])
            verdicts["rules"][i] = "rules" in v.fired_by
            verdicts["classifier"][i] = "classifier" in v.fired_by
            verdicts["both"][i] = v.flagged
        print(f"  fold {n}/{k}: threshold {threshold} chosen on its training folds", file=sys.stderr)
    return verdicts


def latency(screener: Screener, rows: list[dict], n: int) -> dict[str, float]:
    """Screens of 2 KB texts (corpus lines joined and cut to 2048 characters)."""
    rng = random.Random(0)
    texts = []
    for _ in range(n):
        parts: list[str] = []
        while sum(map(len, parts)) < 2048:
            parts.append(rng.choice(rows)["text"])
        texts.append(" ".join(parts)[:2048])
    for t in texts[:20]:
        screener.screen(t)  # warm
    ms = []
    for t in texts:
        t0 = time.perf_counter()
        screener.screen(t)
        ms.append((time.perf_counter() - t0) * 1000)
    ms.sort()
    return {"screens": n, "p50_ms": statistics.median(ms), "p99_ms": ms[int(0.99 * (n - 1))], "max_ms": ms[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--part", choices=("test", "dev", "all"), default="test")
    parser.add_argument("--kfold", type=int, default=0, help="screen every line by K-fold training (0: off)")
    parser.add_argument("--latency", type=int, default=2000, help="2 KB screens to time (0: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rows = read_corpus(args.corpus)
    part = rows if args.part == "all" else [r for r in rows if split_of(r["text"]) == args.part]
    rules, classifier = load_rules(), Classifier.load()
    screeners = {m: Screener(rules, classifier, mode=m) for m in MODES}
    what = f"every line by {args.kfold}-fold training" if args.kfold else f"{len(part)} of {len(rows)} lines ({args.part})"
    print(f"{args.corpus} (sha256 {sha256_of(args.corpus)[:12]}): {what}; "
          f"rules {rules.version} ({len(rules.rules)}), classifier {classifier.manifest['version']} "
          f"threshold {classifier.threshold}", file=sys.stderr)
    verdicts = {m: [] for m in MODES}
    if args.kfold:
        part = rows
        verdicts = kfold_verdicts(rows, rules, args.kfold)
    for n, row in enumerate(part if not args.kfold else (), 1):
        for m in MODES:
            verdicts[m].append(screeners[m].screen(row["text"]).flagged)
        if n % 200 == 0:
            print(f"  {n}/{len(part)} screened", file=sys.stderr)
    result = {"corpus": str(args.corpus), "part": f"{args.kfold}-fold" if args.kfold else args.part,
              "items": len(part),
              "classifier": classifier.manifest["version"], "threshold": classifier.threshold,
              "rules_version": rules.version, "rules": len(rules.rules), "rates": table(part, verdicts)}
    if args.latency:
        result["latency_2kb"] = latency(screeners["both"], rows, args.latency)

    print("\n| category | items | rules | classifier | both |\n|---|---:|---:|---:|---:|")
    for cat, r in result["rates"].items():
        what = "false positives" if cat.startswith("ALL benign") or cat.startswith("benign") else "detection"
        print(f"| {cat} ({what}) | {r['items']} | " + " | ".join(f"{100 * r[m]:.1f} %" for m in MODES) + " |")
    if "latency_2kb" in result:
        lat = result["latency_2kb"]
        print(f"\nlatency of one screen (2 KB, both): p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, "
              f"max {lat['max_ms']:.2f} ms over {lat['screens']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
