"""`agentloop retrain` as an operator runs it: through the real gateway (POST /v1/ops/retrain)
to the real log-miner, which builds the dataset and asks for training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import TrainingRequested
from tests.harness import ROOT, ServiceProcess, make_api_key
from tests.log_miner.integration.conftest import EVAL_DIR, MinerEnv, eventually

EXE = Path(sys.executable).parent / "agentloop"


def agentloop(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def gateway(miner_env: MinerEnv, miner, session_tmp: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("gateway", {**miner_env.env, "INSTANCE_ID": "gateway-miner-test"},
                          session_tmp / "log-miner-logs")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


def cli_env(miner_env: MinerEnv, gateway: ServiceProcess, role: str) -> dict[str, str]:
    key = make_api_key(miner_env.env, role, f"miner-{role}")
    env = {**miner_env.env, "AGENTLOOP_URL": gateway.url, "AGENTLOOP_API_KEY": key}
    env.pop("AGENTLOOP_TOKEN", None)
    return env


async def test_retrain_imports_a_corpus_given_by_a_relative_path_and_requests_training(
        miner_env, gateway, events, db, s3):
    await events.tap(TrainingRequested.routing_key)
    env = cli_env(miner_env, gateway, "operator")
    corpus = os.path.relpath(EVAL_DIR / "bfcl-dev" / "irrelevance.jsonl", ROOT)
    out = agentloop(env, "retrain", "--reason", "cli test", "--source", f"bfcl:{corpus}",
                    "--weight", "bfcl=0.25", "--max-steps", "2", "--val-fraction", "0")
    assert out.returncode == 0, out.stderr
    request_id = out.stdout.strip()
    (dataset_id, manifest_uri), = await eventually(lambda: db.execute(
        "SELECT dataset_id, manifest_uri FROM log_miner.datasets WHERE request_id = %s", (request_id,)).fetchall(),
        60, "the dataset of the request")
    training = (await eventually(lambda: events.of(TrainingRequested.routing_key, dataset_id=dataset_id), 30,
                                 "TrainingRequested"))[0]
    assert training["options"]["max_steps"] == 2
    bucket, key = manifest_uri[len("s3://"):].split("/", 1)
    manifest = json.loads(s3.get_object(bucket, key).read())
    (source,) = manifest["sources"]
    assert source["source"] == f"bfcl:{EVAL_DIR / 'bfcl-dev' / 'irrelevance.jsonl'}"
    assert (source["read"], source["weight"], source["selected"]) == (120, 0.25, 30)
    assert manifest["reason"] == "cli test"
    # irrelevance items are no-call examples: twice each in train by default, a plain-text answer
    assert manifest["shapes"]["train_before"] == {"no_call": 30}
    assert manifest["shapes"]["train_after"] == {"no_call": 60} and manifest["counts"]["train"] == 60
    bucket, key = training["train_uri"][len("s3://"):].split("/", 1)
    lines = [json.loads(x) for x in s3.get_object(bucket, key).read().splitlines()]
    for line in lines:
        answer = line["messages"][-1]
        assert answer["role"] == "assistant" and answer["content"] and "tool_calls" not in answer and line["tools"]
        assert any(t["function"]["name"] in answer["content"] for t in line["tools"])


def test_retrain_needs_an_operator(miner_env, gateway):
    out = agentloop(cli_env(miner_env, gateway, "user"), "retrain")
    assert out.returncode == 2
    assert "403" in out.stderr
