"""Taking in interactions and feedback: exactly once, classified, counts kept per model version."""

from __future__ import annotations

from tests.log_miner.runs import Trajectory, feedback


async def test_an_interaction_is_stored_classified_and_counted_once(record, store, metrics):
    logged = Trajectory("What is 17*23?").call("calculator", {"expression": "17*23"}, 391).answer("391")
    assert await record.interaction(logged) is True
    assert await record.interaction(logged) is False
    stored = store.state.runs[logged.run_id]
    assert (stored.label, stored.example_kind) == ("valid_call", "success")
    assert store.state.counts == {("gemma-test@v1", "valid_call"): 1}
    assert metrics.runs_classified.labels(model_version="gemma-test@v1", label="valid_call")._value.get() == 1
    assert metrics.messages_received.labels(type="InteractionLogged")._value.get() == 1


async def test_feedback_after_the_run_moves_its_count_to_the_new_label(record, store, metrics):
    logged = Trajectory("What is 17*23?").answer("About 400.")
    await record.interaction(logged)
    fb = feedback(logged.run_id, -1, calls=[("calculator", {"expression": "17*23"})])
    assert await record.feedback(fb) is True
    assert await record.feedback(fb) is False
    stored = store.state.runs[logged.run_id]
    assert (stored.label, stored.example_kind) == ("missed_call", "corrected")
    assert store.state.counts == {("gemma-test@v1", "direct_answer"): 0, ("gemma-test@v1", "missed_call"): 1}
    assert metrics.runs_classified.labels(model_version="gemma-test@v1", label="missed_call")._value.get() == 1


async def test_feedback_that_arrives_before_its_run_is_applied_when_the_run_comes(record, store):
    logged = Trajectory("Capital of France?").answer("Lyon")
    await record.feedback(feedback(logged.run_id, -1))
    await record.interaction(logged)
    assert store.state.runs[logged.run_id].label == "negative_feedback"
    assert store.state.runs[logged.run_id].example_kind is None


async def test_the_same_run_under_another_message_id_is_not_stored_twice(record, store):
    logged = Trajectory("Hi").answer("Hello")
    again = logged.model_copy(update={"envelope": logged.envelope.model_copy(update={"message_id": "other"})})
    await record.interaction(logged)
    assert await record.interaction(again) is True
    assert store.state.counts == {("gemma-test@v1", "direct_answer"): 1}


async def test_every_arrival_pokes_the_policy(store, metrics):
    from log_miner.service import RecordRuns

    pokes = []
    record = RecordRuns(store, metrics, include_unrated=True, on_recorded=lambda: pokes.append(1))
    logged = Trajectory("Hi").answer("Hello")
    await record.interaction(logged)
    await record.interaction(logged)
    await record.feedback(feedback(logged.run_id, 1))
    assert len(pokes) == 2
