"""Taking in interactions and feedback: exactly once, classified, counts kept per model version."""

from __future__ import annotations

import asyncio

from log_miner.service import RecordRuns
from tests.log_miner.runs import WEATHER, Trajectory, feedback


async def test_an_interaction_is_stored_classified_and_counted_once(record, store, metrics):
    logged = Trajectory("What is 17*23?").call("calculator", {"expression": "17*23"}, 391).answer("391")
    assert await record.interaction(logged) is True
    assert await record.interaction(logged) is False
    stored = store.state.runs[logged.run_id]
    assert (stored.label, stored.example_kind) == ("valid_call", "success")
    assert store.state.counts == {("gemma-test@v1", "valid_call"): 1}
    assert metrics.runs_classified.labels(model_version="gemma-test@v1", label="valid_call")._value.get() == 1
    assert metrics.messages_received.labels(type="AgentRunFinished")._value.get() == 1


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
    pokes = []
    record = RecordRuns(store, store, metrics, include_unrated=True, on_recorded=lambda: pokes.append(1))
    logged = Trajectory("Hi").answer("Hello")
    await record.interaction(logged)
    await record.interaction(logged)
    await record.feedback(feedback(logged.run_id, 1))
    assert len(pokes) == 2


def batch_sizes(metrics) -> tuple[float, float]:
    """(flushes, logged runs written) from the batch-size histogram."""
    samples = {s.name: s.value for s in metrics.interaction_batch_size.collect()[0].samples}
    return samples["log_miner_interaction_batch_size_count"], samples["log_miner_interaction_batch_size_sum"]


async def test_concurrent_interactions_share_one_transaction(record, store, metrics):
    ok = [Trajectory("What is 17*23?").call("calculator", {"expression": "17*23"}, 391).answer("391")
          for _ in range(3)]
    chatty = [Trajectory("Hi").answer("Hello") for _ in range(2)]
    other_model = Trajectory("Hi", model_version="gemma-test@v2").answer("Hello")
    results = await asyncio.gather(*(record.interaction(m) for m in [*ok, *chatty, other_model]))
    assert results == [True] * 6
    assert batch_sizes(metrics) == (1, 6)
    assert store.batch_calls == [["claim", "insert_interactions"]]  # no feedback on record: not read
    assert {r: store.state.runs[r].label for r in (m.run_id for m in ok)} == dict.fromkeys(
        (m.run_id for m in ok), "valid_call")
    assert store.state.counts == {("gemma-test@v1", "valid_call"): 3, ("gemma-test@v1", "direct_answer"): 2,
                                  ("gemma-test@v2", "direct_answer"): 1}
    assert metrics.runs_classified.labels(model_version="gemma-test@v1", label="direct_answer")._value.get() == 2
    assert metrics.messages_received.labels(type="AgentRunFinished")._value.get() == 6


async def test_a_message_twice_in_one_batch_and_again_later_is_taken_in_once(store, metrics):
    pokes = []
    record = RecordRuns(store, store, metrics, include_unrated=True, on_recorded=lambda: pokes.append(1))
    logged = Trajectory("Hi").answer("Hello")
    other = Trajectory("Capital of France?").answer("Paris")
    assert await asyncio.gather(record.interaction(logged), record.interaction(other),
                                record.interaction(logged)) == [True, True, False]
    assert await asyncio.gather(record.interaction(other), record.interaction(logged)) == [False, False]
    assert batch_sizes(metrics) == (2, 5)
    assert store.state.counts == {("gemma-test@v1", "direct_answer"): 2}
    assert metrics.messages_received.labels(type="AgentRunFinished")._value.get() == 2
    assert len(pokes) == 2


async def test_one_run_under_two_message_ids_in_one_batch_is_stored_once(record, store):
    logged = Trajectory("Hi").answer("Hello")
    again = logged.model_copy(update={"envelope": logged.envelope.model_copy(update={"message_id": "other"})})
    assert await asyncio.gather(record.interaction(logged), record.interaction(again)) == [True, True]
    assert store.state.counts == {("gemma-test@v1", "direct_answer"): 1}
    assert store.state.inbox >= {logged.envelope.message_id, "other"}


async def test_feedback_that_came_first_classifies_its_run_inside_a_batch(record, store):
    rejected = Trajectory("Capital of France?").answer("Lyon")
    missed = Trajectory("Weather in Oslo?", tools=[WEATHER]).answer("It is probably sunny.")
    plain = Trajectory("Hi").answer("Hello")
    await record.feedback(feedback(rejected.run_id, -1))
    await record.feedback(feedback(missed.run_id, -1, calls=[("get_weather", {"city": "Oslo"})]))
    await asyncio.gather(*(record.interaction(m) for m in (rejected, missed, plain)))
    assert store.batch_calls == [["claim", "insert_interactions", "feedback_for", "insert_interactions"]]
    runs = store.state.runs
    assert (runs[rejected.run_id].label, runs[rejected.run_id].example_kind) == ("negative_feedback", None)
    assert (runs[missed.run_id].label, runs[missed.run_id].example_kind) == ("missed_call", "corrected")
    assert runs[plain.run_id].label == "direct_answer"
    assert store.state.counts == {("gemma-test@v1", "negative_feedback"): 1, ("gemma-test@v1", "missed_call"): 1,
                                  ("gemma-test@v1", "direct_answer"): 1}


async def test_a_bad_run_fails_only_its_own_delivery(record, store, metrics):
    good = [Trajectory("Hi").answer("Hello") for _ in range(3)]
    bad = Trajectory("Hi").answer("Hello")
    store.poison.add(bad.run_id)
    results = await asyncio.gather(*(record.interaction(m) for m in (good[0], bad, *good[1:])),
                                   return_exceptions=True)
    assert results[0] is True and results[2:] == [True, True]
    assert isinstance(results[1], ValueError)
    assert set(store.state.runs) == {m.run_id for m in good}
    assert bad.envelope.message_id not in store.state.inbox  # redelivered, it is a first delivery again
    assert store.state.counts == {("gemma-test@v1", "direct_answer"): 3}
    assert metrics.messages_received.labels(type="AgentRunFinished")._value.get() == 3
