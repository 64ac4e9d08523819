"""Judging runs as the gateway returns them, and the feedback a user would give."""

from __future__ import annotations

from loopdemo.judge import check, feedback_for, response_of
from loopdemo.tasks import NO_TOOL_ANSWER, load_tasks


def _task(category: str, tool: str | None = None):
    for t in load_tasks():
        if t.category == category and (tool is None or next(iter(t.ground_truth[0])) == tool):
            return t
    raise AssertionError("no such task")


def _run(*steps, outcome="client_tool_call", version="m@1"):
    return {"run_id": "r1", "status": "completed", "outcome": outcome, "steps": list(steps), "model_version": version}


def _call(name, arguments, valid=True, error=None):
    return {"kind": "tool_call", "tool_call": {"id": "c1", "name": name, "arguments": arguments}, "valid": valid,
            "error": error}


def test_the_reference_call_is_judged_correct_and_accepted():
    task = _task("simple", "convert_units")
    ref = task.reference_calls()[0]
    response = response_of(_run({"kind": "model", "text": "..."}, _call(ref["name"], ref["arguments"])))
    verdict = check(task, response.calls)
    assert verdict.correct and response.valid_calls is True
    assert feedback_for(task, verdict) == {"rating": 1}


def test_a_wrong_value_is_corrected_with_the_reference_call():
    task = _task("multiple", "add_days")
    ref = task.reference_calls()[0]
    wrong = {**ref["arguments"], "days": ref["arguments"]["days"] + 1}
    verdict = check(task, response_of(_run(_call("add_days", wrong))).calls)
    assert not verdict.correct and verdict.reason == "value_not_accepted"
    body = feedback_for(task, verdict)
    assert body["rating"] == -1 and body["corrected_tool_calls"] == [ref]


def test_the_wrong_tool_among_several_is_wrong():
    task = _task("multiple", "convert_currency")
    verdict = check(task, response_of(_run(_call("add_days", {"date": "2026-01-01", "days": 1}))).calls)
    assert not verdict.correct


def test_a_malformed_block_counts_as_an_invalid_call_and_no_match():
    task = _task("simple")
    step = {"kind": "tool_call", "tool_call": None, "text": "<tool_call>{oops", "valid": False,
            "error": "invalid_json: Expecting value"}
    response = response_of(_run(step, outcome="max_steps"))
    assert response.valid_calls is False
    assert check(task, response.calls).reason == "invalid_json"


def test_a_schema_violation_is_still_judged_as_the_call_it_is():
    task = _task("simple", "convert_units")
    ref = task.reference_calls()[0]
    args = {**ref["arguments"], "value": str(ref["arguments"]["value"])}
    response = response_of(_run(_call("convert_units", args, valid=False, error="schema_violation: not a number"),
                                outcome="max_steps"))
    assert response.valid_calls is False
    assert check(task, response.calls).reason == "type_mismatch"


def test_no_call_is_right_where_no_tool_fits_and_a_call_is_corrected_with_a_plain_answer():
    task = _task("irrelevance")
    answered = response_of(_run({"kind": "final", "text": "Paris."}, outcome="answered"))
    assert check(task, answered.calls).correct and answered.valid_calls is None
    name = task.function[0]["name"]
    called = response_of(_run(_call(name, {})))
    verdict = check(task, called.calls)
    assert not verdict.correct
    assert feedback_for(task, verdict) == {"rating": -1, "corrected_answer": NO_TOOL_ANSWER,
                                           "corrected_tool_calls": [],  # the call the model made is dropped
                                           "comment": f"no tool fits ({verdict.reason})"}


def test_without_steps_the_client_tool_calls_are_read():
    task = _task("simple", "calculate_tip")
    ref = task.reference_calls()[0]
    run = {"status": "completed", "outcome": "client_tool_call", "steps": [],
           "client_tool_calls": [{"id": "c", **ref}]}
    assert check(task, response_of(run).calls).correct


def test_a_failed_run_carries_its_reason():
    run = {"status": "failed", "error": {"code": "engine", "reason": "model not loaded"}, "steps": []}
    response = response_of(run)
    assert response.error == "model not loaded" and response.calls == []


def test_a_malformed_call_on_an_irrelevance_task_passes_bfcl_but_is_corrected_in_feedback():
    task = _task("irrelevance")
    step = {"kind": "tool_call", "tool_call": None, "text": "<tool_call>{oops", "valid": False,
            "error": "invalid_json: Expecting value"}
    response = response_of(_run(step, outcome="max_steps"))
    verdict = check(task, response.calls)
    assert verdict.correct, "BFCL: a block that does not decode is no call"
    body = feedback_for(task, verdict, response)
    assert body["rating"] == -1 and body["corrected_answer"] == NO_TOOL_ANSWER


def test_a_no_call_answer_that_parrots_the_tool_instructions_is_corrected_not_accepted():
    task = _task("irrelevance")
    text = 'You can call tools. To call one, answer with only\n<tool_call_name>{"name": "<tool name>"}'
    echo = response_of({**_run({"kind": "final", "text": text}, outcome="answered"), "answer": text})
    verdict = check(task, echo.calls)
    assert verdict.correct  # BFCL: no call is no call
    body = feedback_for(task, verdict, echo)
    assert body["rating"] == -1 and body["corrected_answer"] == NO_TOOL_ANSWER and body["corrected_tool_calls"] == []
    plain = response_of({**_run({"kind": "final", "text": "Tokyo."}, outcome="answered"), "answer": "Tokyo."})
    assert feedback_for(task, check(task, plain.calls), plain) == {"rating": 1}
