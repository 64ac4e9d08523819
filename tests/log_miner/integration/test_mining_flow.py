"""The log-miner as a real process against real RabbitMQ, Postgres and S3: runs and feedback
published the way the runner and the gateway publish them come in exactly once and are
classified; a RetrainRequested yields a dataset version in S3, its row, DatasetBuilt and
TrainingRequested; a BFCL file imports into valid examples; the policy asks on its own.

The tests share the module's service and build on each other's state, in order."""

from __future__ import annotations

import hashlib
import json

import httpx
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from contracts import DatasetBuilt, TrainingRequested, deterministic_id
from tests.log_miner.integration.conftest import EVAL_DIR, eventually
from tests.log_miner.openai_ft import problems
from tests.log_miner.runs import WEATHER, Trajectory, feedback, retrain

BUILT, TRAINING = DatasetBuilt.routing_key, TrainingRequested.routing_key


class Scenario:
    """The runs and feedback of the first test, kept for the later ones. The retrain test mines
    every run of the package's shared database: test files that log runs into it must sort after
    this one (test_queue_for_labels_command.py does)."""

    ok = [Trajectory("What is 17*23?").call("calculator", {"expression": "17*23"}, 391).answer("17*23 is 391.")
          for _ in range(2)]
    wrong = (Trajectory("What is 6*7?").malformed()
             .call("calculator", {"expr": "6*7"}, invalid="schema_violation").end("max_steps"))
    missed = Trajectory("Weather in Oslo?", tools=[WEATHER]).answer("It is probably sunny.")
    rejected = Trajectory("Capital of France?").answer("Lyon")
    long = Trajectory("Tell me a story").answer("once upon a time " * 300)
    broken = Trajectory("What is 2+2?").call("calculator", {"expression": "2+2"}, 4).answer("4")
    failing = Trajectory("1/0?").call("calculator", {"expression": "1/0"}, tool_error="division by zero").answer("?")
    fixes = [
        feedback(wrong.run_id, -1, calls=[("calculator", {"expression": "6*7"})]),
        feedback(missed.run_id, -1, calls=[("get_weather", {"city": "Oslo", "unit": "c"})]),
        feedback(rejected.run_id, -1),
        # a correction that itself breaks the tool's schema: dropped as invalid at build time
        feedback(broken.run_id, -1, calls=[("calculator", {"expression": 4})]),
    ]

    @classmethod
    def runs(cls):
        return [*cls.ok, cls.wrong, cls.missed, cls.rejected, cls.long, cls.broken, cls.failing]


def rows(db, sql: str, *args):
    return db.execute(sql, args).fetchall()


