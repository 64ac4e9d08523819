"""The GroupThink vote: candidates, majority, ties, and the no-call candidate."""

from __future__ import annotations

import pytest

from agent_runner.domain import TooManySamplesError
from agent_runner.groupthink import NO_CALL, candidate_of, check_samples, confidence, normalize_value, vote
from agent_runner.ports import Sample
from contracts import Decoding, GroupThinkOptions, TrajectoryStep


def call(name: str, **arguments) -> str:
    import json

    return f'<tool_call>{json.dumps({"name": name, "arguments": arguments})}</tool_call>'


def s(text: str, logprob: float | None = -1.0) -> Sample:
    return Sample(text=text, completion_tokens=5, mean_logprob=logprob)


def test_the_majority_wins_and_agreement_is_its_share():
    result = vote([s(call("add", a=1)), s(call("add", a=2)), s(call("add", a=1))])
    assert result.winner.text == call("add", a=1)
    assert result.agreement == pytest.approx(2 / 3)
    assert (result.votes, result.candidates) == (2, 2)


def test_a_tie_goes_to_the_higher_mean_logprob():
    samples = [s(call("add", a=1), -2.0), s(call("add", a=2), -0.5), s(call("add", a=1), -3.0),
               s(call("add", a=2), -4.0)]
    result = vote(samples)
    assert result.winner.text == call("add", a=2)
    assert result.index == 1  # the best sample of the winning candidate
    assert result.agreement == 0.5


def test_within_the_winning_candidate_the_best_sample_is_returned():
    samples = [s("Paris.", -2.0), s("It is Paris.", -0.3), s(call("lookup", q="x"), -0.1)]
    result = vote(samples)
    assert result.winner.text == "It is Paris."
    assert result.agreement == pytest.approx(2 / 3)


def test_text_answers_are_one_no_call_candidate_that_can_win():
    samples = [s("I cannot help with that."), s("No tool fits."), s(call("weather", city="Paris"))]
    assert candidate_of("anything at all") == NO_CALL == candidate_of("something else")
    result = vote(samples)
    assert candidate_of(result.winner.text) == NO_CALL
    assert result.agreement == pytest.approx(2 / 3)


def test_a_call_beats_text_answers_when_more_samples_make_it():
    samples = [s("No."), s(call("weather", city="Paris")), s(call("weather", city=" Paris "))]
    result = vote(samples)
    assert candidate_of(result.winner.text) != NO_CALL
    assert result.agreement == pytest.approx(2 / 3)


def test_parallel_calls_agree_in_any_order():
    ab = call("get", city="Paris") + call("get", city="Rome")
    ba = call("get", city="Rome") + call("get", city="Paris")
    assert candidate_of(ab) == candidate_of(ba)
    assert candidate_of(ab) != candidate_of(call("get", city="Paris"))  # one call is not two
    assert vote([s(ab), s(ba), s(call("get", city="Paris"))]).agreement == pytest.approx(2 / 3)


def test_numbers_strings_and_key_order_are_normalised():
    assert candidate_of(call("area", base=10, height=5.0)) == candidate_of(call("area", height=5, base=10.0))
    assert candidate_of(call("f", x="  a ")) == candidate_of(call("f", x="a"))
    assert candidate_of(call("f", x=2.5)) != candidate_of(call("f", x=2))
    assert candidate_of(call("f", x="2")) != candidate_of(call("f", x=2))  # a string is not a number
    assert normalize_value({"b": [1.0, True], "a": {"d": 3.0, "c": " x"}}) == {"a": {"c": "x", "d": 3}, "b": [1, True]}
    assert normalize_value(True) is True and normalize_value(1.0) == 1 and type(normalize_value(1.0)) is int


def test_list_order_inside_arguments_counts():
    assert candidate_of(call("f", xs=[1, 2])) != candidate_of(call("f", xs=[2, 1]))


def test_malformed_calls_only_agree_with_the_same_malformed_call():
    broken = "<tool_call>{not json</tool_call>"
    assert candidate_of(broken) == candidate_of("<tool_call> {not json </tool_call>")
    assert candidate_of(broken) not in (NO_CALL, candidate_of(call("f")))


def test_samples_without_logprobs_tie_break_to_the_earliest():
    result = vote([s(call("f", a=1), None), s(call("f", a=2), None)])
    assert result.index == 0 and result.agreement == 0.5


def test_a_vote_needs_samples():
    with pytest.raises(ValueError):
        vote([])


def test_more_samples_than_the_runner_allows_is_refused():
    check_samples(None, 4)
    check_samples(GroupThinkOptions(samples=4), 4)
    with pytest.raises(TooManySamplesError, match="groupthink.samples=5 exceeds"):
        check_samples(GroupThinkOptions(samples=5), 4)


def test_the_run_confidence_is_the_lowest_agreement_of_its_turns():
    steps = [TrajectoryStep(index=0, kind="model", decoding=Decoding(samples=3, agreement=1.0)),
             TrajectoryStep(index=1, kind="tool_call"),
             TrajectoryStep(index=2, kind="model", decoding=Decoding(samples=3, agreement=0.6667))]
    assert confidence(steps) == 0.6667
    assert confidence([TrajectoryStep(index=0, kind="model")]) is None
