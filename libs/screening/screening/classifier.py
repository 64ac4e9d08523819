"""The learned half of screening: hashed character and word n-grams (numpy), logistic regression
(scikit-learn, at training time only). Hashing needs no vocabulary, so the artifact is just the
weights: an `.npz` of float16 coefficients and a JSON manifest (its version, the training data's
sha256, the options, the threshold chosen on validation folds). No pickle: loading it runs no
code, and scoring needs numpy alone.

The split is a property of each text (sha256 of the text, bucket `HOLDOUT_BUCKET` of
`HOLDOUT_MOD`): the training command never sees the held-out fifth, and the benchmark reports on
exactly that fifth, wherever the lines sit in the file.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 2**18  # per analyser
HOLDOUT_MOD, HOLDOUT_BUCKET = 5, 0
MAX_CHARS = 8192  # of each text the classifier reads (long tool output: the screen windows it)


def split_of(text: str) -> str:
    """`test` for the held-out fifth, `dev` for the rest (stable: a property of the text)."""
    bucket = int(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) % HOLDOUT_MOD
    return "test" if bucket == HOLDOUT_BUCKET else "dev"


_PRIME = np.uint64(1_000_003)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads the polynomial hash's bits
_WORD = re.compile(r"\w+")
_SPACES = re.compile(r"\s+")


def _bucket(hashes: np.ndarray) -> np.ndarray:
    return ((hashes * _MIX) >> np.uint64(40)) % np.uint64(N_FEATURES)


def _char_hashes(text: str) -> np.ndarray:
    """Polynomial hashes of the character 2- to 5-grams (numpy, wrapping at 2**64)."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    out = []
    for n in (2, 3, 4, 5):
        m = len(cps) - n + 1
        if m <= 0:
            break
        h = np.full(m, np.uint64(n), dtype=np.uint64)
        for k in range(n):
            h = h * _PRIME + cps[k:k + m]
        out.append(h)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def _word_hashes(text: str) -> np.ndarray:
    """Hashes of the word unigrams and bigrams (crc32 of each word, combined for bigrams)."""
    words = np.array([zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in _WORD.findall(text)], dtype=np.uint64)
    if len(words) < 2:
        return words
    return np.concatenate([words, words[:-1] * _PRIME + words[1:] + np.uint64(7)])


def _l2_counts(buckets: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    if len(buckets) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx, counts = np.unique(buckets, return_counts=True)
    values = counts.astype(np.float32)
    values /= np.sqrt(float((values * values).sum()))
    return idx.astype(np.int64) + offset, values


def features(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of one text: l2-normalised counts of hashed character n-grams, then of
    hashed word n-grams, each in its own N_FEATURES block. numpy only."""
    lowered = _SPACES.sub(" ", text[:MAX_CHARS].lower())
    ci, cv = _l2_counts(_bucket(_char_hashes(lowered)), 0)
    wi, wv = _l2_counts(_bucket(_word_hashes(lowered)), N_FEATURES)
    return np.concatenate([ci, wi]), np.concatenate([cv, wv])


def featurize(texts: Sequence[str]):
    """The texts' features as a scipy CSR matrix (for training)."""
    from scipy.sparse import csr_matrix

    rows = [features(t) for t in texts]
    indptr = np.cumsum([0, *(len(i) for i, _ in rows)])
    indices = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, dtype=np.int64)
    values = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, dtype=np.float32)
    return csr_matrix((values, indices, indptr), shape=(len(texts), 2 * N_FEATURES))


@dataclass
class Classifier:
    coef: np.ndarray  # float32, 2 * N_FEATURES
    intercept: float
    threshold: float
    manifest: dict[str, Any]

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """P(malicious) per text."""
        z = np.array([float(v @ self.coef[i]) for i, v in map(features, texts)]) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def score(self, text: str) -> float:
        return float(self.scores([text])[0])

    # ------------------------------------------------------------------ artifact

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(directory / "classifier.npz", coef=self.coef.astype(np.float16),
                            intercept=np.array([self.intercept], dtype=np.float64))
        (directory / "classifier.json").write_text(json.dumps({**self.manifest, "threshold": self.threshold},
                                                              indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path | None = None) -> Classifier:
        base = directory if directory is not None else resources.files(__package__).joinpath("model")
        manifest = json.loads(base.joinpath("classifier.json").read_text())
        with base.joinpath("classifier.npz").open("rb") as f, np.load(f, allow_pickle=False) as npz:
            coef = npz["coef"].astype(np.float32)
            intercept = float(npz["intercept"][0])
        if manifest.get("n_features") != N_FEATURES or coef.shape != (2 * N_FEATURES,):
            raise ValueError(f"classifier artifact built for {manifest.get('n_features')} features, "
                             f"this code hashes into {N_FEATURES}: retrain it (python -m screening.train)")
        return cls(coef, intercept, float(manifest["threshold"]), manifest)


def fit(texts: Sequence[str], malicious: Sequence[bool], *, c: float = 10.0):
    """(coef, intercept) of a logistic regression on the texts (classes balanced)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    model.fit(featurize(texts), np.asarray(malicious, dtype=bool))
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def read_corpus(path: Path) -> list[dict[str, Any]]:
    """Lines `{text, label, category, ...}`; `label` is `malicious` or `benign`."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("text"), str) or row.get("label") not in ("malicious", "benign"):
            raise ValueError(f"{path}:{n}: a line needs a string `text` and `label` malicious|benign")
        rows.append(row)
    return rows


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dev_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if split_of(r["text"]) == "dev"]