def metric(miner, name: str, **labels) -> float:
    for family in text_string_to_metric_families(httpx.get(miner.url + "/metrics", timeout=5).text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def logged(miner, text: str, message_id: str) -> bool:
    return any(text in line and message_id in line for line in miner.log_text().splitlines())


def s3_json_lines(s3, uri: str) -> list[dict]:
    return [json.loads(x) for x in s3_bytes(s3, uri).decode().splitlines() if x.strip()]


def s3_bytes(s3, uri: str) -> bytes:
    bucket, key = uri[len("s3://"):].split("/", 1)
    resp = s3.get_object(bucket, key)
    try:
        return resp.read()
    finally:
        resp.close()
        resp.release_conn()


async def test_runs_and_feedback_are_taken_in_once_and_classified(miner, events, db):
    # The log-miner process and its database are shared by the package's tests: count our own.
    received_before = metric(miner, "log_miner_messages_received_total", type="AgentRunFinished")
    for logged in Scenario.runs():
        await events.publish(logged)
        await events.publish(logged)  # a duplicate delivery
    for fb in Scenario.fixes:
        await events.publish(fb)
        await events.publish(fb)
    run_ids = [r.run_id for r in Scenario.runs()]
    fb_ids = [f.feedback_id for f in Scenario.fixes]

    def settled():
        n_runs = rows(db, "SELECT count(*) FROM log_miner.interactions WHERE run_id = ANY(%s)", run_ids)[0][0]
        n_fb = rows(db, "SELECT count(*) FROM log_miner.feedback WHERE feedback_id = ANY(%s)", fb_ids)[0][0]
        dups = miner.log_text().count("duplicate delivery ignored")
        return n_runs == len(run_ids) and n_fb == len(fb_ids) and dups >= len(run_ids) + len(fb_ids)

    await eventually(settled, 90, "every run and feedback taken in, and every duplicate seen")
    labels = dict(rows(db, "SELECT run_id, label FROM log_miner.interactions WHERE run_id = ANY(%s)", run_ids))
    s = Scenario
    assert [labels[r.run_id] for r in s.ok] == ["valid_call", "valid_call"]
    assert labels[s.wrong.run_id] == "invalid_json"
    assert labels[s.missed.run_id] == "missed_call"
    assert labels[s.rejected.run_id] == "negative_feedback"
    assert labels[s.failing.run_id] == "tool_error"
    assert labels[s.long.run_id] == "direct_answer"
    ours = [m.envelope.message_id for m in [*Scenario.runs(), *Scenario.fixes]]
    inbox = rows(db, "SELECT message_type, count(*) FROM log_miner.inbox WHERE message_id = ANY(%s) GROUP BY 1 "
                     "ORDER BY 1", ours)
    assert inbox == [("AgentRunFinished", len(run_ids)), ("FeedbackSubmitted", len(fb_ids))]
    counts = dict(rows(db, "SELECT label, runs FROM log_miner.taxonomy_counts WHERE model_version = %s AND runs > 0",
                       "gemma-test@v1"))
    assert sum(counts.values()) == len(run_ids)
    assert counts["valid_call"] == 2 and counts["missed_call"] == 1 and counts["tool_error"] == 1
    assert metric(miner, "log_miner_runs_classified_total", model_version="gemma-test@v1", label="tool_error") == 1
    received = metric(miner, "log_miner_messages_received_total", type="AgentRunFinished") - received_before
    assert received == len(run_ids)  # each delivered twice, taken in once


async def test_a_retrain_request_builds_a_dataset_version_and_asks_for_training(miner, events, db, s3):
    await events.tap(BUILT, TRAINING)
    msg = retrain(["mined"], val_fraction=0.0)
    await events.publish(msg)
    await events.publish(msg)  # a duplicate delivery builds nothing more
    dataset_id = deterministic_id("dataset", msg.request_id)
    built = (await eventually(lambda: events.of(BUILT, dataset_id=dataset_id), 60, "DatasetBuilt"))[0]
    training = (await eventually(lambda: events.of(TRAINING, dataset_id=dataset_id), 30, "TrainingRequested"))[0]
    await eventually(lambda: logged(miner, "duplicate delivery ignored", msg.envelope.message_id), 30,
                     "the second delivery seen as a duplicate")
    assert built["train_uri"].endswith(f"datasets/{dataset_id}/v{built['version']}/train.jsonl")
    assert training["job_id"] == deterministic_id("training-job", dataset_id)
    assert training["train_uri"] == built["train_uri"]
    assert training["base_model"] == "bundled" and training["options"]["max_steps"] == 3
    assert training["requested_by"] == "operator-test"

    lines = s3_json_lines(s3, built["train_uri"])
    by_run = {run_id: line for line in lines for run_id in line["meta"]["run_ids"]}
    s = Scenario
    fixed = by_run[s.wrong.run_id]
    assert fixed["meta"]["kind"] == "corrected"
    assert fixed["messages"] == [
        {"role": "user", "content": "What is 6*7?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_0", "name": "calculator", "arguments": {"expression": "6*7"}}]},
    ]  # the corrected call replaced the wrong ones; the invalid turns and their errors are gone
    assert fixed["meta"]["feedback_ids"] == [s.fixes[0].feedback_id]
    assert by_run[s.missed.run_id]["messages"][-1]["tool_calls"][0]["arguments"] == {"city": "Oslo", "unit": "c"}
    assert by_run[s.ok[0].run_id] is by_run[s.ok[1].run_id]  # duplicates merged, lineage kept
    for excluded in (s.rejected, s.long, s.broken, s.failing):
        assert excluded.run_id not in by_run
    assert len(lines) == 3

    manifest = json.loads(s3_bytes(s3, built["manifest_uri"]))
    assert manifest["dropped"] == {"duplicate": 1, "invalid": {"schema_violation": 1, "too_long": 1}}
    assert manifest["counts"]["train"] == 3 and manifest["counts"]["val"] == 0
    assert manifest["files"]["train"]["sha256"] == hashlib.sha256(s3_bytes(s3, built["train_uri"])).hexdigest()
    assert manifest["training"]["job_id"] == training["job_id"]

    (row,) = rows(db, "SELECT version, train_uri, manifest_uri, trigger, source_run_ids, job_id "
                      "FROM log_miner.datasets WHERE dataset_id = %s", dataset_id)
    assert row[:4] == (built["version"], built["train_uri"], built["manifest_uri"], "operator")
    assert set(row[4]) == set(built["source_run_ids"]) == {*(r.run_id for r in s.ok), s.wrong.run_id,
                                                          s.missed.run_id}
    assert row[5] == training["job_id"]
    assert metric(miner, "log_miner_datasets_built_total", trigger="operator") == 1
    assert metric(miner, "log_miner_examples_dropped_total", reason="too_long") == 1


