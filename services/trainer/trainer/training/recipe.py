"""The LoRA fine-tuning recipe: setup → train → save_checkpoint / save_adapter → cleanup.

Linear on purpose (torchtune's shape): one class holds the run's state, each phase is one method,
components (data, loss, checkpoint, progress) live in their own modules.

Speed on CPU, each measured on Gemma 3 270M (numbers in docs/benchmarks.md):
- logits only at labelled positions (loss.py): the 262k-vocab lm_head is most of the FLOPs;
- packing with per-example position ids (data.py): no padding, no cross-example attention, and
  attention computed per example rather than masked per row (attention.py);
- bf16 compute where the CPU has native bf16 (AVX512-BF16/AMX): the frozen base weights are
  loaded in bf16 (autocast on fp32 weights re-casts every weight every step and was slower than
  fp32 here); LoRA weights, optimizer state and the loss stay fp32;
- torch threads = usable cores; no gradient checkpointing (a 270M model fits without it, and
  recomputation would cost ~30% more compute).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from contracts.learning import LoraOptions

from . import attention, checkpoint
from .base_weights import resolve_base_model
from .data import PackedRow, Schedule, build_rows, fingerprint, read_jsonl
from .job import TrainingJobSpec
from .loss import collate, summed_token_loss
from .progress import NullSink, Progress, ProgressSink


class UnsupportedOptionError(ValueError):
    """The options ask for something this host cannot do (e.g. 4-bit on CPU)."""


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if native_cpu_bf16() else torch.float32  # emulated bf16 is slower than fp32


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX). oneDNN's own check
    (`_is_mkldnn_bf16_supported`) is true on any AVX512 CPU, where bf16 is emulated: a 1024x640 @
    640x2048 matmul took 49 ms in bf16 against 8.5 ms in fp32 on such a Xeon, and training ran at a
    third of its fp32 speed."""
    cpu = torch.cpu
    probes = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(p is None for p in probes):  # a torch without the probes: read the CPU's flags
        try:
            flags = Path("/proc/cpuinfo").read_text().split()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return any(bool(p()) for p in probes if p is not None)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def lora_config(options: LoraOptions) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(options.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _wants_unsloth(device: torch.device) -> bool:
    import importlib.util

    return device.type == "cuda" and importlib.util.find_spec("unsloth") is not None


class LoraRecipe:
    # Shape bucketing for oneDNN's per-shape kernels (see loss.collate and docs/benchmarks.md).
    row_multiple = 64
    label_multiple = 16

    def __init__(self, job: TrainingJobSpec, sink: ProgressSink | None = None) -> None:
        self.job = job
        self.options = job.options
        self.sink = sink or NullSink()
        self.step = 0  # optimizer steps completed
        self.start_step = 0
        self.loss_history: list[float] = []
        self.tokens_seen = 0

    # ---------------------------------------------------------------- setup
    def setup(self) -> None:
        opts = self.options
        torch.set_num_threads(self.job.num_threads or usable_cores())
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = compute_dtype(opts.precision, self.device)
        self.backend = "unsloth" if _wants_unsloth(self.device) else "peft"
        if opts.quantization == "4bit" and self.backend != "unsloth":
            raise UnsupportedOptionError("quantization=4bit needs CUDA with unsloth installed")
        self.hf_dir = resolve_base_model(self.job.base_model, self.job.model_cache_dir)

        torch.manual_seed(opts.seed)  # LoRA init draws from the torch RNG
        if self.backend == "unsloth":
            from .unsloth_backend import load_unsloth

            self.model, self.tokenizer = load_unsloth(self.hf_dir, opts, self.dtype)
        else:
            self.model, self.tokenizer = self._load_peft()
        self.causal_lm = self.model.get_base_model()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        packing = (
            self.backend == "peft"
        )  # see unsloth_backend: its attention may not honour position resets
        self.rows, self.stats = build_rows(
            read_jsonl(self.job.train_path), self.tokenizer, opts.max_seq_len, opts.seed, packing
        )
        if not self.rows:
            raise ValueError(f"{self.job.train_path}: no example with a trainable token")
        self.val_rows: list[PackedRow] = []
        if self.job.val_path:
            self.val_rows, _ = build_rows(
                read_jsonl(self.job.val_path), self.tokenizer, opts.max_seq_len, None, packing
            )
        self.fingerprint = fingerprint(self.rows)
        self.schedule = Schedule(
            len(self.rows), opts.batch_size, opts.gradient_accumulation, opts.seed
        )
        self.total_steps = self.schedule.total_steps(opts.epochs, opts.max_steps)

        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=opts.learning_rate, weight_decay=0.0)
        self.scheduler = self._lr_scheduler()

        if self.job.resume and (found := checkpoint.latest(self.job.checkpoint_dir)) is not None:
            self._load_checkpoint(found)

    def _load_peft(self) -> tuple[Any, Any]:
        from peft import get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.hf_dir)
        base = AutoModelForCausalLM.from_pretrained(
            self.hf_dir, dtype=self.dtype, attn_implementation=attention.register()
        ).to(self.device)
        # peft keeps adapter weights in fp32 over a bf16 base (autocast_adapter_dtype)
        model = get_peft_model(base, lora_config(self.options))
        if self.dtype != torch.float32:
            # Under autocast the LoRA matmuls run in bf16 anyway; peft's cast of every activation to
            # the fp32 adapter dtype (and back) only adds copies (~10% of a CPU step).
            for module in model.modules():
                if hasattr(module, "cast_input_dtype_enabled"):
                    module.cast_input_dtype_enabled = False
        return model, tokenizer

    def _lr_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        from transformers import get_scheduler

        name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[
            self.options.lr_schedule
        ]
        return get_scheduler(
            name,
            self.optimizer,
            num_warmup_steps=self.options.warmup_steps,
            num_training_steps=self.total_steps,
        )

    def _autocast(self) -> Any:
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    # ---------------------------------------------------------------- train
    def train(self) -> dict[str, float]:
        opts = self.options
        self.sink.started(
            self.start_step,
            self.total_steps,
            {
                "backend": self.backend,
                "dtype": str(self.dtype).removeprefix("torch."),
                "examples": self.stats.examples,
                "rows": self.stats.rows,
                "decisions": self.stats.decisions,
                "steps_per_epoch": self.schedule.steps_per_epoch,
            },
        )
        self.model.train()
        began = time.perf_counter()
        tokens_here = 0
        for step, micro_batches in self.schedule.steps(self.start_step, self.total_steps):
            batches = [
                collate([self.rows[i] for i in mb], self.pad_id, self.row_multiple, opts.decision_weight)
                for mb in micro_batches
            ]
            n_labels = sum(b.label_count for b in batches)
            lr = self.scheduler.get_last_lr()[0]
            loss_sum = 0.0
            for batch in batches:
                with self._autocast():
                    loss = summed_token_loss(
                        self.causal_lm, self._to_device(batch), self.label_multiple
                    )
                (
                    loss / n_labels
                ).backward()  # mean over every label of the step, whatever the split
                loss_sum += loss.item()
            if opts.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.params, opts.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)

            self.step = step + 1
            step_tokens = sum(b.tokens for b in batches)
            tokens_here += step_tokens
            self.tokens_seen += step_tokens
            self.loss_history.append(loss_sum / n_labels)
            elapsed = time.perf_counter() - began
            done_here = self.step - self.start_step
            self.sink.progress(
                Progress(
                    step=self.step,
                    total_steps=self.total_steps,
                    loss=loss_sum / n_labels,
                    lr=lr,
                    tokens_per_s=tokens_here / elapsed,
                    eta_s=(self.total_steps - self.step) * elapsed / done_here,
                )
            )
            if self.step % opts.checkpoint_every == 0 and self.step < self.total_steps:
                self.sink.checkpoint(self.step, self.save_checkpoint())
        elapsed = time.perf_counter() - began
        return self._metrics(tokens_here, elapsed)

    def _to_device(self, batch: Any) -> Any:
        if self.device.type == "cpu":
            return batch
        return type(batch)(
            batch.input_ids.to(self.device),
            batch.position_ids.to(self.device),
            batch.labels.to(self.device),
            batch.tokens,
            None if batch.weights is None else batch.weights.to(self.device),
        )

    def _metrics(self, tokens_here: int, elapsed: float) -> dict[str, float]:
        tail = self.loss_history[-10:]
        metrics = {
            "steps": float(self.step),
            "train_loss": sum(tail) / len(tail) if tail else float("nan"),
            "final_step_loss": self.loss_history[-1] if self.loss_history else float("nan"),
            "train_tokens": float(self.tokens_seen),
            "train_tokens_per_s": tokens_here / elapsed if elapsed > 0 else 0.0,
            "train_runtime_s": elapsed,
            "examples": float(self.stats.examples),
            "examples_truncated": float(self.stats.truncated),
            "examples_dropped": float(self.stats.dropped),
        }
        if self.val_rows:
            metrics["eval_loss"] = self.evaluate()
        return metrics

    @torch.no_grad()
    def evaluate(self, rows: Sequence[PackedRow] | None = None) -> float:
        """Mean token loss over `rows` (default: the validation set), dropout off."""
        rows = self.val_rows if rows is None else rows
        was_training = self.model.training
        self.model.eval()
        total = 0.0
        labels = 0
        for i in range(0, len(rows), self.options.batch_size):
            batch = collate(
                list(rows[i : i + self.options.batch_size]), self.pad_id, self.row_multiple
            )
            with self._autocast():
                total += summed_token_loss(
                    self.causal_lm, self._to_device(batch), self.label_multiple
                ).item()
            labels += batch.label_count
        self.model.train(was_training)
        return total / labels if labels else float("nan")

    # ---------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        epoch, micro_batch = self.schedule.position(self.step)
        state = checkpoint.TrainingState(
            step=self.step,
            total_steps=self.total_steps,
            fingerprint=self.fingerprint,
            options=self._resume_relevant_options(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng={
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            },
            tokens_seen=self.tokens_seen,
            loss_history=list(self.loss_history),
            data_position={"epoch": epoch, "micro_batch": micro_batch},
        )
        return checkpoint.write(
            self.job.checkpoint_dir, state, self.model.save_pretrained, self.job.keep_checkpoints
        )

    def _resume_relevant_options(self) -> dict[str, Any]:
        return self.options.model_dump(exclude={"checkpoint_every"})

    def _load_checkpoint(self, path: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = checkpoint.read(path)
        if state.fingerprint != self.fingerprint or state.total_steps != self.total_steps:
            raise checkpoint.ResumeMismatchError(f"{path} was written for other training data")
        if state.options != self._resume_relevant_options():
            raise checkpoint.ResumeMismatchError(
                f"{path} was written with other options: {state.options}"
            )
        weights = load_file(path / "adapter_model.safetensors", device=str(self.device))
        result = set_peft_model_state_dict(self.model, weights)
        if getattr(result, "unexpected_keys", None):
            raise checkpoint.ResumeMismatchError(
                f"{path}: unexpected adapter keys {result.unexpected_keys[:3]}"
            )
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        torch.set_rng_state(state.rng["torch"])
        random.setstate(state.rng["python"])
        if state.rng.get("cuda") is not None:
            torch.cuda.set_rng_state_all(state.rng["cuda"])
        self.step = self.start_step = state.step
        self.tokens_seen = state.tokens_seen
        self.loss_history = list(state.loss_history)

    # ---------------------------------------------------------------- output
    def save_adapter(self, out_dir: Path | None = None) -> Path:
        """The final adapter, loadable with `PeftModel.from_pretrained(base, out_dir)`."""
        out = Path(out_dir or self.job.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        return out

    def cleanup(self) -> None:
        for name in ("model", "causal_lm", "optimizer", "scheduler"):
            self.__dict__.pop(name, None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def train_job(
    job: TrainingJobSpec, sink: ProgressSink | None = None
) -> tuple[Path, dict[str, float]]:
    """Run a whole job: the linear recipe from setup to cleanup."""
    recipe = LoraRecipe(job, sink)
    try:
        recipe.setup()
        metrics = recipe.train()
        adapter_dir = recipe.save_adapter()
        return adapter_dir, metrics
    finally:
        recipe.cleanup()
