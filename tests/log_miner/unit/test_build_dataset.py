"""Building a dataset version: files first, then the row and both events in one transaction;
nothing half-written when an upload fails; exactly once per request."""

from __future__ import annotations

import json

import pytest

from contracts import DatasetBuilt, TrainingRequested
from log_miner.service.build_dataset import dataset_id_for, job_id_for
from servicekit.messaging import PermanentError
from tests.log_miner.runs import Trajectory, feedback, retrain
from tests.log_miner.unit.fakes import FakeFiles, line


async def seed(record):
    """Two identical successes, one corrected failure, one rejected, one too long."""
    ok = [Trajectory("What is 17*23?").call("calculator", {"expression": "17*23"}, 391).answer("391")
          for _ in range(2)]
    wrong = Trajectory("What is 6*7?").malformed().end("max_steps")
    rejected = Trajectory("Capital of France?").answer("Lyon")
    long = Trajectory("Tell me a story").answer("once upon a time " * 400)
    for logged in [*ok, wrong, rejected, long]:
        await record.interaction(logged)
    fix = feedback(wrong.run_id, -1, calls=[("calculator", {"expression": "6*7"})])
    await record.feedback(fix)
    await record.feedback(feedback(rejected.run_id, -1))
    return ok, wrong, fix


async def test_a_retrain_request_writes_files_then_the_row_and_both_events(record, build, store, files):
    ok, wrong, fix = await seed(record)
    msg = retrain(val_fraction=0.0)
    result = await build.retrain(msg)

    dataset_id = dataset_id_for(msg.request_id)
    prefix = f"datasets/{dataset_id}/v1/"
    assert set(files.objects) == {prefix + "train.jsonl", prefix + "val.jsonl", prefix + "manifest.json"}
    lines = [json.loads(x) for x in files.objects[prefix + "train.jsonl"].decode().splitlines()]
    assert len(lines) == 2
    corrected = next(x for x in lines if x["meta"]["kind"] == "corrected")
    assert corrected["messages"][-1]["tool_calls"][0]["arguments"] == {"expression": "6*7"}
    assert corrected["meta"]["feedback_ids"] == [fix.feedback_id]
    success = next(x for x in lines if x["meta"]["kind"] == "success")
    assert sorted(success["meta"]["run_ids"]) == sorted(r.run_id for r in ok)

    manifest = json.loads(files.objects[prefix + "manifest.json"])
    assert manifest["dropped"] == {"duplicate": 1, "invalid": {"too_long": 1}}
    assert manifest["counts"]["train"] == 2 and manifest["counts"]["val"] == 0
    assert manifest["files"]["train"]["examples"] == 2
    import hashlib
    assert manifest["files"]["train"]["sha256"] == hashlib.sha256(files.objects[prefix + "train.jsonl"]).hexdigest()

    (row, _), = store.state.datasets.values()
    assert row.version == 1 and row.trigger == "operator" and row.job_id == job_id_for(dataset_id)
    assert set(row.source_run_ids) == {*(r.run_id for r in ok), wrong.run_id}
    built, training = store.state.outbox
    assert isinstance(built, DatasetBuilt) and isinstance(training, TrainingRequested)
    assert store.published == [built, training]
    assert result.built == built
    assert training.job_id == job_id_for(dataset_id)
    assert training.base_model == "bundled"
    assert training.options.max_steps == 3
    assert training.val_uri is None  # empty validation split
    assert training.requested_by == "operator-test"
    assert built.envelope.causation_id == msg.envelope.message_id


async def test_a_redelivered_request_builds_nothing_more(record, build, store, files):
    await seed(record)
    msg = retrain()
    await build.retrain(msg)
    n_objects = len(files.objects)
    assert (await build.retrain(msg)).skipped == "duplicate"
    assert len(store.state.datasets) == 1 and len(store.published) == 2 and len(files.objects) == n_objects


@pytest.mark.parametrize("failing", ["train.jsonl", "val.jsonl", "manifest.json"])
async def test_a_failed_upload_leaves_no_row_and_no_event(record, build, store, failing):
    await seed(record)
    build.files = FakeFiles(fail_on=failing)
    msg = retrain()
    with pytest.raises(ConnectionError):
        await build.retrain(msg)
    assert store.state.datasets == {} and store.state.outbox == [] and store.published == []
    assert not await store.seen(msg.envelope.message_id)  # the retry will do the work


async def test_nothing_to_train_on_builds_nothing_and_takes_the_request_in(build, store, files):
    msg = retrain()
    assert (await build.retrain(msg)).skipped == "empty"
    assert files.objects == {} and store.state.datasets == {} and store.published == []
    assert await store.seen(msg.envelope.message_id)


