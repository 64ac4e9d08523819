"""The CUDA path: Unsloth's FastLanguageModel, optionally 4-bit (QLoRA), producing a peft adapter.

UNTESTED: no GPU was available where this was written, and Unsloth refuses to import without
one, so CI never runs this module. It is imported only from `LoraRecipe.setup` when CUDA is
available and `unsloth` is installed (`pip install agentloop[gpu]`), before anything on that
path imports transformers (Unsloth patches transformers at import time).

What is known to differ from the CPU path:
- `quantization="4bit"` loads the base in 4-bit NF4 (QLoRA); "none" loads it in `dtype`.
- Unsloth replaces the attention forward with its own kernels; whether they honour the
  per-example position resets of packed rows is unverified, so the recipe gives every example its
  own row on this path (no packing; padding to the longest row in the batch instead).
- Gradient checkpointing is Unsloth's ("unsloth" mode), which is what makes long contexts fit.
The saved adapter is a regular peft LoRA adapter (`PeftModel.from_pretrained` loads it onto the
un-quantised base, which is what the exporter merges into).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.learning import LoraOptions


def load_unsloth(hf_dir: Path, options: LoraOptions, dtype: Any) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel  # needs a CUDA GPU to import

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(hf_dir),
        max_seq_length=options.max_seq_len,
        dtype=dtype,
        load_in_4bit=options.quantization == "4bit",
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(options.target_modules),
        bias="none",
        use_gradient_checkpointing="unsloth",
        random_state=options.seed,
    )
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor for multimodal bases
    return model, tokenizer
