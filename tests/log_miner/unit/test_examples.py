"""Runs (and feedback) become SFT examples: corrections replace the model's output, invalid
turns are dropped, successes are kept as they ran."""

from __future__ import annotations

from log_miner.domain.examples import KIND_CORRECTED, KIND_SUCCESS, MiningRules, mine_run, no_call_answer
from log_miner.domain.validation import invalid_reason
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
    assert ex.line()["meta"] == {"source": "mined", "kind": "success", "shape": "multi_turn",
                                 "run_ids": [logged.run_id], "feedback_ids": [], "origin": logged.run_id}


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


# --------------------------------------------------------------------------- no call, parallel calls


def test_a_no_call_correction_with_an_answer_is_a_plain_text_turn_with_the_tools_still_offered():
    logged = Trajectory("Say hi", tools=[WEATHER]).client_call("get_weather", {"city": "Hi"})
    mined = mine(logged, feedback(logged.run_id, -1, answer="None of my tools can help with that."))
    ex = mined.example
    assert ex.messages == [{"role": "user", "content": "Say hi"},
                           {"role": "assistant", "content": "None of my tools can help with that."}]
    assert [t["function"]["name"] for t in ex.tools] == ["get_weather"]
    assert ex.shape == "no_call" and mined.kind == KIND_CORRECTED
    assert invalid_reason(ex) is None


def test_no_call_as_the_correction_drops_even_calls_that_ran_and_answers_with_a_refusal():
    logged = (Trajectory("Write me a poem", tools=[WEATHER])
              .call("get_weather", {"city": "Oslo"}, {"temp": 3}).answer("It is 3 degrees."))
    ex = mine(logged, feedback(logged.run_id, -1, calls=[])).example
    assert ex.messages == [{"role": "user", "content": "Write me a poem"},
                           {"role": "assistant", "content": no_call_answer(["get_weather"])}]
    assert "get_weather" in ex.messages[-1]["content"] and ex.tools and ex.shape == "no_call"
    assert invalid_reason(ex) is None


def test_no_call_as_the_correction_keeps_the_corrected_answer_when_there_is_one():
    logged = Trajectory("Say hi", tools=[WEATHER]).client_call("get_weather", {"city": "Hi"})
    msgs = mine(logged, feedback(logged.run_id, -1, calls=[], answer="Hi!")).example.messages
    assert msgs[-1] == {"role": "assistant", "content": "Hi!"}


def test_the_no_call_answer_names_the_tools_on_offer_and_is_never_empty():
    assert "determine_bmi" in no_call_answer(["determine_bmi"])
    several = no_call_answer(["a", "b", "c", "d", "e", "f"])
    assert "a, b, c, d" in several and "2 more" in several
    assert no_call_answer([]).strip()


def test_several_corrected_calls_make_one_turn_with_several_calls():
    logged = Trajectory("Weather in Oslo and Paris?", tools=[WEATHER]).client_call("get_weather", {"city": "Oslo"})
    fb = feedback(logged.run_id, -1, calls=[("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Paris"})])
    ex = mine(logged, fb).example
    assert [m["role"] for m in ex.messages] == ["user", "assistant"]
    calls = ex.messages[-1]["tool_calls"]
    assert [c["arguments"]["city"] for c in calls] == ["Oslo", "Paris"] and len({c["id"] for c in calls}) == 2
    assert ex.shape == "parallel" and invalid_reason(ex) is None


def test_a_run_with_parallel_calls_keeps_them_in_one_turn_with_their_results():
    logged = (Trajectory("Weather in Oslo and Paris?", tools=[WEATHER])
              .parallel(("get_weather", {"city": "Oslo"}, {"temp": 3}), ("get_weather", {"city": "Paris"}, {"temp": 9}))
              .answer("Oslo 3, Paris 9."))
    ex = mine(logged).example
    assert [m["role"] for m in ex.messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [c["id"] for c in ex.messages[1]["tool_calls"]] == ["call_1_1", "call_1_2"]
    assert [m["tool_call_id"] for m in ex.messages[2:4]] == ["call_1_1", "call_1_2"]
    assert ex.shape == "parallel" and invalid_reason(ex) is None


def test_client_side_parallel_calls_end_the_example_together():
    logged = Trajectory("Weather in Oslo and Paris?", tools=[WEATHER]).client_calls(
        ("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Paris"}))
    ex = mine(logged).example
    assert len(ex.messages[-1]["tool_calls"]) == 2 and ex.shape == "parallel"