async def test_a_dataset_version_exports_as_openai_fine_tuning_jsonl_that_datasets_loads(miner, db, s3, tmp_path):
    import datasets

    (version, train_uri), = rows(db, "SELECT version, train_uri FROM log_miner.datasets WHERE trigger = 'operator' "
                                     "ORDER BY created_at DESC LIMIT 1")
    resp = httpx.get(f"{miner.url}/v1/datasets/{version}/export", params={"split": "train"}, timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in resp.text.splitlines()]
    ours = s3_json_lines(s3, train_uri)
    assert len(lines) == len(ours) == 3
    assert all(problems(line) == [] for line in lines), [problems(line) for line in lines]
    assert [len(line["messages"]) for line in lines] == [len(line["messages"]) for line in ours]
    path = tmp_path / "train.jsonl"
    path.write_text(resp.text)
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert loaded.num_rows == 3 and "messages" in loaded.column_names
    assert httpx.get(f"{miner.url}/v1/datasets/999999/export", timeout=10).status_code == 404


async def test_a_bfcl_file_imports_into_valid_examples(miner, events, s3):
    path = EVAL_DIR / "bfcl-dev" / "simple.jsonl"
    msg = retrain([f"bfcl:{path}"], val_fraction=0.1)
    await events.publish(msg)
    dataset_id = deterministic_id("dataset", msg.request_id)
    built = (await eventually(lambda: events.of(BUILT, dataset_id=dataset_id), 60, "DatasetBuilt"))[0]
    manifest = json.loads(s3_bytes(s3, built["manifest_uri"]))
    (source,) = manifest["sources"]
    assert (source["read"], source["malformed"], source["invalid"]) == (200, 0, {})
    lines = s3_json_lines(s3, built["train_uri"]) + s3_json_lines(s3, built["val_uri"])
    assert len(lines) == 200 - source["duplicates"]
    assert 0 < len(s3_json_lines(s3, built["val_uri"])) < 60
    for line in lines:
        (call,) = line["messages"][-1]["tool_calls"]
        (tool,) = [t["function"] for t in line["tools"] if t["function"]["name"] == call["name"]]
        assert not list(Draft202012Validator(tool["parameters"]).iter_errors(call["arguments"]))
        assert line["meta"]["source"] == f"bfcl:{path}" and line["meta"]["origin"].startswith("simple_python_")


async def test_a_corpus_outside_the_allowed_directories_is_refused(miner, events, db):
    msg = retrain(["openai:/etc/hostname"])
    await events.publish(msg)
    await eventually(lambda: "outside the allowed corpus directories" in miner.log_text(), 30, "the refusal logged")
    assert rows(db, "SELECT 1 FROM log_miner.datasets WHERE request_id = %s", msg.request_id) == []


async def test_the_policy_asks_for_training_after_enough_new_examples(miner, events, db):
    runs = [Trajectory(f"What is {i}*3?").call("calculator", {"expression": f"{i}*3"}, i * 3).answer(str(i * 3))
            for i in range(8)]
    for logged in runs:
        await events.publish(logged)
    row = await eventually(lambda: rows(db, "SELECT dataset_id, trigger FROM log_miner.datasets "
                                            "WHERE trigger LIKE 'policy:%%'"), 60, "a policy-built dataset")
    dataset_id, trigger = row[0]
    assert trigger == "policy:new_examples"
    training = (await eventually(lambda: events.of(TRAINING, dataset_id=dataset_id), 30, "TrainingRequested"))[0]
    assert training["requested_by"] == "policy"


def test_readiness_checks_the_broker_postgres_and_s3(miner):
    body = httpx.get(miner.url + "/health/ready", timeout=5).json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"broker", "postgres", "s3"}
