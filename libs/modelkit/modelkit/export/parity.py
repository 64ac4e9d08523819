"""Parity of an exported GGUF with the model it came from, checked before anything ships.

- tokenization: llama.cpp's tokens of every prompt (BOS added, turn markers parsed) equal the HF
  tokenizer's;
- F16: greedy tokens of the F16 GGUF in llama.cpp equal the merged HF model's (fp32, argmax), token
  for token, on every prompt. llama.cpp decodes; the HF model checks the result in one
  teacher-forced pass (see `hf_teacher_forced_logits`). Logits are compared along the way (largest
  absolute difference, smallest top-2 margin of the HF model), so a failure says whether it is a
  near-tie or a conversion bug;
- quantized files: each loads in llama.cpp and completes a spread of the prompts; agreement with
  F16 is recorded (quantization is expected to change some tokens; the evaluator judges quality).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..chat_format import render_prompt
from ..llama import greedy_steps, load_llama, stop_token_ids, tokenize_prompt

_CALC = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "e.g. 2*(3+4)"}},
            "required": ["expression"],
        },
    },
}
_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

# Fixed conversations (messages, tools): plain chat, system prompts, tool offers, a tool round trip.
PARITY_CONVERSATIONS: tuple[tuple[list[dict[str, Any]], list[dict[str, Any]]], ...] = (
    ([{"role": "user", "content": "What is the capital of France?"}], []),
    ([{"role": "user", "content": "Write one sentence about the sea."}], []),
    (
        [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name three primary colours."},
        ],
        [],
    ),
    ([{"role": "user", "content": "Translate 'good morning' into German."}], []),
    ([{"role": "user", "content": "List the first five prime numbers."}], []),
    ([{"role": "user", "content": "What is 17*23?"}], [_CALC]),
    ([{"role": "user", "content": "What's the weather in Paris in celsius?"}], [_WEATHER]),
    (
        [
            {"role": "system", "content": "Use tools when they help."},
            {"role": "user", "content": "How warm is it in Oslo?"},
        ],
        [_CALC, _WEATHER],
    ),
    (
        [
            {"role": "user", "content": "What is 12 squared?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"name": "calculator", "arguments": {"expression": "12**2"}}],
            },
            {"role": "tool", "name": "calculator", "content": "144"},
        ],
        [_CALC],
    ),
    (
        [
            {"role": "user", "content": "Hi! Who are you?"},
            {"role": "assistant", "content": "I am a helpful assistant."},
            {"role": "user", "content": "Tell me a fun fact about octopuses."},
        ],
        [],
    ),
    (
        [{"role": "user", "content": "Summarise: the cat sat on the mat and then slept all day."}],
        [],
    ),
    ([{"role": "user", "content": "Écris une phrase sur la pluie. 🌧"}], []),
)


def default_parity_prompts() -> list[str]:
    """The fixed parity conversations rendered with the project's chat format."""
    return [render_prompt(messages, tools) for messages, tools in PARITY_CONVERSATIONS]


