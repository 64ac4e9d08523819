"""Suite files: the documented format, its errors, sampling, hashing, regression items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit import ast_checker
from evalkit.suites import (
    SuiteError,
    load_suite,
    load_suites,
    normalize_item,
    primary_suite,
    regression_items,
    sample,
    with_primary,
)
from tests.harness import BFCL_DIR


ITEM = {"id": "w1", "question": [[{"role": "user", "content": "Weather in Paris?"}]],
        "function": [{"name": "weather", "description": "", "parameters": {"type": "dict", "properties": {
            "city": {"type": "string"}}, "required": ["city"]}}],
        "ground_truth": [{"weather": {"city": ["Paris"]}}]}


def write(path: Path, *lines: object) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_header_and_items(tmp_path: Path):
    suite = load_suite(write(tmp_path / "s.jsonl", {"suite": {"name": "tools", "kind": "ast", "primary": True,
                                                              "threshold": 0.4, "tolerance": 0.01}}, ITEM))
    assert (suite.name, suite.kind, suite.primary, suite.threshold, suite.tolerance) == ("tools", "ast", True, 0.4, 0.01)
    (item,) = suite.items
    assert item["category"] == "simple" and item["expect"] == "ast_match"


def test_a_plain_bfcl_file_is_an_ast_suite_named_after_it():
    suite = load_suite(BFCL_DIR / "parallel.jsonl")
    assert suite.name == "parallel" and suite.kind == "ast" and len(suite.items) == 100


def test_a_header_can_point_at_item_files(tmp_path: Path):
    header = {"suite": {"name": "bfcl", "items": [str(BFCL_DIR / "simple.jsonl"), str(BFCL_DIR / "irrelevance.jsonl")]}}
    suite = load_suite(write(tmp_path / "bfcl.jsonl", header))
    assert len(suite.items) == 320
    assert {i["category"] for i in suite.items} == {"simple", "irrelevance"}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"suite": {"kind": "vibes"}}], "'kind' must be one of"),
        ([{"suite": {"kind": "ast"}}], "needs items"),
        ([{"suite": {"kind": "latency"}}, ITEM], "has no items"),
        ([{"suite": {"kind": "regression"}}], "needs a 'source'"),
        ([{**ITEM, "question": "hi"}], "'question' must be"),
        ([{**ITEM, "ground_truth": [{"other": {"x": [1]}}]}], "does not offer"),
        ([{**ITEM, "ground_truth": [{"weather": {"city": "Paris"}}]}], "lists of acceptable values"),
        ([{**ITEM, "expect": "maybe"}], "'expect'"),
        ([{**ITEM, "id": None}], "string 'id'"),
        ([ITEM, ITEM], "appears twice"),
        ([ITEM, {"suite": {"name": "late"}}], "first line"),
        ([{"suite": {"threshold": 2}}, ITEM], "'threshold' must be a number between 0.0 and 1.0"),
        ([{"suite": {"sample": {"max_items": 0}}}, ITEM], "max_items"),
    ],
)
def test_bad_suite_files_are_refused_with_the_reason(tmp_path: Path, lines: list, message: str):
    with pytest.raises(SuiteError, match=message.replace("(", r"\(")):
        load_suite(write(tmp_path / "bad.jsonl", *lines))


def test_a_line_that_is_not_json_names_the_line(tmp_path: Path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(ITEM) + "\n{nope\n")
    with pytest.raises(SuiteError, match=r"broken.jsonl:2: not JSON"):
        load_suite(path)


def test_suite_sets_need_unique_names_one_primary_and_known_measured_suites(tmp_path: Path):
    a = write(tmp_path / "a.jsonl", {"suite": {"name": "x", "primary": True}}, ITEM)
    b = write(tmp_path / "b.jsonl", {"suite": {"name": "x"}}, ITEM)
    with pytest.raises(SuiteError, match="unique"):
        load_suites([a, b])
    c = write(tmp_path / "c.jsonl", {"suite": {"name": "y", "primary": True}}, ITEM)
    with pytest.raises(SuiteError, match="only one suite can be primary"):
        load_suites([a, c])
    lat = write(tmp_path / "lat.jsonl", {"suite": {"name": "lat", "kind": "latency", "of": ["nope"]}})
    with pytest.raises(SuiteError, match="nope"):
        load_suites([a, lat])


def test_a_directory_loads_every_suite_in_it(tmp_path: Path):
    write(tmp_path / "b.jsonl", {"suite": {"name": "b"}}, ITEM)
    write(tmp_path / "a.jsonl", {"suite": {"name": "a", "primary": True}}, ITEM)
    suites = load_suites([tmp_path])
    assert [s.name for s in suites] == ["a", "b"]
    assert primary_suite(suites).name == "a"


def test_sampling_is_deterministic_and_takes_every_category(tmp_path: Path):
    items = [{"id": f"{c}{n}", "category": c} for c in "abc" for n in range(10)]
    first, again = sample(items, 6, seed=1), sample(items, 6, seed=1)
    assert first == again
    assert sorted(i["category"] for i in first) == ["a", "a", "b", "b", "c", "c"]
    assert sample(items, 6, seed=2) != first


def test_limited_applies_the_smaller_of_the_suite_and_service_caps(tmp_path: Path):
    header = {"suite": {"name": "s", "items": str(BFCL_DIR / "simple.jsonl"), "sample": {"max_items": 7}}}
    suite = load_suite(write(tmp_path / "s.jsonl", header))
    assert len(suite.limited(None).items) == 7
    assert len(suite.limited(3).items) == 3


def test_the_content_hash_follows_the_items_not_the_gate_numbers(tmp_path: Path):
    one = load_suite(write(tmp_path / "1.jsonl", {"suite": {"name": "s", "threshold": 0.1}}, ITEM))
    two = load_suite(write(tmp_path / "2.jsonl", {"suite": {"name": "s", "threshold": 0.9}}, ITEM))
    other = load_suite(write(tmp_path / "3.jsonl", {"suite": {"name": "s"}}, {**ITEM, "id": "w2"}))
    assert one.content_hash() == two.content_hash() != other.content_hash()


MINED = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Oslo?"},
                  {"role": "assistant", "content": None,
                   "tool_calls": [{"id": "c1", "name": "weather", "arguments": {"city": "Oslo", "days": 2}}]},
                  {"role": "tool", "tool_call_id": "c1", "name": "weather", "content": "sunny"},
                  {"role": "assistant", "content": "Sunny."}],
     "tools": [{"type": "function", "function": {"name": "weather", "description": "", "parameters": {
         "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
         "required": ["city"]}}}],
     "meta": {"source": "mined", "kind": "corrected", "run_ids": ["run-1"]}},
    {"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}],
     "tools": [], "meta": {"source": "mined", "kind": "success", "run_ids": ["run-2"]}},
    {"messages": [{"role": "user", "content": "no answer logged"}], "tools": [], "meta": {}},
]


def test_regression_items_expect_the_logged_turn():
    call_item, answer_item = regression_items(MINED)
    assert call_item["question"] == [MINED[0]["messages"][:2]]
    assert call_item["expect"] == "ast_match" and call_item["category"] == "regression_call"
    assert call_item["ground_truth"] == [{"weather": {"city": ["Oslo"], "days": [2]}}]
    assert "run-1" in call_item["id"]
    assert answer_item["expect"] == "no_call" and answer_item["category"] == "regression_no_call"
    logged = {"name": "weather", "arguments": {"city": "oslo", "days": 2}}
    assert ast_checker.check(call_item, [logged]).ok
    assert ast_checker.check(call_item, [{"name": "weather", "arguments": {"city": "Oslo"}}]).code == "missing_param"
    assert ast_checker.check(answer_item, []).ok


def test_regression_items_read_openai_shaped_calls():
    line = {"messages": [{"role": "user", "content": "sum"}, {"role": "assistant", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "opts": {"x": "y"}}'}}]}],
        "tools": [{"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"},
                                                                                  "opts": {"type": "object"}}}}]}
    (item,) = regression_items([line])
    assert item["ground_truth"] == [{"add": {"a": [1], "opts": [{"x": ["y"]}]}}]
    assert ast_checker.check(item, [{"name": "add", "arguments": {"a": 1, "opts": {"x": "Y"}}}]).ok


def test_a_header_may_set_the_category_tolerance(tmp_path: Path):
    suite = load_suite(write(tmp_path / "s.jsonl", {"suite": {"tolerance": 0.01, "category_tolerance": 0.1}}, ITEM))
    assert (suite.tolerance, suite.category_tolerance) == (0.01, 0.1)
    assert load_suite(write(tmp_path / "t.jsonl", ITEM)).category_tolerance is None
    with pytest.raises(SuiteError, match="'category_tolerance' must be a number"):
        load_suite(write(tmp_path / "u.jsonl", {"suite": {"category_tolerance": -1}}, ITEM))


def test_a_named_suite_can_be_made_the_one_primary(tmp_path: Path):
    suites = [load_suite(write(tmp_path / "a.jsonl", {"suite": {"name": "a", "primary": True}}, ITEM)),
              load_suite(write(tmp_path / "b.jsonl", {"suite": {"name": "b"}}, ITEM)),
              load_suite(write(tmp_path / "lat.jsonl", {"suite": {"name": "lat", "kind": "latency"}}))]
    picked = with_primary(suites, "b")
    assert [s.primary for s in picked] == [False, True, False] and primary_suite(picked).name == "b"
    for name in ("nope", "lat"):
        with pytest.raises(SuiteError, match=f"primary suite '{name}' is not among the ast/regression suites"):
            with_primary(suites, name)


def test_an_item_without_a_category_gets_the_bfcl_one():
    two = [ITEM["function"][0], {"name": "other", "parameters": {"type": "dict", "properties": {}}}]
    assert normalize_item({**ITEM, "function": two}, "t")["category"] == "multiple"
    both = [{"weather": {"city": ["Paris"]}}, {"weather": {"city": ["Rome"]}}]
    assert normalize_item({**ITEM, "function": two, "ground_truth": both}, "t")["category"] == "parallel"
    assert normalize_item({**ITEM, "ground_truth": None}, "t")["category"] == "irrelevance"
