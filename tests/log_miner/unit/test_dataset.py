"""Dedupe, deterministic split, weighting and mixing, hints, counts."""

from __future__ import annotations

import json

from log_miner.domain.dataset import (
    SourceReport,
    assemble,
    dedupe_key,
    split_of,
    to_jsonl,
    weighted,
)
from log_miner.domain.examples import Example
from log_miner.domain.validation import Limits


def ex(question: str, answer: str = "ok", source: str = "mined", run: str | None = None, **kw) -> Example:
    return Example([{"role": "user", "content": question}, {"role": "assistant", "content": answer}], [],
                   source, kw.pop("kind", "success"), run_ids=(run,) if run else (), **kw)


def build(examples, sources=("mined",), val_fraction=0.0, weights=None, max_examples=None, **kw):
    reports = [SourceReport(s) for s in sources]
    return assemble(examples, reports, limits=Limits(), val_fraction=val_fraction, weights=weights or {},
                    max_examples=max_examples, **kw)


def test_duplicates_after_normalisation_are_dropped_and_their_lineage_merged():
    a = ex("What is  17*23?", "391", run="r1")
    b = ex("what is 17*23? ", "391", run="r2")
    c = ex("What is 17*23?", "392", run="r3")
    out = build([a, b, c])
    assert len(out.train) == 2
    assert out.duplicates == 1
    assert out.train[0].run_ids == ("r1", "r2") or out.train[1].run_ids == ("r1", "r2")
    assert out.sources[0].duplicates == 1


def test_call_ids_do_not_make_two_identical_calls_different():
    def calling(cid):
        return Example([{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [
            {"id": cid, "name": "f", "arguments": {"b": 1, "a": 2}}]}], [], "mined", "success")
    assert dedupe_key(calling("call_1_1")) == dedupe_key(calling("call_9"))


def test_invalid_examples_are_counted_by_reason_per_source():
    bad = Example([{"role": "user", "content": "q"}], [], "mined", "success")
    out = build([ex("q1"), bad, ex("q2", "")])
    assert dict(out.sources[0].invalid) == {"no_assistant_turn": 1, "empty_turn": 1}
    assert out.counts()["invalid"] == 2


def test_the_split_is_deterministic_and_independent_of_the_rest_of_the_data():
    examples = [ex(f"question {i}") for i in range(400)]
    first = build(examples, val_fraction=0.2)
    again = build(list(reversed(examples)), val_fraction=0.2)
    val_keys = {dedupe_key(e) for e in first.val}
    assert val_keys == {dedupe_key(e) for e in again.val}
    assert 40 < len(first.val) < 120
    subset = build(examples[:100], val_fraction=0.2)
    assert {dedupe_key(e) for e in subset.val} <= val_keys
    assert all(split_of(dedupe_key(e), 0.2) == "val" for e in first.val)


def test_weights_subsample_and_repeat_sources_deterministically():
    mined = [ex(f"m{i}") for i in range(10)]
    corpus = [ex(f"c{i}", source="bfcl:/x.jsonl", kind="bfcl") for i in range(10)]
    out = build(mined + corpus, sources=("mined", "bfcl:/x.jsonl"), weights={"mined": 2.0, "bfcl": 0.5})
    by_source = {r.source: r for r in out.sources}
    assert by_source["mined"].selected == 20 and by_source["mined"].kept == 10
    assert by_source["bfcl:/x.jsonl"].selected == 5
    again = build(list(reversed(mined + corpus)), sources=("mined", "bfcl:/x.jsonl"),
                  weights={"mined": 2.0, "bfcl:/x.jsonl": 0.5})
    assert sorted(dedupe_key(e) for e in out.train) == sorted(dedupe_key(e) for e in again.train)


def test_a_zero_weight_leaves_a_source_out_and_the_cap_keeps_the_mix():
    mined = [ex(f"m{i}") for i in range(30)]
    corpus = [ex(f"c{i}", source="alpaca:/a.json", kind="alpaca") for i in range(10)]
    out = build(mined + corpus, sources=("mined", "alpaca:/a.json"), max_examples=20)
    assert {r.source: r.selected for r in out.sources} == {"mined": 15, "alpaca:/a.json": 5}
    out = build(mined + corpus, sources=("mined", "alpaca:/a.json"), weights={"alpaca": 0})
    assert {r.source: r.selected for r in out.sources} == {"mined": 30, "alpaca:/a.json": 0}


def test_repeated_copies_share_a_split():
    examples = [ex(f"q{i}") for i in range(50)]
    out = build(examples, weights={"mined": 3}, val_fraction=0.3)
    val_keys = [dedupe_key(e) for e in out.val]
    assert all(val_keys.count(k) == 3 for k in val_keys)
    assert not set(val_keys) & {dedupe_key(e) for e in out.train}


def test_hints_go_to_meta_or_to_the_start_of_the_answer():
    hinted = ex("Add 2 and 3", "5", hints=("take 2", "add 3"))
    meta = build([hinted])
    assert meta.train[0].messages[-1]["content"] == "5"
    assert json.loads(to_jsonl(meta.train))["meta"]["hints"] == ["take 2", "add 3"]
    placed = build([hinted], hints_placement="assistant")
    assert placed.train[0].messages[-1]["content"] == "1. take 2\n2. add 3\n\n5"


def test_the_jsonl_line_has_messages_tools_and_meta():
    doc = json.loads(to_jsonl([ex("q", run="r9")]).decode())
    assert set(doc) == {"messages", "tools", "meta"}
    assert doc["meta"]["run_ids"] == ["r9"]


def test_weighted_rounds_the_fraction():
    keyed = [(str(i), ex(f"q{i}")) for i in range(4)]
    assert len(weighted(keyed, 1.5)) == 6
    assert len(weighted(keyed, 0.0)) == 0
