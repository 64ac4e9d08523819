"""The whole recipe on a tiny Gemma 3: checkpoints, exact resume, the subprocess protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.training.checkpoint import ResumeMismatchError
from trainer.training.job import TrainingJobSpec
from trainer.training.progress import NullSink, Progress
from trainer.training.recipe import LoraRecipe

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            },
        },
    }
]


def write_dataset(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            a, b = i * 7 % 50, i * 3 % 40
            call = {
                "id": "c",
                "type": "function",
                "function": {"name": "add", "arguments": json.dumps({"a": a, "b": b})},
            }
            messages = [
                {"role": "user", "content": f"What is {a} plus {b}?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
            ]
            if i % 3 == 0:  # some multi-turn ones with a tool result
                messages += [
                    {"role": "tool", "name": "add", "content": str(a + b)},
                    {"role": "assistant", "content": f"It is {a + b}."},
                ]
            fh.write(json.dumps({"messages": messages, "tools": TOOLS}) + "\n")
    return path


@pytest.fixture
def job(tmp_path, tiny_checkpoint) -> TrainingJobSpec:
    return TrainingJobSpec(
        train_path=write_dataset(tmp_path / "train.jsonl", 24),
        val_path=write_dataset(tmp_path / "val.jsonl", 4),
        base_model=str(tiny_checkpoint),
        output_dir=tmp_path / "adapter",
        checkpoint_dir=tmp_path / "ckpt",
        num_threads=1,
        options={
            "rank": 4,
            "alpha": 8,
            "dropout": 0.1,
            "max_steps": 6,
            "max_seq_len": 512,
            "batch_size": 2,
            "gradient_accumulation": 2,
            "checkpoint_every": 2,
            "learning_rate": 5e-3,
            "warmup_steps": 2,
            "precision": "fp32",
            "target_modules": ["q_proj", "v_proj", "down_proj"],
        },
    )


class Recorder(NullSink):
    def __init__(self, stop_after_checkpoint: int | None = None) -> None:
        self.steps: list[Progress] = []
        self.checkpoints: list[int] = []
        self.start_step: int | None = None
        self.stop_after_checkpoint = stop_after_checkpoint

    def started(self, start_step, total_steps, info):
        self.start_step = start_step

    def progress(self, p):
        self.steps.append(p)

    def checkpoint(self, step, path):
        self.checkpoints.append(step)
        if step == self.stop_after_checkpoint:
            raise KeyboardInterrupt  # stands in for the process being killed


def run(job: TrainingJobSpec, sink: Recorder) -> LoraRecipe:
    recipe = LoraRecipe(job, sink)
    recipe.setup()
    try:
        recipe.train()
    except KeyboardInterrupt:
        pass
    return recipe


def lora_weights(recipe: LoraRecipe) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in recipe.model.named_parameters() if "lora_" in k}


def test_a_resumed_run_continues_exactly_where_the_interrupted_one_stopped(job, tmp_path):
    uninterrupted = Recorder()
    full = run(job.model_copy(update={"checkpoint_dir": tmp_path / "ckpt-full"}), uninterrupted)

    first = Recorder(stop_after_checkpoint=4)
    run(job, first)
    resumed_sink = Recorder()
    resumed = run(job, resumed_sink)

    assert [p.step for p in first.steps] == [1, 2, 3, 4]
    assert resumed_sink.start_step == 4
    assert [p.step for p in resumed_sink.steps] == [5, 6]
    assert [p.loss for p in resumed_sink.steps] == [p.loss for p in uninterrupted.steps[4:]]
    assert [p.lr for p in resumed_sink.steps] == [p.lr for p in uninterrupted.steps[4:]]
    for name, w in lora_weights(full).items():
        torch.testing.assert_close(lora_weights(resumed)[name], w, rtol=0, atol=0)


def test_resume_refuses_a_checkpoint_made_with_other_options(job):
    run(job, Recorder(stop_after_checkpoint=2))
    changed = job.model_copy(
        update={"options": job.options.model_copy(update={"learning_rate": 1e-3})}
    )

    with pytest.raises(ResumeMismatchError):
        LoraRecipe(changed).setup()


def test_progress_reports_every_step_with_a_schedule_shaped_learning_rate(job):
    sink = Recorder()
    run(
        job.model_copy(
            update={"options": job.options.model_copy(update={"checkpoint_every": 100})}
        ),
        sink,
    )

    lrs = [p.lr for p in sink.steps]
    assert [p.step for p in sink.steps] == list(range(1, 7)) and sink.checkpoints == []
    assert (
        lrs[0] == 0.0 and lrs[2] == pytest.approx(5e-3) and lrs[-1] < lrs[2]
    )  # warmup, then cosine decay
    assert all(p.tokens_per_s > 0 and p.total_steps == 6 for p in sink.steps)
    assert sink.steps[-1].eta_s == 0


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_the_subprocess_speaks_json_lines_and_writes_a_loadable_adapter(
    job, tmp_path, tiny_checkpoint
):
    config = tmp_path / "job.json"
    config.write_text(job.model_dump_json())

    proc = subprocess.run(
        [sys.executable, "-m", "trainer.training.run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert proc.returncode == 0, proc.stderr[-2000:]
    evs = events(proc.stdout)  # every stdout line is JSON: nothing else leaks into the protocol
    assert [e["event"] for e in evs] == (
        ["started"]
        + ["progress"] * 2
        + ["checkpoint"]
        + ["progress"] * 2
        + ["checkpoint"]
        + ["progress"] * 2
        + ["completed"]
    )
    progress = [e for e in evs if e["event"] == "progress"]
    assert set(progress[0]) == {
        "event",
        "step",
        "total_steps",
        "loss",
        "lr",
        "tokens_per_s",
        "eta_s",
    }
    assert evs[3] == {
        "event": "checkpoint",
        "step": 2,
        "path": str(job.checkpoint_dir / "step-000002"),
    }
    done = evs[-1]
    assert done["adapter_dir"] == str(job.output_dir) and done["steps"] == 6
    assert {"train_loss", "eval_loss", "train_tokens_per_s"} <= set(done["metrics"])

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_checkpoint), done["adapter_dir"]
    )
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_the_subprocess_reports_a_failure_as_an_event_and_exit_status(tmp_path):
    config = tmp_path / "job.json"
    config.write_text(
        json.dumps(
            {
                "train_path": str(tmp_path / "missing.jsonl"),
                "base_model": str(tmp_path / "none"),
                "output_dir": str(tmp_path / "o"),
                "checkpoint_dir": str(tmp_path / "c"),
            }
        )
    )

    proc = subprocess.run(
        [sys.executable, "-m", "trainer.training.run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 1
    (failed,) = events(proc.stdout)
    assert (
        failed["event"] == "failed"
        and "neither an HF checkpoint directory nor a .gguf file" in failed["reason"]
    )


def test_four_bit_quantisation_is_refused_without_a_gpu(job):
    from trainer.training.recipe import UnsupportedOptionError

    four_bit = job.model_copy(
        update={"options": job.options.model_copy(update={"quantization": "4bit"})}
    )
    with pytest.raises(UnsupportedOptionError):
        LoraRecipe(four_bit).setup()
