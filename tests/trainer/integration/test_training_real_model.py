"""The recipe on the real Gemma 3 270M: it learns, its adapter loads, a killed run resumes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.training.bfcl_examples import write_jsonl
from trainer.training.data import tokenize_example
from trainer.training.job import TrainingJobSpec
from trainer.training.recipe import LoraRecipe
from tests.trainer.integration.test_recipe_tiny import Recorder

# the module fixture trains the real model: over 10 min on an AVX2-only 2-core host (float32)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

MAX_SEQ_LEN = 256


@pytest.fixture(scope="module")
def short_records(bfcl_records, real_tokenizer) -> list[dict]:
    """BFCL conversations that fit MAX_SEQ_LEN whole (their tool call is never cut)."""
    return [
        r
        for r in bfcl_records
        if len(tokenize_example(r["messages"], r["tools"], real_tokenizer, 10_000).input_ids)
        <= MAX_SEQ_LEN
    ]


def make_job(tmp: Path, base_dir: Path, records: list[dict], **options) -> TrainingJobSpec:
    write_jsonl(records[:48], tmp / "train.jsonl")
    write_jsonl(records[48:56], tmp / "val.jsonl")
    return TrainingJobSpec(
        train_path=tmp / "train.jsonl",
        val_path=tmp / "val.jsonl",
        base_model=str(base_dir),
        output_dir=tmp / "adapter",
        checkpoint_dir=tmp / "ckpt",
        options={
            "rank": 8,
            "alpha": 16,
            "max_seq_len": MAX_SEQ_LEN,
            "learning_rate": 1e-3,
            "warmup_steps": 1,
            "batch_size": 1,
            **options,
        },
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_base_dir, short_records):
    job = make_job(
        tmp_path_factory.mktemp("real-train"),
        real_base_dir,
        short_records,
        max_steps=10,
        batch_size=2,
    )
    sink = Recorder()
    recipe = LoraRecipe(job, sink)
    recipe.setup()
    before = recipe.evaluate()
    metrics = recipe.train()
    adapter_dir = recipe.save_adapter()
    recipe.cleanup()
    return {
        "before": before,
        "metrics": metrics,
        "steps": sink.steps,
        "adapter_dir": adapter_dir,
        "job": job,
    }


def test_eval_loss_falls_after_a_few_steps(trained):
    before, after = trained["before"], trained["metrics"]["eval_loss"]
    losses = [p.loss for p in trained["steps"]]

    assert len(losses) == 10
    assert after < 0.8 * before, (before, after)
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, losses


def test_the_adapter_loads_with_peft_and_changes_the_outputs(trained, real_base_dir, short_records):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from modelkit.chat_format import TOOL_CALL_OPEN, render_prompt

    tok = AutoTokenizer.from_pretrained(real_base_dir)
    record = short_records[50]
    ids = tok(
        render_prompt(record["messages"][:-1], record["tools"]), return_tensors="pt"
    ).input_ids
    base = AutoModelForCausalLM.from_pretrained(real_base_dir, dtype=torch.float32)
    with torch.no_grad():
        base_logits = base(ids).logits[0, -1]
        tuned = PeftModel.from_pretrained(base, trained["adapter_dir"])
        tuned_logits = tuned(ids).logits[0, -1]

    first_answer_token = tok.encode(TOOL_CALL_OPEN, add_special_tokens=False)[0]
    assert (tuned_logits - base_logits).abs().max() > 0.1
    assert tuned_logits.argmax() == first_answer_token  # it learnt to open a tool call


def read_events(proc: subprocess.Popen, until: str) -> list[dict]:
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] in (until, "completed", "failed"):
            break
    return seen


def test_a_killed_training_process_resumes_from_its_checkpoint(
    tmp_path, real_base_dir, short_records
):
    job = make_job(tmp_path, real_base_dir, short_records, max_steps=6, checkpoint_every=2)
    config = tmp_path / "job.json"
    config.write_text(job.model_dump_json())
    cmd = [sys.executable, "-m", "trainer.training.run", "--config", str(config)]

    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        events = read_events(first, until="checkpoint")
        assert events[-1]["event"] == "checkpoint", events
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    killed_at = max(int(p.name.removeprefix("step-")) for p in job.checkpoint_dir.glob("step-*"))

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)

    assert second.returncode == 0, second.stderr[-2000:]
    resumed = [json.loads(line) for line in second.stdout.splitlines()]
    assert resumed[0]["event"] == "started" and resumed[0]["start_step"] == killed_at >= 2
    assert [e["step"] for e in resumed if e["event"] == "progress"] == list(range(killed_at + 1, 7))
    assert resumed[-1]["event"] == "completed" and resumed[-1]["steps"] == 6
