"""Training throughput: our LoRA recipe vs a plain `transformers.Trainer` + peft baseline.

    .venv/bin/python bench/train_throughput.py [--steps 12] [--rounds 3] [--variants baseline,ours,ours-fp32]

Same model (bundled Gemma 3 270M), same data (BFCL simple → tool-call conversations, loss on the
model's turns only), same LoRA config, optimiser, lr schedule, clipping, seed and number of
optimizer steps. Each variant runs in its own subprocess (clean peak-memory numbers) and reports:

- tokens/s: real (non-padding) tokens trained per second of the training loop (setup excluded),
  best and median over `--rounds` interleaved repetitions (the machine may be shared);
- peak RSS: the process high-water mark (ru_maxrss) and the high-water mark of the training loop
  alone (VmHWM reset through /proc/self/clear_refs when training starts);
- losses: mean of the last 4 step losses, and the eval loss on held-out conversations computed by
  the same function for every variant.

Batches. By default (`--same-batches`) both sides train on exactly the same examples per step, in
the same order: the baseline takes `--batch` examples per step from one pre-shuffled list, padded to
the longest; ours packs the same `--batch` examples into one row (positions reset per example). Loss
differences then come from the numerics alone, not from which examples each side happened to draw.
With `--no-same-batches` each side draws its own way: the baseline through `Trainer`'s random sampler,
ours packing the whole set first-fit into rows of `--row-tokens` (default: the length whose rows
hold, on average, as many real tokens as `--batch` examples).

Variants: baseline (Trainer, fp32, the CPU default), baseline-bf16 (Trainer with bf16=True, i.e.
autocast over fp32 weights), ours (recipe defaults: bf16 where the CPU has it), ours-fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BFCL = ROOT.parent / "shared" / "eval" / "bfcl-dev" / "simple.jsonl"
LORA = {"rank": 16, "alpha": 32, "dropout": 0.0, "learning_rate": 5e-4, "warmup_steps": 2, "lr_schedule": "cosine",
        "max_grad_norm": 1.0, "seed": 0}


# ------------------------------------------------------------------ worker side
def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StepClock:
    """Wall and CPU time at the start of training and at the end of every step."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def mark(self) -> None:
        self.marks.append((time.perf_counter(), _cpu_seconds()))

    def summary(self, step_tokens: list[int]) -> dict:
        wall = [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:])]
        cpu = [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:])]
        assert len(wall) == len(step_tokens), (len(wall), len(step_tokens))
        return {"step_tokens": step_tokens, "step_seconds": wall, "step_cpu_seconds": cpu,
                "tokens": sum(step_tokens), "seconds": sum(wall), "cpu_seconds": sum(cpu)}


def _eval_loss(causal_lm, examples, autocast) -> float:
    import torch

    from trainer.training.data import PackedRow
    from trainer.training.loss import collate, summed_token_loss

    total, labels = 0.0, 0
    causal_lm.eval()
    with torch.no_grad():
        for e in examples:
            batch = collate([PackedRow(e.input_ids, e.labels, list(range(len(e.input_ids))), 1)], 0)
            with autocast():
                total += summed_token_loss(causal_lm, batch).item()
            labels += batch.label_count
    return total / labels