async def test_corpora_are_imported_and_mixed_with_mined_examples(record, build, reader, files):
    await seed(record)
    reader.files["/data/a.json"] = json.dumps([
        {"instruction": f"Say {i}", "output": str(i)} for i in range(4)] + [{"instruction": "x", "output": ""}]).encode()
    reader.files["/data/chat.jsonl"] = line({"messages": [{"role": "user", "content": "hi"},
                                                          {"role": "assistant", "content": "hello"}]}) + b"garbage\n"
    msg = retrain(["mined", "alpaca:/data/a.json", "/data/chat.jsonl"], weights={"alpaca": 0.5}, val_fraction=0.0)
    result = await build.retrain(msg)
    manifest = json.loads(next(v for k, v in files.objects.items() if k.endswith("manifest.json")))
    sources = {s["source"]: s for s in manifest["sources"]}
    assert sources["alpaca:/data/a.json"]["selected"] == 2
    assert sources["alpaca:/data/a.json"]["invalid"] == {"empty_turn": 1}
    assert sources["/data/chat.jsonl"]["malformed"] == 1 and sources["/data/chat.jsonl"]["by_kind"] == {"openai": 1}
    assert manifest["dropped"]["invalid"]["malformed"] == 1
    assert result.built.counts["train"] == 2 + 2 + 1


async def test_a_bad_source_is_a_permanent_failure(build):
    with pytest.raises(PermanentError):
        await build.retrain(retrain(["parquet:/x"]))
    with pytest.raises(PermanentError):
        await build.retrain(retrain(["bfcl:/not/there.jsonl"]))


async def test_metrics_count_examples_drops_and_datasets(record, build, metrics):
    await seed(record)
    await build.retrain(retrain())
    assert metrics.datasets_built.labels(trigger="operator")._value.get() == 1
    assert metrics.examples_dropped.labels(reason="duplicate")._value.get() == 1
    assert metrics.examples_dropped.labels(reason="too_long")._value.get() == 1
    assert metrics.examples_built.labels(kind="corrected")._value.get() == 1


async def test_two_deliveries_at_once_build_one_version(record, build, store, files):
    import asyncio

    await seed(record)
    msg = retrain()
    results = await asyncio.gather(build.retrain(msg), build.retrain(msg))
    assert sorted(r.skipped or "built" for r in results) == ["built", "duplicate"]
    assert len(store.state.datasets) == 1
    assert {k.split("/")[2] for k in files.objects} == {"v1"}  # no orphan files of a second build


async def test_since_keeps_only_runs_logged_after_it(record, build):
    from datetime import timedelta

    from contracts import utcnow

    old = Trajectory("old question").answer("old answer")
    old = old.model_copy(update={"envelope": old.envelope.model_copy(
        update={"occurred_at": utcnow() - timedelta(days=3)})})
    await record.interaction(old)
    await record.interaction(Trajectory("new question").answer("new answer"))
    since = (utcnow() - timedelta(days=1)).replace(tzinfo=None).isoformat()  # no zone: UTC
    result = await build.retrain(retrain(since=since, val_fraction=0.0, shape_weights={"no_call": 1}))
    assert result.built.counts["train"] == 1
    with pytest.raises(PermanentError):
        await build.retrain(retrain(since="last tuesday"))


async def test_the_manifest_counts_shapes_before_and_after_the_shape_weights(record, build, reader, files):
    await seed(record)  # one multi-turn success (twice), one corrected single call
    reader.files["/data/irrelevance.jsonl"] = b"".join(line({
        "id": f"irrelevance_{i}", "question": [[{"role": "user", "content": f"Poem number {i}?"}]],
        "function": [{"name": "get_weather", "description": "Weather.", "parameters": {
            "type": "dict", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "ground_truth": None, "expect": "no_call"}) for i in range(3))
    msg = retrain(["mined", "bfcl:/data/irrelevance.jsonl"], val_fraction=0.0, shape_weights={"corrected": 2})
    result = await build.retrain(msg)
    manifest = json.loads(next(v for k, v in files.objects.items() if k.endswith("manifest.json")))
    shapes = manifest["shapes"]
    assert shapes["train_before"] == {"multi_turn": 1, "no_call": 3, "single_call": 1}
    assert shapes["train_after"] == {"multi_turn": 1, "no_call": 6, "single_call": 2}
    assert shapes["corrected"] == {"train_before": 1, "train_after": 2, "val": 0}
    assert shapes["weights"]["no_call"] == 2 and shapes["weights"]["corrected"] == 2
    assert manifest["options"]["shape_weights"] == {"corrected": 2}
    assert result.built.counts["train"] == 9
    train = [json.loads(x) for x in next(v for k, v in files.objects.items() if k.endswith("train.jsonl")).splitlines()]
    refusals = [x for x in train if x["meta"]["shape"] == "no_call"]
    assert len(refusals) == 6 and all("get_weather" in x["messages"][-1]["content"] and x["tools"] for x in refusals)
