"""The BFCL suite built from a log-miner dataset's validation split: which examples become items,
their categories, their ground truth, and the file it is written as."""

from __future__ import annotations

import json
from pathlib import Path

from evalkit import ast_checker
from evalkit.dataset_suite import DATASET_SUITE, bfcl_items, dataset_suite, suite_jsonl
from evalkit.suites import infer_category, load_suite

WEATHER = {"type": "function", "function": {"name": "weather", "description": "Weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}
TIMER = {"type": "function", "function": {"name": "timer", "description": "Start a timer.", "parameters": {
    "type": "object", "properties": {"minutes": {"type": "integer"}}, "required": ["minutes"]}}}


def line(question: str, tools: list, *, calls: list | None = None, answer: str | None = None,
         run_id: str | None = None, before: list | None = None) -> dict:
    """A val.jsonl line as the log-miner writes it (messages, tools, meta)."""
    turn: dict = {"role": "assistant", "content": answer}
    if calls:
        turn["tool_calls"] = [{"id": f"c{n}", "name": name, "arguments": args}
                              for n, (name, args) in enumerate(calls, start=1)]
    messages = [*(before or []), {"role": "user", "content": question}, turn]
    if calls:  # the run went on: results and a final answer, which the suite does not judge
        messages += [{"role": "tool", "tool_call_id": "c1", "name": calls[0][0], "content": "done"},
                     {"role": "assistant", "content": "Done."}]
    return {"messages": messages, "tools": tools,
            "meta": {"source": "mined", "kind": "corrected", "run_ids": [run_id] if run_id else [], "origin": run_id}}


VAL = [
    line("Weather in Oslo?", [WEATHER], calls=[("weather", {"city": "Oslo"})], run_id="run-simple"),
    line("Weather in Rome for 3 days?", [WEATHER, TIMER], calls=[("weather", {"city": "Rome", "days": 3})]),
    line("Weather in Oslo and Lima?", [WEATHER, TIMER],
         calls=[("weather", {"city": "Oslo"}), ("weather", {"city": "Lima"})]),
    line("Weather in Oslo and a 5 minute timer", [WEATHER, TIMER],
         calls=[("weather", {"city": "Oslo"}), ("timer", {"minutes": 5})]),
    line("Write a haiku.", [WEATHER], answer="Autumn moonlight..."),
    # not usable: no tools, no answer, a call of a tool not offered, arguments that are not an object
    line("Hi!", [], answer="Hello."),
    {"messages": [{"role": "user", "content": "still typing"}], "tools": [WEATHER], "meta": {}},
    line("Weather in Oslo?", [WEATHER], answer=None),
    line("Set a timer", [WEATHER], calls=[("timer", {"minutes": 1})]),
    line("Weather?", [WEATHER], calls=[("weather", "Oslo")]),
    # a weighted source's copy of the first example
    line("Weather in Oslo?", [WEATHER], calls=[("weather", {"city": "Oslo"})], run_id="run-simple"),
]


def test_categories_are_inferred_as_bfcl_files_them():
    one, two = [{"name": "f"}], [{"name": "f"}, {"name": "g"}]
    assert infer_category(None, two) == "irrelevance"
    assert infer_category([{"f": {}}], one) == "simple"
    assert infer_category([{"f": {}}], two) == "multiple"
    assert infer_category([{"f": {}}, {"f": {}}], two) == "parallel"  # several calls of one function
    assert infer_category([{"f": {}}, {"g": {}}], two) == "parallel_multiple"


def test_each_example_with_tools_and_a_known_answer_becomes_an_item_of_its_category():
    built = bfcl_items(VAL)
    assert [i["category"] for i in built.items] == ["simple", "multiple", "parallel", "parallel_multiple",
                                                    "irrelevance"]
    assert built.read == len(VAL)
    assert dict(built.skipped) == {"no_tools": 1, "no_answer": 2, "unknown_call": 2, "duplicate": 1}
    assert built.summary()["categories"] == {"irrelevance": 1, "multiple": 1, "parallel": 1, "parallel_multiple": 1,
                                             "simple": 1}
    simple, multiple, parallel, _, irrelevance = built.items
    assert simple["id"] == f"{DATASET_SUITE}-1-run-simple"
    assert simple["question"] == [[{"role": "user", "content": "Weather in Oslo?"}]]  # up to the answer only
    assert simple["function"] == [WEATHER["function"]]
    assert simple["ground_truth"] == [{"weather": {"city": ["Oslo"]}}] and simple["expect"] == "ast_match"
    assert multiple["ground_truth"] == [{"weather": {"city": ["Rome"], "days": [3]}}]
    assert parallel["ground_truth"] == [{"weather": {"city": ["Oslo"]}}, {"weather": {"city": ["Lima"]}}]
    assert irrelevance["ground_truth"] is None and irrelevance["expect"] == "no_call"
    assert len({i["id"] for i in built.items}) == 5


def test_the_items_are_judged_by_the_bfcl_rules():
    simple, multiple, parallel, parallel_multiple, irrelevance = bfcl_items(VAL).items
    for item in (simple, multiple, parallel, parallel_multiple, irrelevance):
        assert ast_checker.check(item, ast_checker.reference_calls(item)).ok, item["id"]
    lima_then_oslo = [{"name": "weather", "arguments": {"city": "Lima"}},
                      {"name": "weather", "arguments": {"city": "Oslo"}}]
    assert ast_checker.check(parallel, lima_then_oslo).ok  # any order
    assert ast_checker.check(parallel, lima_then_oslo[:1]).code == "wrong_call_count"
    assert ast_checker.check(multiple, [{"name": "timer", "arguments": {"minutes": 3}}]).code == "wrong_function"
    assert ast_checker.check(irrelevance, [{"name": "weather", "arguments": {"city": "x"}}]).code == \
        "call_on_irrelevance"


def test_history_before_the_last_user_message_stays_in_the_question():
    earlier = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": None,
                "tool_calls": [{"id": "c0", "name": "weather", "arguments": {"city": "Oslo"}}]},
               {"role": "tool", "tool_call_id": "c0", "name": "weather", "content": "rain"},
               {"role": "assistant", "content": "Rain."}]
    (item,) = bfcl_items([line("And in Rome?", [WEATHER], calls=[("weather", {"city": "Rome"})],
                               before=earlier)]).items
    assert item["question"] == [[*earlier, {"role": "user", "content": "And in Rome?"}]]
    assert item["ground_truth"] == [{"weather": {"city": ["Rome"]}}]


def test_the_suite_is_a_primary_ast_suite_and_its_file_reads_back_as_the_same_suite(tmp_path: Path):
    suite, built = dataset_suite(VAL, source="candidate_dataset")
    assert (suite.name, suite.kind, suite.primary, len(suite.items)) == (DATASET_SUITE, "ast", True, 5)
    path = tmp_path / "dataset-val.jsonl"
    path.write_bytes(suite_jsonl(suite, dataset_id="ds-1"))
    header = json.loads(path.read_text().splitlines()[0])
    assert header == {"suite": {"name": DATASET_SUITE, "kind": "ast", "primary": True, "dataset_id": "ds-1"}}
    again = load_suite(path)
    assert (again.name, again.kind, again.primary) == (DATASET_SUITE, "ast", True)
    assert again.content_hash() == suite.content_hash()


def test_a_split_with_nothing_usable_gives_an_empty_suite():
    suite, built = dataset_suite([line("Hi!", [], answer="Hello.")])
    assert suite.items == () and built.skipped == {"no_tools": 1}
