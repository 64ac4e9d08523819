"""The demo's task set: BFCL format, generated deterministically, split deterministically."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from evalkit import ast_checker
from evalkit.suites import load_suite
from loopdemo import taskgen
from loopdemo.tasks import (
    Split,
    TaskFileError,
    data_path,
    demo_suite_path,
    load_tasks,
    parse_lines,
    split,
)
from loopdemo.tools import TOOL_NAMES, execute
from tests.harness import bfcl_file



def test_shipped_files_are_what_the_generator_writes(tmp_path):
    written = taskgen.write(tmp_path)
    for path in written:
        assert path.read_text() == data_path(path.name).read_text(), f"regenerate: python -m loopdemo.taskgen ({path.name})"


def test_demo_set_has_each_category_and_every_tool():
    tasks = load_tasks()
    assert Counter(t.category for t in tasks) == {"simple": 16, "multiple": 16, "parallel": 12,
                                                  "parallel_multiple": 8, "irrelevance": 18}
    parallel = [t for t in tasks if t.category.startswith("parallel")]
    assert all(len(t.ground_truth) == 2 for t in parallel)
    assert all(len({next(iter(c)) for c in t.ground_truth}) == 2 for t in parallel if t.category == "parallel_multiple")
    called = Counter(next(iter(t.ground_truth[0])) for t in tasks if t.ground_truth)
    assert set(called) == set(TOOL_NAMES)
    assert len({t.messages()[0]["content"] for t in tasks}) == len(tasks), "no question twice"


def test_every_reference_call_passes_the_checker_and_runs_on_the_demo_tools():
    for task in load_tasks():
        calls = task.reference_calls()
        assert ast_checker.check(task.line(), calls).ok, task.id
        for call in calls:
            execute(call["name"], call["arguments"])  # raises on arguments a tool cannot take


def test_split_is_deterministic_disjoint_and_stratified():
    tasks = load_tasks()
    first, second = split(tasks), split(list(reversed(tasks)))
    assert [t.id for t in first.heldout] == [t.id for t in second.heldout]
    assert {t.id for t in first.traffic} == {t.id for t in second.traffic}
    assert not {t.id for t in first.traffic} & {t.id for t in first.heldout}
    assert len(first.traffic) + len(first.heldout) == len(tasks)
    share = Counter(t.category for t in first.heldout)
    assert share == {"simple": 5, "multiple": 5, "parallel": 4, "parallel_multiple": 3, "irrelevance": 6}


def test_validation_and_test_halves_are_disjoint_deterministic_and_cover_each_category(tmp_path):
    from loopdemo.tasks import validation_test

    heldout = split(load_tasks()).heldout
    val, test = validation_test(heldout)
    again_val, again_test = validation_test(list(reversed(heldout)))
    assert [t.id for t in val] == [t.id for t in again_val] and [t.id for t in test] == [t.id for t in again_test]
    assert not {t.id for t in val} & {t.id for t in test}
    assert len(val) + len(test) == len(heldout)
    assert {t.category for t in test} == {t.category for t in heldout}


def test_a_directory_of_task_files_loads_as_one_set(tmp_path):
    lines = data_path().read_text().splitlines()
    (tmp_path / "a.jsonl").write_text("\n".join(lines[:10]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(lines[10:]) + "\n")
    assert [t.id for t in load_tasks(tmp_path)] == [t.id for t in load_tasks()]
    (tmp_path / "c.jsonl").write_text(lines[0] + "\n")
    with pytest.raises(TaskFileError, match="duplicate id"):
        load_tasks(tmp_path)


def test_a_limited_split_keeps_categories_in_proportion():
    parts = split(load_tasks()).limited(traffic=10, heldout=5)
    assert len(parts.traffic) == 10 and len(parts.heldout) == 5
    assert set(Counter(t.category for t in parts.traffic)) == {"simple", "multiple", "parallel", "parallel_multiple",
                                                             "irrelevance"}
    assert isinstance(parts, Split)


def test_heldout_suite_is_an_evalkit_suite_of_the_heldout_part():
    suite = load_suite(demo_suite_path())
    assert [i["id"] for i in suite.items] == [t.id for t in split(load_tasks()).heldout]


def test_tools_are_sent_in_openai_format_with_json_schema_types():
    task = next(t for t in load_tasks() if t.category == "multiple")
    tools = task.tools()
    assert [t["function"]["name"] for t in tools] == list(TOOL_NAMES)
    assert all(t["type"] == "function" and t["function"]["parameters"]["type"] == "object" for t in tools)
    assert tools[0]["function"]["parameters"]["properties"]["value"]["type"] == "number"


@pytest.mark.parametrize("line, problem", [
    ("not json", "not JSON"),
    ('{"id": "a", "question": [], "function": []}', "question"),
    ('{"id": "a", "question": [[{"role": "user", "content": "x"}]], "function": [], "expect": "maybe"}', "expect"),
    ('{"id": "a", "question": [[{"role": "user", "content": "x"}]], "function": [], "expect": "ast_match"}',
     "ground_truth"),
])
def test_a_bad_task_line_is_refused_with_file_and_line(line, problem):
    with pytest.raises(TaskFileError, match=rf"f\.jsonl:1: .*{problem}"):
        parse_lines([line], "f.jsonl")


def test_duplicate_ids_are_refused():
    line = json.dumps({"id": "a", "question": [[{"role": "user", "content": "x"}]], "function": []})
    with pytest.raises(TaskFileError, match="duplicate id"):
        parse_lines([line, line], "f.jsonl")


def test_a_missing_task_file_is_a_clear_error(tmp_path):
    with pytest.raises(TaskFileError, match="cannot read"):
        load_tasks(tmp_path / "nope.jsonl")


def test_bfcl_files_load_and_split():
    tasks = load_tasks(bfcl_file("simple.jsonl"))
    parts = split(tasks)
    assert len(tasks) == 200 and len(parts.heldout) == 67
    assert all(t.reference_calls() for t in tasks)


def test_demo_suites_are_the_evaluators_format_with_the_heldout_part_primary():
    from evalkit.suites import load_suites, primary_suite

    from loopdemo.tasks import demo_suites_dir

    suites = load_suites([demo_suites_dir()])
    primary = primary_suite(suites)
    assert primary.name == "demo-heldout" and primary.threshold is not None
    assert [i["id"] for i in primary.items] == [t.id for t in split(load_tasks()).heldout]
    assert {s.kind for s in suites} == {"ast", "json_validity", "latency"}
