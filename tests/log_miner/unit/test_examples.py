"""Runs (and feedback) become SFT examples: corrections replace the model's output, invalid
turns are dropped, successes are kept as they ran."""

from __future__ import annotations

from log_miner.domain.examples import KIND_CORRECTED, KIND_SUCCESS, MiningRules, mine_run
from log_miner.domain.records import RunWithFeedback
from log_miner.service.record import feedback_of, run_of
from tests.log_miner.runs import WEATHER, Trajectory, feedback


def mine(logged, *fbs, include_unrated=True):
    return mine_run(RunWithFeedback(run_of(logged), [feedback_of(f) for f in fbs]),
                    MiningRules(include_unrated=include_unrated))


def test_a_successful_run_becomes_an_example_as_it_ran():
    logged = (Trajectory("What is 17*23?", system="Be brief.")
              .call("calculator", {"expression": "17*23"}, 391).answer("17*23 is 391."))
    mined = mine(logged)
    assert mined.kind == KIND_SUCCESS
    ex = mined.example
    assert [m["role"] for m in ex.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert ex.messages[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1_1", "name": "calculator", "arguments": {"expression": "17*23"}}]}
    assert ex.messages[3] == {"role": "tool", "content": "391", "tool_call_id": "call_1_1", "name": "calculator"}
    assert ex.tools[0]["function"]["name"] == "calculator"
    assert ex.line()["meta"] == {"source": "mined", "kind": "success", "run_ids": [logged.run_id],
                                 "feedback_ids": [], "origin": logged.run_id}


def test_unrated_successes_count_only_when_the_policy_says_so():
    logged = Trajectory("Hi").answer("Hello!")
    assert mine(logged, include_unrated=False).example is None
    assert mine(logged, feedback(logged.run_id, 1), include_unrated=False).kind == KIND_SUCCESS
    assert mine(logged, feedback(logged.run_id, 0), include_unrated=False).example is None


def test_a_negatively_rated_success_teaches_nothing():
    logged = Trajectory("Capital of France?").answer("Lyon")
    assert mine(logged, feedback(logged.run_id, -1)).example is None


def test_failed_runs_without_a_correction_teach_nothing():
    logged = Trajectory("2+2?").malformed().end("max_steps")
    assert mine(logged).example is None


def test_a_corrected_call_replaces_the_wrong_one_and_the_invalid_turns_are_dropped():
    logged = (Trajectory("What is 17*23?")
              .malformed()
              .call("calculator", {"expr": "17*23"}, invalid="schema_violation")
              .call("calculator", {"expression": "17+23"}, 40)
              .answer("It is 40."))
    fb = feedback(logged.run_id, -1, calls=[("calculator", {"expression": "17*23"})])
    mined = mine(logged, fb)
    assert mined.kind == KIND_CORRECTED
    msgs = mined.example.messages
    assert msgs == [
        {"role": "user", "content": "What is 17*23?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_0", "name": "calculator", "arguments": {"expression": "17*23"}}]},
    ]
    assert mined.example.feedback_ids == (fb.feedback_id,)


def test_a_corrected_call_with_an_answer_keeps_the_real_result_when_the_model_made_that_call():
    logged = (Trajectory("What is 17*23?")
              .call("calculator", {"expr": "17*23"}, invalid="schema_violation")
              .call("calculator", {"expression": "17*23"}, 391)
              .answer("It is 400."))
    fb = feedback(logged.run_id, -1, calls=[("calculator", {"expression": "17*23"})], answer="17*23 = 391.")
    msgs = mine(logged, fb).example.messages
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
    assert msgs[2] == {"role": "tool", "content": "391", "tool_call_id": "call_0", "name": "calculator"}
    assert msgs[3]["content"] == "17*23 = 391."
    assert "error" not in str(msgs)


def test_a_corrected_answer_replaces_the_final_answer_and_keeps_valid_work():
    logged = (Trajectory("What is 17*23?")
              .malformed()
              .call("calculator", {"expression": "17*23"}, 391)
              .answer("It is 400."))
    fb = feedback(logged.run_id, 0, answer="17*23 is 391.")
    msgs = mine(logged, fb).example.messages
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
    assert msgs[1]["tool_calls"][0]["arguments"] == {"expression": "17*23"}
    assert msgs[-1] == {"role": "assistant", "content": "17*23 is 391."}


def test_a_corrected_answer_replaces_a_client_call_that_should_not_have_been_made():
    logged = Trajectory("Say hi", tools=[WEATHER]).client_call("get_weather", {"city": "Hi"})
    msgs = mine(logged, feedback(logged.run_id, -1, answer="Hi!")).example.messages
    assert msgs == [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}]


def test_the_latest_correction_wins():
    logged = Trajectory("What is 17*23?").answer("400")
    first = feedback(logged.run_id, -1, answer="391")
    second = feedback(logged.run_id, -1, answer="17*23 = 391")
    assert mine(logged, first, second).example.messages[-1]["content"] == "17*23 = 391"


def test_earlier_history_of_the_request_is_kept_before_the_output():
    t = Trajectory("first question")
    t.messages.append(t.messages[-1].model_copy(update={"role": "assistant", "content": "first answer"}))
    t.messages.append(t.messages[0].model_copy(update={"content": "What is 17*23?"}))
    logged = t.call("calculator", {"expression": "17*23"}, 391).answer("391")
    msgs = mine(logged).example.messages
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "tool", "assistant"]