def run_ours(cfg: dict, precision: str) -> dict:
    import torch

    from trainer.training.job import TrainingJobSpec
    from trainer.training.progress import NullSink
    from trainer.training.recipe import LoraRecipe

    losses: list[float] = []
    clock = StepClock()

    class Sink(NullSink):
        def started(self, start_step, total_steps, info):
            _reset_peak_rss()
            clock.mark()

        def progress(self, p):
            clock.mark()
            losses.append(p.loss)

    job = TrainingJobSpec(
        train_path=cfg["train"], base_model=cfg["base"], output_dir=Path(cfg["tmp"]) / "adapter",
        checkpoint_dir=Path(cfg["tmp"]) / "ckpt", num_threads=cfg["threads"],
        options={**LORA, "max_steps": cfg["steps"], "batch_size": 1, "max_seq_len": cfg["row_tokens"],
                 "checkpoint_every": 10_000, "precision": precision},
    )
    recipe = LoraRecipe(job, Sink())
    recipe.setup()
    if cfg.get("same_batches"):
        _use_baseline_batches(recipe, cfg)
    val = _val_examples(cfg, recipe.tokenizer)
    before = _eval_loss(recipe.causal_lm, val, recipe._autocast)
    recipe.train()
    train_peak = _peak_rss_mib()
    after = _eval_loss(recipe.causal_lm, val, recipe._autocast)
    step_tokens = [sum(len(recipe.rows[i]) for mb in recipe.schedule.step_batches(s) for i in mb)
                   for s in range(cfg["steps"])]
    return {**clock.summary(step_tokens), "losses": losses, "eval_before": before,
            "eval_after": after, "train_peak_rss_mib": train_peak, "dtype": str(recipe.dtype),
            "examples_per_step": recipe.stats.examples / recipe.stats.rows, "threads": torch.get_num_threads()}


def _baseline_order(cfg: dict, tokenizer):
    """The tokenised training examples in the order the baseline's sequential sampler takes them."""
    from trainer.training.data import read_jsonl, shuffled, tokenize_records

    records = shuffled(read_jsonl(cfg["train"]), LORA["seed"])
    examples, _, _ = tokenize_records(records, tokenizer, max_seq_len=4096)
    return examples


def _use_baseline_batches(recipe, cfg: dict) -> None:
    """--same-batches: step s of ours trains on one packed row holding exactly the `batch` examples
    of the baseline's step s (positions reset per example), so both see the same data in the same
    order and any loss difference comes from the numerics, not from which examples were drawn."""
    from trainer.training.data import Schedule, pack

    class InOrder(Schedule):
        def epoch_order(self, epoch: int) -> list[int]:
            return list(range(self.n_rows))

    examples = _baseline_order(cfg, recipe.tokenizer)
    b = cfg["batch"]
    groups = [examples[i : i + b] for i in range(0, len(examples), b)]
    recipe.rows = [pack(g, sum(len(e.input_ids) for e in g))[0] for g in groups]
    recipe.schedule = InOrder(len(recipe.rows), 1, 1, LORA["seed"])


def run_baseline(cfg: dict, bf16: bool) -> dict:
    import torch
    from contextlib import nullcontext

    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from trainer.training.data import read_jsonl, shuffled, tokenize_records
    from trainer.training.recipe import lora_config
    from contracts.learning import LoraOptions

    torch.set_num_threads(cfg["threads"])
    tokenizer = AutoTokenizer.from_pretrained(cfg["base"])
    torch.manual_seed(LORA["seed"])
    model = AutoModelForCausalLM.from_pretrained(cfg["base"], dtype=torch.float32)
    model = get_peft_model(model, lora_config(LoraOptions(**LORA)))
    records = shuffled(read_jsonl(cfg["train"]), LORA["seed"])
    examples, _, _ = tokenize_records(records, tokenizer, max_seq_len=4096)
    dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    pad = tokenizer.pad_token_id
    batch_tokens: list[int] = []

    def collator(features):  # right padding, labels -100 on padding, an attention mask
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
        batch_tokens.append(int(mask.sum()))
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    losses: list[float] = []
    clock = StepClock()

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            _reset_peak_rss()
            clock.mark()

        def on_step_end(self, args, state, control, **kw):
            clock.mark()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    args = TrainingArguments(
        output_dir=str(Path(cfg["tmp"]) / "trainer"), per_device_train_batch_size=cfg["batch"],
        gradient_accumulation_steps=1, learning_rate=LORA["learning_rate"], lr_scheduler_type="cosine",
        warmup_steps=LORA["warmup_steps"], max_steps=cfg["steps"], max_grad_norm=LORA["max_grad_norm"],
        weight_decay=0.0, seed=LORA["seed"], logging_steps=1, save_strategy="no", report_to=[],
        dataloader_num_workers=0, use_cpu=True, bf16=bf16, remove_unused_columns=False, disable_tqdm=True,
    )
    val = _val_examples(cfg, tokenizer)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    before = _eval_loss(model.get_base_model(), val, autocast)
    model.train()
    trainer_cls = Trainer
    if cfg.get("same_batches"):  # the examples are already shuffled; take them in that order
        from torch.utils.data import SequentialSampler

        class InOrderTrainer(Trainer):
            def _get_train_sampler(self, train_dataset=None):
                return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

        trainer_cls = InOrderTrainer
    trainer_cls(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[Clock()]).train()
    train_peak = _peak_rss_mib()
    after = _eval_loss(model.get_base_model(), val, autocast)
    # batches come in step order (the loader may fetch one ahead: the extra one is cut off)
    return {**clock.summary(batch_tokens[: cfg["steps"]]), "losses": losses,
            "eval_before": before, "eval_after": after, "train_peak_rss_mib": train_peak,
            "dtype": "torch.bfloat16 autocast" if bf16 else "torch.float32", "examples_per_step": cfg["batch"],
            "threads": torch.get_num_threads()}


