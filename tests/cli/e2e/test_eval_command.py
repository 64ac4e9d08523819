"""`agentloop eval` as a user runs it: a tiny BFCL-format file replayed through the six services
(the runner on the real model), judged and reported."""

from __future__ import annotations

import json

import pytest

from .test_cli_against_stack import agentloop, cli_env  # noqa: F401  (the module's fixture, reused)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AREA = {"name": "geometry.area", "description": "Area of a rectangle.",
        "parameters": {"type": "dict", "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
                       "required": ["width", "height"]}}
ITEMS = [
    {"id": "simple_0", "category": "simple", "function": [AREA], "expect": "ast_match",
     "question": [[{"role": "user", "content": "Area of a 3 by 4 rectangle?"}]],
     "ground_truth": [{"geometry.area": {"width": [3], "height": [4]}}]},
    {"id": "irrelevance_0", "category": "irrelevance", "function": [AREA], "expect": "no_call",
     "question": [[{"role": "user", "content": "Say hi."}]], "ground_truth": None},
]


@pytest.fixture(scope="module")
def items_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "tiny.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    return path


def test_eval_replays_every_item_and_prints_one_json_report(cli_env, items_file):  # noqa: F811
    out = agentloop(cli_env, "eval", str(items_file), "--json", "--max-tokens", "48", "--constrained", "off")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # the progress bar went to stderr
    assert doc["items"] == 2 and set(doc["per_category"]) == {"simple", "irrelevance"}
    assert [r["status"] for r in doc["runs"]] == ["completed", "completed"], doc["runs"]
    assert all(r["run_id"] for r in doc["runs"]) and len(doc["model_versions"]) == 1
    assert doc["correct"] == sum(r["correct"] for r in doc["runs"])
    assert doc["valid_calls"]["attempted"] == sum(r["valid_calls"] is not None for r in doc["runs"])
    assert doc["latency_s"]["p50"] > 0 and doc["options"]["constrained"] == "off"


def test_eval_fails_clearly_when_another_model_than_asked_served_the_runs(cli_env, items_file):  # noqa: F811
    out = agentloop(cli_env, "eval", str(items_file), "--model", "gemma3-270m-not-deployed", "--limit", "1",
                    "--max-tokens", "16", "--categories", "simple")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "not by gemma3-270m-not-deployed" in out.stderr and "options.model" in out.stderr
