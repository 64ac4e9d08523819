"""The AST checker on hand-made cases, one or more per rule of shared/eval/bfcl-dev/RULES.md,
and on the ground truth of every bfcl-dev file (which must score 100%)."""

from __future__ import annotations

import json
import random

import pytest

from evalkit import ast_checker as ac
from evalkit.ast_checker import Call, check, reference_calls
from modelkit.chat_format import format_tool_calls, parse_output
from tests.harness import BFCL_DIR

BFCL_FILES = ("simple.jsonl", "multiple.jsonl", "parallel.jsonl", "parallel_multiple.jsonl", "irrelevance.jsonl")

AREA = {
    "name": "geometry.area",
    "description": "Area of a shape.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer"},
            "height": {"type": "float"},
            "unit": {"type": "string"},
            "exact": {"type": "boolean"},
            "sides": {"type": "array", "items": {"type": "integer"}},
            "point": {"type": "tuple", "items": {"type": "float"}},
            "options": {"type": "dict", "properties": {"round": {"type": "integer"}}},
            "shapes": {"type": "array", "items": {"type": "dict"}},
            "anything": {"type": "any"},
        },
        "required": ["base", "height"],
    },
}
WEATHER = {
    "name": "weather",
    "description": "Weather in a city.",
    "parameters": {"type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def simple(truth: dict, **extra) -> dict:
    return {"id": "t", "category": "simple", "function": [AREA], "ground_truth": [{"geometry.area": truth}],
            "expect": "ast_match", **extra}


def call(name: str = "geometry.area", **arguments) -> dict:
    return {"name": name, "arguments": arguments}


BASE = {"base": [10], "height": [5.0]}


# --------------------------------------------------------------------------- per-call rules


def test_the_expected_call_passes():
    assert check(simple(BASE), [call(base=10, height=5.0)]).code == ac.OK


def test_a_call_of_another_function_is_wrong_function():
    assert check(simple(BASE), [call("weather", city="Paris")]).code == ac.WRONG_FUNCTION


def test_dotted_names_must_match_exactly():
    assert check(simple(BASE), [call("geometry_area", base=10, height=5.0)]).code == ac.WRONG_FUNCTION


def test_a_missing_required_parameter_fails_even_when_the_ground_truth_allows_omitting_it():
    verdict = check(simple({"base": [10], "height": ["", 5.0]}), [call(base=10)])
    assert verdict.code == ac.MISSING_REQUIRED
    assert "height" in verdict.detail


def test_a_parameter_outside_the_schema_is_unexpected():
    assert check(simple(BASE), [call(base=10, height=5.0, color="red")]).code == ac.UNEXPECTED_PARAM


def test_a_schema_parameter_absent_from_the_ground_truth_is_unexpected():
    assert check(simple(BASE), [call(base=10, height=5.0, unit="cm")]).code == ac.UNEXPECTED_PARAM


def test_a_string_for_an_integer_is_a_type_mismatch():
    assert check(simple(BASE), [call(base="10", height=5.0)]).code == ac.TYPE_MISMATCH


def test_a_bool_is_not_an_integer():
    assert check(simple({"base": [1], "height": [5.0]}), [call(base=True, height=5.0)]).code == ac.TYPE_MISMATCH


def test_an_int_is_accepted_for_a_float_and_compared_numerically():
    assert check(simple(BASE), [call(base=10, height=5)]).code == ac.OK


def test_a_float_for_an_integer_is_a_type_mismatch():
    assert check(simple(BASE), [call(base=10.0, height=5.0)]).code == ac.TYPE_MISMATCH


def test_a_value_of_the_ground_truths_own_type_is_a_variable_compared_as_is():
    truth = {"base": ["n"], "height": [5.0]}  # the ground truth passes a name where an int is declared
    assert check(simple(truth), [call(base="n", height=5.0)]).code == ac.OK
    assert check(simple(truth), [call(base="m", height=5.0)]).code == ac.VALUE_NOT_ACCEPTED


def test_array_elements_are_type_checked_one_level_deep():
    truth = {**BASE, "sides": [[3, 4, 5]]}
    assert check(simple(truth), [call(base=10, height=5.0, sides=[3, 4, 5])]).code == ac.OK
    verdict = check(simple(truth), [call(base=10, height=5.0, sides=[3, "4", 5])])
    assert verdict.code == ac.TYPE_MISMATCH and "element" in verdict.detail


def test_tuple_parameters_take_json_lists():
    truth = {**BASE, "point": [[1.5, 2.5]]}
    assert check(simple(truth), [call(base=10, height=5.0, point=[1.5, 2.5])]).code == ac.OK


def test_any_is_a_string():
    truth = {**BASE, "anything": ["x"]}
    assert check(simple(truth), [call(base=10, height=5.0, anything="x")]).code == ac.OK
    assert check(simple(truth), [call(base=10, height=5.0, anything=3)]).code == ac.TYPE_MISMATCH


def test_numbers_have_no_tolerance():
    truth = {"base": [10], "height": [3.1416]}
    assert check(simple(truth), [call(base=10, height=3.14159)]).code == ac.VALUE_NOT_ACCEPTED
    assert check(simple(truth), [call(base=11, height=3.1416)]).code == ac.VALUE_NOT_ACCEPTED


def test_strings_are_standardized_before_comparison():
    truth = {**BASE, "unit": ["New York, NY"]}
    for same in ("new york ny", "NewYork,NY", "new-york_ny."):
        assert check(simple(truth), [call(base=10, height=5.0, unit=same)]).code == ac.OK, same
    for other in ("NYC", "New York"):
        assert check(simple(truth), [call(base=10, height=5.0, unit=other)]).code == ac.VALUE_NOT_ACCEPTED


def test_single_and_double_quotes_are_the_same_after_standardization():
    truth = {**BASE, "unit": ['say "hi"']}
    assert check(simple(truth), [call(base=10, height=5.0, unit="say 'hi'")]).code == ac.OK


def test_lists_must_equal_an_acceptable_list_in_order():
    truth = {**BASE, "sides": [[3, 4, 5], [5, 4, 3]]}
    assert check(simple(truth), [call(base=10, height=5.0, sides=[5, 4, 3])]).code == ac.OK
    assert check(simple(truth), [call(base=10, height=5.0, sides=[4, 3, 5])]).code == ac.VALUE_NOT_ACCEPTED
    assert check(simple(truth), [call(base=10, height=5.0, sides=[3, 4])]).code == ac.VALUE_NOT_ACCEPTED


def test_string_list_elements_are_standardized():
    cities = {"type": "array", "items": {"type": "string"}}
    fn = {**WEATHER, "parameters": {"type": "dict", "properties": {"cities": cities}, "required": ["cities"]}}
    truth = [{"weather": {"cities": [["New York", "Paris"]]}}]
    item = {"id": "t", "category": "simple", "function": [fn], "ground_truth": truth, "expect": "ast_match"}
    assert check(item, [call("weather", cities=["new york", "PARIS"])]).code == ac.OK


def test_dict_values_are_checked_key_by_key():
    truth = {**BASE, "options": [{"round": [2, 3], "mode": ["", "fast"]}]}
    ok = check(simple(truth), [call(base=10, height=5.0, options={"round": 3})])
    assert ok.code == ac.OK
    assert check(simple(truth), [call(base=10, height=5.0, options={"round": 4})]).code == ac.VALUE_NOT_ACCEPTED
    extra = check(simple(truth), [call(base=10, height=5.0, options={"round": 2, "speed": 1})])
    assert extra.code == ac.VALUE_NOT_ACCEPTED and "unexpected key" in extra.detail
    missing = check(simple({**BASE, "options": [{"round": [2]}]}), [call(base=10, height=5.0, options={})])
    assert missing.code == ac.VALUE_NOT_ACCEPTED and "missing" in missing.detail


def test_any_of_several_acceptable_dicts_may_match():
    truth = {**BASE, "options": [{"round": [2]}, {"round": [5]}]}
    assert check(simple(truth), [call(base=10, height=5.0, options={"round": 5})]).code == ac.OK


def test_lists_of_dicts_are_compared_pairwise_in_order():
    truth = {**BASE, "shapes": [[{"kind": ["square"]}, {"kind": ["circle"]}]]}
    good = [{"kind": "Square"}, {"kind": "circle"}]
    assert check(simple(truth), [call(base=10, height=5.0, shapes=good)]).code == ac.OK
    assert check(simple(truth), [call(base=10, height=5.0, shapes=good[::-1])]).code == ac.VALUE_NOT_ACCEPTED
    assert check(simple(truth), [call(base=10, height=5.0, shapes=good[:1])]).code == ac.VALUE_NOT_ACCEPTED


def test_a_parameter_may_be_omitted_only_when_the_ground_truth_lists_the_empty_string():
    assert check(simple({**BASE, "unit": ["units", ""]}), [call(base=10, height=5.0)]).code == ac.OK
    verdict = check(simple({**BASE, "unit": ["units"]}), [call(base=10, height=5.0)])
    assert verdict.code == ac.MISSING_PARAM and "unit" in verdict.detail


# --------------------------------------------------------------------------- dispatch


def test_simple_items_want_exactly_one_call():
    verdict = check(simple(BASE), [call(base=10, height=5.0), call(base=10, height=5.0)])
    assert verdict.code == ac.WRONG_CALL_COUNT


def test_no_call_where_one_is_expected():
    assert check(simple(BASE), []).code == ac.NO_CALL


def test_a_malformed_call_block_is_invalid_json():
    parsed = parse_output('<tool_call>{"name": "geometry.area", "arguments": {"base": 10,}</tool_call>')
    assert check(simple(BASE), parsed.calls).code == ac.INVALID_JSON


def test_multiple_judges_the_call_against_the_expected_function():
    item = {"id": "m", "category": "multiple", "function": [WEATHER, AREA],
            "ground_truth": [{"weather": {"city": ["Paris"]}}], "expect": "ast_match"}
    assert check(item, [call("weather", city="paris")]).code == ac.OK
    assert check(item, [call(base=1, height=1.0)]).code == ac.WRONG_FUNCTION
    assert check(item, [call("weather", city="Paris")] * 2).code == ac.WRONG_CALL_COUNT


PARALLEL = {"id": "p", "category": "parallel_multiple", "function": [WEATHER, AREA],
            "ground_truth": [{"weather": {"city": ["Paris"]}}, {"weather": {"city": ["Rome"]}},
                             {"geometry.area": BASE}], "expect": "ast_match"}


def test_parallel_calls_match_in_any_order():
    calls = [call(base=10, height=5.0), call("weather", city="Rome"), call("weather", city="Paris")]
    assert check(PARALLEL, calls).code == ac.OK


def test_parallel_calls_need_the_same_count():
    assert check(PARALLEL, [call("weather", city="Rome"), call("weather", city="Paris")]).code == ac.WRONG_CALL_COUNT


def test_parallel_reports_why_the_unmatched_call_failed():
    calls = [call(base=10, height=5.0), call("weather", city="Rome"), call("weather", city="Berlin")]
    verdict = check(PARALLEL, calls)
    assert verdict.code == ac.VALUE_NOT_ACCEPTED and "weather" in verdict.detail


def test_parallel_without_a_call_of_the_expected_function_is_wrong_function():
    calls = [call(base=10, height=5.0)] * 3
    verdict = check(PARALLEL, calls)
    assert verdict.code == ac.WRONG_FUNCTION and "weather" in verdict.detail


def test_one_call_cannot_match_two_expected_calls():
    item = {**PARALLEL, "ground_truth": [{"weather": {"city": ["Paris"]}}, {"weather": {"city": ["Paris", "Rome"]}}]}
    assert check(item, [call("weather", city="Paris"), call("weather", city="Paris")]).code == ac.OK
    # greedy: the first expected call takes the first fitting model call
    assert check(item, [call("weather", city="Rome"), call("weather", city="Paris")]).code == ac.OK


IRRELEVANT = {"id": "i", "category": "irrelevance", "function": [WEATHER], "ground_truth": None, "expect": "no_call"}


def test_irrelevance_passes_without_a_call():
    assert check(IRRELEVANT, parse_output("I can only tell the weather.").calls).code == ac.OK


def test_irrelevance_fails_on_any_well_formed_call_even_a_wrong_one():
    assert check(IRRELEVANT, [call("weather", town="x")]).code == ac.CALL_ON_IRRELEVANCE


def test_irrelevance_counts_an_undecodable_block_as_no_call():
    assert check(IRRELEVANT, parse_output("<tool_call>{oops</tool_call>").calls).code == ac.OK


def test_json_schema_types_are_understood_too():
    fn = {"name": "pay", "parameters": {"type": "object", "properties": {"amount": {"type": "number"},
                                                                         "meta": {"type": "object"}},
                                        "required": ["amount"]}}
    item = {"id": "r", "category": "regression_call", "function": [fn],
            "ground_truth": [{"pay": {"amount": [12.5], "meta": [{"note": ["rent"]}]}}], "expect": "ast_match"}
    assert check(item, [call("pay", amount=12.5, meta={"note": "Rent"})]).code == ac.OK
    assert check(item, [call("pay", amount="12.5", meta={"note": "rent"})]).code == ac.TYPE_MISMATCH


def test_calls_may_be_given_as_call_objects():
    assert check(simple(BASE), [Call("geometry.area", {"base": 10, "height": 5.0})]).ok


# --------------------------------------------------------------------------- the ground truth of bfcl-dev


def _items(name: str) -> list[dict]:
    path = BFCL_DIR / name
    assert path.is_file(), f"BFCL dev data missing at {path}"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", BFCL_FILES)
def test_the_ground_truth_of_every_bfcl_dev_item_passes(name: str):
    rng = random.Random(name)
    items = _items(name)
    assert items
    failures = []
    for item in items:
        calls = reference_calls(item)
        rng.shuffle(calls)  # order must not matter for parallel items (one call elsewhere)
        text = format_tool_calls(calls) if calls else "None of the offered tools fits this request."
        verdict = check(item, parse_output(text).calls)  # through the real output format and parser
        if not verdict.ok:
            failures.append((item["id"], verdict))
    assert failures == []


@pytest.mark.parametrize("name", BFCL_FILES[:4])
def test_a_perturbed_ground_truth_fails_on_bfcl_dev(name: str):
    """The checker is not a rubber stamp: every item fails once a required argument is dropped."""
    for item in _items(name):
        calls = reference_calls(item)
        required = next(((c, r) for c in calls for f in item["function"] if f["name"] == c["name"]
                         for r in f["parameters"].get("required", []) if r in c["arguments"]), None)
        if required is None:
            continue
        c, r = required
        del c["arguments"][r]
        assert not check(item, calls).ok, item["id"]


def test_a_call_on_every_irrelevance_item_fails():
    for item in _items("irrelevance.jsonl"):
        fn = item["function"][0]
        assert check(item, [call(fn["name"])]).code == ac.CALL_ON_IRRELEVANCE
