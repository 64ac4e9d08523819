"""Example shapes (no call, parallel, multi-turn, single call, text) and the shape weights: the
split comes first, only the train split is weighted, and no copy reaches validation."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from contracts import DatasetOptions
from log_miner.domain.dataset import SourceReport, assemble, dedupe_key
from log_miner.domain.examples import KIND_CORRECTED, Example
from log_miner.domain.shapes import DEFAULT_SHAPE_WEIGHTS, SHAPES, WEIGHT_KEYS, shape_of, shape_weights
from log_miner.domain.validation import Limits

TOOL = {"type": "function", "function": {"name": "f", "description": "", "parameters": {
    "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def call(n: int, x: int = 1) -> dict:
    return {"id": f"c{n}", "name": "f", "arguments": {"x": x}}


def calls(*cs: dict) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": list(cs)}


def text(t: str) -> dict:
    return {"role": "assistant", "content": t}


def example(shape: str, i: int, kind: str = "success") -> Example:
    q = user(f"{shape} question {i}")
    messages = {
        "no_call": [q, text("No tool fits.")],
        "parallel": [q, calls(call(1, i), call(2, i + 1))],
        "multi_turn": [q, calls(call(1, i)), {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "2"},
                       text("It is 2.")],
        "single_call": [q, calls(call(1, i))],
        "text": [q, text("Hello.")],
    }[shape]
    return Example(messages, [] if shape == "text" else [TOOL], "mined", kind)


def build(examples, val_fraction=0.0, shape_weights=None, **kw):
    return assemble(examples, [SourceReport("mined")], limits=Limits(), val_fraction=val_fraction, weights={},
                    max_examples=kw.pop("max_examples", None), shape_weights=shape_weights, **kw)


def test_every_example_gets_the_shape_of_its_answer():
    for shape in SHAPES:
        assert shape_of(example(shape, 0).messages, example(shape, 0).tools) == shape
    # a parallel turn names the example even inside a longer conversation
    longer = [user("q"), calls(call(1), call(2)), {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "1"},
              {"role": "tool", "tool_call_id": "c2", "name": "f", "content": "1"}, text("done")]
    assert shape_of(longer, [TOOL]) == "parallel"
    assert example("no_call", 0).line()["meta"]["shape"] == "no_call"


def test_the_defaults_up_weight_no_call_and_parallel_and_the_options_override_key_by_key():
    assert set(DEFAULT_SHAPE_WEIGHTS) == set(WEIGHT_KEYS)
    assert DEFAULT_SHAPE_WEIGHTS["no_call"] > 1 and DEFAULT_SHAPE_WEIGHTS["parallel"] > 1
    assert DEFAULT_SHAPE_WEIGHTS["single_call"] == 1
    merged = shape_weights({"parallel": 3})
    assert merged["parallel"] == 3 and merged["no_call"] == DEFAULT_SHAPE_WEIGHTS["no_call"]


def test_the_contract_refuses_an_unknown_shape_or_a_negative_weight():
    assert DatasetOptions().shape_weights == {}
    assert DatasetOptions(shape_weights={"no_call": 0, "corrected": 1.5}).shape_weights["corrected"] == 1.5
    with pytest.raises(ValidationError, match="shape_weights"):
        DatasetOptions(shape_weights={"irrelevance": 2})
    with pytest.raises(ValidationError, match="shape_weights"):
        DatasetOptions(shape_weights={"no_call": -1})


def test_the_train_split_is_weighted_after_the_split_and_validation_gets_no_copy():
    examples = [example(shape, i) for shape in SHAPES for i in range(40)]
    out = build(examples, val_fraction=0.3, shape_weights={"no_call": 3, "parallel": 2, "multi_turn": 1.5})
    val_keys = [dedupe_key(e) for e in out.val]
    assert len(val_keys) == len(set(val_keys))  # one copy each
    train_keys = Counter(dedupe_key(e) for e in out.train)
    assert not set(val_keys) & set(train_keys)
    unweighted = build(examples, val_fraction=0.3, shape_weights={k: 1.0 for k in WEIGHT_KEYS})
    assert [dedupe_key(e) for e in unweighted.val] == val_keys  # the weights do not move the split
    before = Counter(e.shape for e in unweighted.train)
    after = Counter(e.shape for e in out.train)
    assert after["no_call"] == 3 * before["no_call"] and after["parallel"] == 2 * before["parallel"]
    assert after["multi_turn"] == round(1.5 * before["multi_turn"])
    assert after["single_call"] == before["single_call"] and after["text"] == before["text"]
    copies = {train_keys[dedupe_key(e)] for e in out.train if e.shape == "no_call"}
    assert copies == {3}
    report = out.shapes.as_dict()
    assert report["train_before"] == dict(sorted(before.items()))
    assert report["train_after"] == dict(sorted(after.items()))
    assert sum(report["val"].values()) == len(out.val)
    assert report["weights"]["no_call"] == 3 and report["weights"]["text"] == DEFAULT_SHAPE_WEIGHTS["text"]
    assert out.counts()["train"] == len(out.train) == sum(after.values())


def test_fractional_weights_pick_the_same_examples_whatever_the_input_order():
    examples = [example("multi_turn", i) for i in range(30)]
    a = build(examples, shape_weights={"multi_turn": 1.5})
    b = build(list(reversed(examples)), shape_weights={"multi_turn": 1.5})
    assert len(a.train) == 45
    assert sorted(dedupe_key(e) for e in a.train) == sorted(dedupe_key(e) for e in b.train)


def test_a_zero_weight_leaves_a_shape_out_of_train_but_not_out_of_validation():
    examples = [example("text", i) for i in range(60)] + [example("single_call", i) for i in range(60)]
    out = build(examples, val_fraction=0.3, shape_weights={"text": 0})
    assert {e.shape for e in out.train} == {"single_call"}
    assert "text" in {e.shape for e in out.val}


def test_the_corrected_weight_multiplies_the_shape_weight_of_feedback_corrections():
    fixed = [example("no_call", i, kind=KIND_CORRECTED) for i in range(5)]
    plain = [example("no_call", 100 + i) for i in range(5)]
    out = build(fixed + plain, shape_weights={"no_call": 2, "corrected": 1.5})
    by_kind = Counter(e.kind for e in out.train)
    assert by_kind[KIND_CORRECTED] == 15 and by_kind["success"] == 10
    assert out.shapes.as_dict()["corrected"] == {"train_before": 5, "train_after": 15, "val": 0}


def test_the_cap_applies_before_the_shape_copies():
    examples = [example("no_call", i) for i in range(20)] + [example("single_call", i) for i in range(20)]
    out = build(examples, max_examples=10, shape_weights={"no_call": 2})
    assert sum(r.selected for r in out.sources) == 10
    assert out.shapes.train_before == {"no_call": 5, "single_call": 5}
    assert len(out.train) == 15