class ParityError(Exception):
    """The exported GGUF does not behave like the model it was exported from."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def hf_teacher_forced_logits(model: Any, prompt_ids: list[int], continuation: list[int]) -> Any:
    """The HF model's logits (fp32 numpy, one row per continuation token) for predicting each
    token of `continuation` after the prompt and the continuation tokens before it.

    One forward pass instead of a decode loop: greedy decoding of the HF model yields exactly
    `continuation` iff the argmax of every row is the corresponding token (by induction over the
    shared prefix), and at the first row where it is not, that argmax is the HF model's own next
    token. Decoding token by token in fp32 costs ~0.3 s per token here (memory-bound), this ~1 s
    per prompt.
    """
    import torch

    if not continuation:
        raise ValueError("nothing to compare: the continuation is empty")
    with torch.inference_mode():
        ids = torch.tensor([prompt_ids + continuation[:-1]])
        out = model(input_ids=ids, logits_to_keep=len(continuation))
        return out.logits[0].to(torch.float32).numpy()


def hf_prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def check_f16_parity(
    model: Any, tokenizer: Any, llm: Any, prompts: Sequence[str], n_tokens: int
) -> dict[str, Any]:
    """Compare tokenization and greedy tokens; raise `ParityError` (after every prompt) on a miss."""
    import numpy as np

    stops = set(stop_token_ids(llm))
    report: dict[str, Any] = {
        "prompts": len(prompts),
        "parity_tokens": n_tokens,
        "tokens_compared": 0,
        "tokenizer_identical": True,
        "tokenizer_mismatches": [],
        "mismatches": [],
        "max_abs_logit_diff": 0.0,
        "min_top2_margin": None,
        "closest_call": None,
        "per_prompt": [],
    }
    started = time.monotonic()
    decoded = []  # llama.cpp first, for every prompt
    for index, prompt in enumerate(prompts):
        gguf_ids = tokenize_prompt(llm, prompt)
        hf_ids = hf_prompt_ids(tokenizer, prompt)
        if gguf_ids != hf_ids:
            report["tokenizer_identical"] = False
            first = next(
                (i for i, (a, b) in enumerate(zip(gguf_ids, hf_ids, strict=False)) if a != b),
                min(len(gguf_ids), len(hf_ids)),
            )
            report["tokenizer_mismatches"].append(
                {
                    "prompt_index": index,
                    "position": first,
                    "gguf": gguf_ids[first : first + 5],
                    "hf": hf_ids[first : first + 5],
                    "lengths": [len(gguf_ids), len(hf_ids)],
                }
            )
            continue  # different inputs: the token comparison would say nothing more
        decoded.append((index, prompt, hf_ids, list(greedy_steps(llm, gguf_ids, n_tokens, stops))))
    # Then the HF side. Interleaving the two made both crawl: torch's OpenMP workers and ggml's
    # threads spin-wait for work, and on 2 cores each stole the other's time (146 s vs ~20 s).
    report["llama_seconds"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    for index, prompt, hf_ids, gguf_steps in decoded:
        gguf_tokens = [t for t, _ in gguf_steps]
        hf_rows = hf_teacher_forced_logits(model, hf_ids, gguf_tokens)
        hf_tokens = gguf_tokens
        prompt_diff = 0.0
        for position, ((gt, gl), hl) in enumerate(zip(gguf_steps, hf_rows, strict=True)):
            prompt_diff = max(prompt_diff, float(np.max(np.abs(hl - gl))))
            second, first = np.argpartition(hl, -2)[-2:]  # HF's two best candidates
            margin = float(hl[first] - hl[second])
            if report["min_top2_margin"] is None or margin < report["min_top2_margin"]:
                report["min_top2_margin"] = margin
                report["closest_call"] = {  # the step a numeric difference could flip first
                    "prompt_index": index,
                    "position": position,
                    "hf_margin": margin,
                    "gguf_margin": float(gl[first] - gl[second]),
                }
            report["tokens_compared"] += 1
            ht = int(np.argmax(hl))
            if ht != gt:
                hf_tokens = [*gguf_tokens[:position], ht]  # HF's greedy output up to where it left
                report["mismatches"].append(
                    {
                        "prompt_index": index,
                        "prompt_tail": prompt[-80:],
                        "position": position,
                        "hf_token": ht,
                        "gguf_token": gt,
                        "hf_logits": {str(ht): float(hl[ht]), str(gt): float(hl[gt])},
                        "gguf_logits": {str(ht): float(gl[ht]), str(gt): float(gl[gt])},
                        "hf_tokens": hf_tokens,
                        "gguf_tokens": gguf_tokens,
                    }
                )
                break
        report["max_abs_logit_diff"] = max(report["max_abs_logit_diff"], prompt_diff)
        report["per_prompt"].append(
            {
                "prompt_index": index,
                "prompt_tokens": len(hf_ids),
                "tokens": hf_tokens,
                "max_abs_logit_diff": prompt_diff,
            }
        )
    report["hf_seconds"] = round(time.monotonic() - started, 3)
    if not report["tokenizer_identical"]:
        first = report["tokenizer_mismatches"][0]
        raise ParityError(
            f"llama.cpp tokenizes prompt {first['prompt_index']} differently from the HF tokenizer "
            f"(first difference at token {first['position']})",
            report,
        )
    if report["mismatches"]:
        first = report["mismatches"][0]
        raise ParityError(
            f"F16 GGUF greedy tokens differ from the merged model's on {len(report['mismatches'])} of "
            f"{len(prompts)} prompts; first: prompt {first['prompt_index']} at generated token "
            f"{first['position']} (hf {first.get('hf_token')}, gguf {first.get('gguf_token')})",
            report,
        )
    return report


def check_quant(
    path: Path,
    prompts: Sequence[str],
    n_tokens: int,
    reference: Sequence[Sequence[int]],
    *,
    n_ctx: int = 2048,
) -> dict[str, Any]:
    """Load a quantized GGUF, complete every prompt greedily, compare with the F16 tokens."""
    started = time.monotonic()
    llm = load_llama(path, n_ctx=n_ctx)
    try:
        stops = stop_token_ids(llm)
        identical = 0
        nonempty = 0
        sample = ""
        for prompt, ref in zip(prompts, reference, strict=True):
            tokens = [
                t for t, _ in greedy_steps(llm, tokenize_prompt(llm, prompt), n_tokens, stops)
            ]
            identical += tokens == list(ref)
            text = llm.detokenize([t for t in tokens if t not in stops], special=True)
            text = text.decode("utf-8", errors="replace")
            if text.strip():
                nonempty += 1
                sample = sample or text
    finally:
        llm.close()
    result = {
        "loads": True,
        "nonempty_completions": nonempty,
        "identical_to_f16": identical,
        "prompts": len(prompts),
        "sample": sample,
        "seconds": round(time.monotonic() - started, 2),
    }
    if nonempty == 0:
        raise ParityError(f"{path.name} loads but completes none of {len(prompts)} prompts", result)
    return result