def _val_examples(cfg: dict, tokenizer):
    from trainer.training.data import read_jsonl, tokenize_records

    examples, _, _ = tokenize_records(read_jsonl(cfg["val"]), tokenizer, max_seq_len=4096)
    return examples


def worker(variant: str, cfg: dict) -> None:
    runners = {
        "ours": lambda: run_ours(cfg, "auto"),
        "ours-fp32": lambda: run_ours(cfg, "fp32"),
        "baseline": lambda: run_baseline(cfg, bf16=False),
        "baseline-bf16": lambda: run_baseline(cfg, bf16=True),
    }
    result = runners[variant]()
    result["variant"] = variant
    result["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------ parent side
def prepare(args: argparse.Namespace, tmp: Path) -> dict:
    from modelkit.base_model import bundled_gguf_path
    from transformers import AutoTokenizer

    from trainer.training.base_weights import resolve_base_model
    from trainer.training.bfcl_examples import examples_from_file, write_jsonl
    from trainer.training.data import tokenize_records

    base = args.base or str(resolve_base_model(bundled_gguf_path()))
    records = list(examples_from_file(args.bfcl))
    train, val = records[: -args.val], records[-args.val :]
    write_jsonl(train, tmp / "train.jsonl")
    write_jsonl(val, tmp / "val.jsonl")
    examples, _, _ = tokenize_records(train, AutoTokenizer.from_pretrained(base), max_seq_len=4096)
    mean_len = statistics.mean(len(e.input_ids) for e in examples)
    row_tokens = args.row_tokens or _matching_row_tokens(examples, args.batch * mean_len)
    return {"train": str(tmp / "train.jsonl"), "val": str(tmp / "val.jsonl"), "base": base, "steps": args.steps,
            "batch": args.batch, "row_tokens": max(row_tokens, max(len(e.input_ids) for e in examples)),
            "threads": args.threads, "mean_example_tokens": mean_len, "train_examples": len(train),
            "val_examples": len(val)}


def _matching_row_tokens(examples, target: float) -> int:
    """The packed row length (a multiple of 64) whose rows carry, on average, closest to `target`
    real tokens: first-fit packing leaves some room in every row."""
    from trainer.training.data import pack

    longest = max(len(e.input_ids) for e in examples)
    candidates = range(-(-longest // 64) * 64, int(target * 1.5) + 64, 64)
    fill = {n: statistics.mean(len(r) for r in pack(examples, n)) for n in candidates}
    return min(fill, key=lambda n: abs(fill[n] - target))


def table(runs: dict[str, list[dict]]) -> str:
    """Best and median over rounds (other processes on the machine only ever slow a run down);
    'steady' leaves out each run's first step, where kernels are created and caches warmed."""

    def rates(variant: str, time_key: str, skip: int) -> list[float]:
        return [sum(r["step_tokens"][skip:]) / sum(r[time_key][skip:]) for r in runs[variant]]

    def ratio(variant: str, skip: int) -> str:
        if "baseline" not in runs:
            return "–"
        ours, base = rates(variant, "step_seconds", skip), rates("baseline", "step_seconds", skip)
        return f"{max(ours) / max(base):.2f} ({statistics.median(ours) / statistics.median(base):.2f})"

    lines = [
        "| variant | compute | steady tokens/s best (median) | × baseline | all-steps tokens/s best | × baseline "
        "| steady tokens/CPU-s best | train-loop peak RSS MiB | mean loss last 4 steps | eval loss before → after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for variant, results in runs.items():
        steady, whole = rates(variant, "step_seconds", 1), rates(variant, "step_seconds", 0)
        first = results[0]
        lines.append(
            f"| {variant} | {first['dtype'].removeprefix('torch.')} | {max(steady):.0f} ({statistics.median(steady):.0f}) "
            f"| {ratio(variant, 1)} | {max(whole):.0f} | {ratio(variant, 0)} "
            f"| {max(rates(variant, 'step_cpu_seconds', 1)):.0f} | {max(r['train_peak_rss_mib'] for r in results):.0f} "
            f"| {statistics.mean(first['losses'][-4:]):.4f} | {first['eval_before']:.4f} → {first['eval_after']:.4f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="baseline,ours,ours-fp32")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; best and median reported")
    parser.add_argument("--batch", type=int, default=4, help="baseline examples per step")
    parser.add_argument("--row-tokens", type=int, default=None, help="our packed row length (default: batch × mean)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--val", type=int, default=24, help="held-out conversations for the eval loss")
    parser.add_argument("--bfcl", type=Path, default=DEFAULT_BFCL)
    parser.add_argument("--base", default=None, help="HF checkpoint dir (default: the bundled GGUF, converted)")
    parser.add_argument("--same-batches", action=argparse.BooleanOptionalAction, default=True,
                        help="ours trains on exactly the baseline's examples per step, in the same order "
                             "(default); --no-same-batches: each side draws and packs its own way")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, json.loads(args.config))
        return 0

    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp_dir:
        cfg = prepare(args, Path(tmp_dir))
        cfg["same_batches"] = args.same_batches
        print(f"config: {json.dumps(cfg)}", flush=True)
        variants = args.variants.split(",")
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for round_no in range(args.rounds):  # interleaved, so load from other processes hits all alike
            for variant in variants:
                vtmp = Path(tmp_dir) / f"{variant}-{round_no}"
                vtmp.mkdir()
                load_before = os.getloadavg()[0]
                proc = subprocess.run(
                    [sys.executable, __file__, "--worker", variant, "--config",
                     json.dumps({**cfg, "tmp": str(vtmp)})],
                    capture_output=True, text=True,
                )
                lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    return 1
                result = json.loads(lines[-1].removeprefix("RESULT "))
                result["load_avg"] = [load_before, os.getloadavg()[0]]
                runs[variant].append(result)
                print(f"round {round_no + 1} {variant}: {result['tokens'] / result['seconds']:.1f} tok/s, "
                      f"{result['tokens'] / result['cpu_seconds']:.1f} tok/CPU-s over {result['tokens']} tokens in "
                      f"{result['seconds']:.1f}s, loadavg {load_before:.2f}→{os.getloadavg()[0]:.2f}, "
                      f"eval {result['eval_before']:.4f}→{result['eval_after']:.4f}, "
                      f"losses {[round(x, 3) for x in result['losses']]}", flush=True)
        print()
        print(table(runs))
    return 0

if __name__ == "__main__":
    sys.exit(main())
