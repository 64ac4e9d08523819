"""A runner process killed in the middle of a run: the unacked request comes back, the run
executes again on the restarted runner and is recorded and announced exactly once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ServiceProcess

from .conftest import RunnerInfra, eventually, fetch_all, run_request

SLOW_TOOL_SCRIPT = json.dumps([
    '<tool_call>{"name": "python", "arguments": {"code": "import time; time.sleep(3); print(42)"}}</tool_call>',
    "The program printed 42.",
])

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")


@pytest.fixture(scope="module")
def runner_process(runner_infra: RunnerInfra, session_tmp: Path) -> Iterator[ServiceProcess]:
    env = {
        **runner_infra.env,
        "INSTANCE_ID": f"agent-runner-redelivery-{runner_infra.infra.suffix}",
        "ENGINE__KIND": "scripted",
        "ENGINE__SCRIPT": SLOW_TOOL_SCRIPT,
        "TOOLS__ENABLED": "python",
    }
    process = ServiceProcess("agent_runner", env, session_tmp / "logs")
    process.start(timeout=90)
    try:
        yield process
    finally:
        process.stop()


async def test_a_run_cut_short_by_a_crash_is_run_again_and_recorded_once(runner_process, amqp, db):
    events = await amqp.collector(bind=("agent.run.completed.v1", "interaction.logged.v1"))
    replies = await amqp.collector()
    request = run_request("Run a slow program", reply_to=replies.name)
    await amqp.publish(request)

    await eventually(lambda: any(s["kind"] == "tool_call" for s in replies.steps(request.run_id)), timeout=60,
                     what="the run to reach its tool call")
    runner_process.kill()
    runner_process.start(timeout=90)

    await eventually(lambda: replies.typed(request.run_id, "AgentRunCompleted"), timeout=60,
                     what="the completion after the restart")
    steps = replies.steps(request.run_id)
    assert [s["kind"] for s in steps].count("started") == 2  # it ran twice ...
    results = [s["tool_result"] for s in steps if s["kind"] == "tool_result"]
    assert results == [{"exit_code": 0, "stdout": "42\n", "stderr": "", "timed_out": False, "truncated": False}]
    rows = await fetch_all(db, "SELECT outcome, answer, attempt FROM agent_runner.trajectories WHERE run_id = :r",
                           r=request.run_id)
    assert len(rows) == 1 and rows[0].outcome == "answered"  # ... and is on record once
    assert rows[0].answer == "The program printed 42."
    await eventually(lambda: events.typed(request.run_id, "InteractionLogged"), what="interaction.logged")
    assert len(events.typed(request.run_id, "AgentRunCompleted")) == 1
    assert len(replies.typed(request.run_id, "AgentRunCompleted")) == 1
