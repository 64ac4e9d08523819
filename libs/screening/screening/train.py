"""`python -m screening.train CORPUS.jsonl [--extra MARKS.jsonl ...] [--out DIR]`: retrain the
shipped classifier.

Trains on the corpus's dev part only (the held-out fifth stays unseen: `classifier.split_of`),
chooses the threshold by 5-fold cross-validation on dev for the shipped setting (rules or
classifier), and writes the artifact with the corpus's sha256. `--extra` files (operators' marks,
`GET /v1/ops/screen/marks`, or any file of the corpus format) are added to the training lines
whole: they are new data, never part of the held-out fifth. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from .classifier import HOLDOUT_BUCKET, HOLDOUT_MOD, N_FEATURES, Classifier, dev_rows, fit, read_corpus, sha256_of
from .normalize import normalize
from .rules import load_rules

HARD_NEGATIVES = ("benign_hard_negative", "benign_trigger_words")
# The targets (issue 12) are 2 % false positives overall and 3 % on the hard negatives; the
# threshold is chosen with a margin below both, on folds of the dev part only.
FP_OVERALL, FP_HARD = 0.015, 0.025
THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.30, 0.96, 0.05))


def cross_validated_scores(rows, *, folds: int = 5, c: float = 10.0, log=print) -> np.ndarray:
    """Each dev row's classifier score from a model that did not train on it."""
    from sklearn.model_selection import StratifiedKFold

    texts = [normalize(r["text"]).text for r in rows]
    labels = np.array([r["label"] == "malicious" for r in rows])
    cats = [r.get("category", r["label"]) for r in rows]
    scores = np.zeros(len(rows))
    for k, (train, held) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=0).split(texts, cats), 1):
        coef, intercept = fit([texts[i] for i in train], labels[train], c=c)
        model = Classifier(coef, intercept, 0.5, {})
        scores[held] = model.scores([texts[i] for i in held])
        log(f"  fold {k}/{folds}: trained on {len(train)}, scored {len(held)}")
    return scores


def rates(flags: np.ndarray, rows) -> dict[str, float]:
    by: dict[str, list[bool]] = defaultdict(list)
    for flag, row in zip(flags, rows, strict=True):
        by[row.get("category", row["label"])].append(bool(flag))
        by["_" + row["label"]].append(bool(flag))
    return {k: float(np.mean(v)) for k, v in by.items()}


def choose_threshold(scores: np.ndarray, rule_flags: np.ndarray, rows) -> tuple[float, dict[str, float]]:
    """The lowest threshold whose combined verdict (rules or classifier) keeps both false-positive
    bounds on the dev folds; the highest tried if none does."""
    for t in THRESHOLDS:
        r = rates(rule_flags | (scores >= t), rows)
        if r["_benign"] <= FP_OVERALL and all(r.get(c, 0.0) <= FP_HARD for c in HARD_NEGATIVES):
            return t, r
    return THRESHOLDS[-1], rates(rule_flags | (scores >= THRESHOLDS[-1]), rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m screening.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="JSONL lines {text, label: malicious|benign, category}")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="more lines to train on (operators' marks); repeatable")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "model", help="artifact directory")
    parser.add_argument("--c", type=float, default=10.0, help="inverse L2 strength of the logistic regression")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    rows = read_corpus(args.corpus)
    dev = dev_rows(rows)
    log(f"{args.corpus}: {len(rows)} lines, training on the dev part ({len(dev)}); "
        f"{len(rows) - len(dev)} held out")
    extra = {}
    for path in args.extra:
        lines = read_corpus(path)
        extra[path.name] = {"lines": len(lines), "sha256": sha256_of(path)}
        dev += [{**r, "category": r.get("category") or "operator_mark"} for r in lines]
        log(f"{path}: {len(lines)} more lines to train on")
    rules = load_rules()
    rule_flags = np.array([bool(rules.hits(normalize(r["text"]))) for r in dev])
    log("choosing the threshold on 5 folds of dev")
    scores = cross_validated_scores(dev, c=args.c, log=log)
    threshold, dev_rates = choose_threshold(scores, rule_flags, dev)
    log(f"threshold {threshold}: dev folds detection {dev_rates['_malicious']:.3f}, "
        f"false positives {dev_rates['_benign']:.3f}")
    coef, intercept = fit([normalize(r["text"]).text for r in dev], [r["label"] == "malicious" for r in dev],
                          c=args.c)
    digest = sha256_of(args.corpus)
    manifest = {
        "version": f"clf-{digest[:12]}-c{args.c:g}", "data": args.corpus.name, "data_sha256": digest,
        "trained_on": "dev", "rows": len(dev), "extra": extra, "holdout": {"mod": HOLDOUT_MOD, "bucket": HOLDOUT_BUCKET,
                                                        "key": "sha256(text)"},
        "n_features": N_FEATURES, "features": "hashed char 2-5 + word 1-2 n-grams (screening.classifier.features), l2 per block", "c": args.c,
        "threshold_choice": {"fp_overall_max": FP_OVERALL, "fp_hard_max": FP_HARD, "dev_folds": dev_rates,
                             "rules_version": rules.version},
    }
    Classifier(coef, intercept, threshold, manifest).save(args.out)
    log(f"wrote {args.out}/classifier.npz and classifier.json ({manifest['version']}) in "
        f"{time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
