"""What the label queue lists about a run, and which failure classes it orders."""

from __future__ import annotations

from log_miner.domain.labeling import FAILURE_ORDER, INSTRUCTION_CHARS, candidate
from log_miner.domain.taxonomy import SUCCESS, Label, classify
from log_miner.service.record import run_of
from tests.log_miner.runs import WEATHER, Trajectory


def listed(logged):
    run = run_of(logged)
    c = classify(run)
    return candidate(run, c.label.value, tuple(x.value for x in c.labels))


def test_every_failure_a_run_can_have_without_feedback_has_a_place_in_the_order():
    needs_feedback = {Label.MISSED_CALL, Label.NEGATIVE_FEEDBACK}
    assert set(FAILURE_ORDER) == {x.value for x in set(Label) - SUCCESS - needs_feedback}
    assert FAILURE_ORDER.index("invalid_json") < FAILURE_ORDER.index("max_steps") < FAILURE_ORDER.index("timeout")


def test_a_split_vote_is_listed_with_the_question_the_tools_and_what_the_model_made():
    logged = Trajectory("Weather in Oslo and Paris?", tools=[WEATHER], confidence=0.4).client_calls(
        ("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Paris"}))
    c = listed(logged)
    assert (c.reason, c.confidence, c.label, c.outcome) == ("low_confidence", 0.4, "valid_call", "client_tool_call")
    assert c.instruction == "Weather in Oslo and Paris?" and c.tools == ["get_weather"]
    assert [x["arguments"]["city"] for x in c.calls] == ["Oslo", "Paris"] and c.answer is None


def test_a_unanimous_or_greedy_failure_is_listed_as_failed_with_its_answer():
    greedy = listed(Trajectory("Hi", tools=[WEATHER]).malformed().end("max_steps"))
    assert (greedy.reason, greedy.confidence, greedy.label) == ("failed", None, "invalid_json")
    sure = listed(Trajectory("Hi", tools=[WEATHER], confidence=1.0).answer("Hello"))
    assert sure.reason == "failed" and sure.answer == "Hello"


def test_a_long_instruction_is_shortened():
    c = listed(Trajectory("x" * 2000, confidence=0.5).answer("ok"))
    assert len(c.instruction) == INSTRUCTION_CHARS and c.instruction.endswith("…")
