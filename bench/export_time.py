"""Export time of a LoRA adapter on the bundled Gemma 3 270M: merge, F16 GGUF write, quantize
(Q4_K_M alone, then the Q4_K_M/Q5_K_M/Q8_0 ladder), parity, total.

    .venv/bin/python bench/export_time.py [--rounds 1] [--ladder Q4_K_M,Q5_K_M,Q8_0] [--json out.json]

The adapter is a real peft LoRA (rank 8 on every projection) with seeded random non-zero lora_B,
built once before timing. Each round runs `modelkit.export.export_adapter` twice in this process:
once with Q4_K_M only (the target: merge + GGUF + quantize(Q4_K_M) ≤ 30 s), once with the ladder.
Stage times come from `ExportResult.stage_seconds`; total is the wall time of the call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 30.0


def build_adapter(hf_dir: Path, out: Path, *, std: float = 0.02, seed: int = 1234) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets)
    )
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    model.save_pretrained(out)
    return out


def run_once(hf_dir: Path, adapter: Path, base_gguf: Path, quants: tuple[str, ...]) -> dict:
    from modelkit.export import export_adapter

    with tempfile.TemporaryDirectory(prefix="export-bench-") as out:
        started = time.monotonic()
        result = export_adapter(
            hf_dir, adapter, Path(out), version="bench", base_gguf=base_gguf, quants=quants
        )
        total = time.monotonic() - started
        sizes = {name: (Path(out) / name).stat().st_size for name in result.sha256}
    seconds = dict(result.stage_seconds)
    seconds["total"] = round(total, 3)
    seconds["merge+gguf+quantize(Q4_K_M)"] = round(
        seconds["merge"] + seconds["gguf"] + seconds["quantize_Q4_K_M"], 3
    )
    return {
        "quants": list(quants),
        "seconds": seconds,
        "sizes_mib": {k: round(v / 2**20, 1) for k, v in sizes.items()},
        "parity": {
            k: result.parity[k]
            for k in (
                "prompts",
                "tokens_compared",
                "max_abs_logit_diff",
                "min_top2_margin",
                "closest_call",
                "llama_seconds",
                "hf_seconds",
            )
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ladder", default="Q4_K_M,Q5_K_M,Q8_0")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()

    from modelkit.base_model import bundled_gguf_path
    from modelkit.hf_base import resolve_base_model
    from modelkit.llama import usable_cores

    base_gguf = bundled_gguf_path()
    hf_dir = resolve_base_model(base_gguf)
    ladder = tuple(args.ladder.split(","))
    runs = []
    with tempfile.TemporaryDirectory(prefix="export-bench-adapter-") as tmp:
        adapter = build_adapter(hf_dir, Path(tmp))
        for round_no in range(args.rounds):
            for quants in (("Q4_K_M",), ladder):
                run = run_once(hf_dir, adapter, base_gguf, quants)
                run["round"] = round_no
                runs.append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)

    def median(quants: tuple[str, ...], key: str) -> float:
        return statistics.median(r["seconds"][key] for r in runs if tuple(r["quants"]) == quants)

    single, full = ("Q4_K_M",), ladder
    rows = [
        ("merge (load base + peft merge, fp32)", median(single, "merge")),
        ("F16 GGUF write", median(single, "gguf")),
        ("quantize Q4_K_M", median(single, "quantize_Q4_K_M")),
        ("**merge + GGUF + Q4_K_M**", median(single, "merge+gguf+quantize(Q4_K_M)")),
        ("parity (F16 vs HF)", median(single, "parity")),
        ("quant check (Q4_K_M)", median(single, "quant_check")),
        ("total, Q4_K_M only", median(single, "total")),
        (f"quantize ladder {'+'.join(full)}", median(full, "quantize")),
        *[(f"  of which {q}", median(full, f"quantize_{q}")) for q in full],
        (f"quant check ({len(full)} files)", median(full, "quant_check")),
        ("total, ladder", median(full, "total")),
    ]
    print(
        f"\ncores usable: {usable_cores()}, os.cpu_count: {os.cpu_count()}, rounds: {args.rounds}"
    )
    print("| stage | seconds (median) |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value:.1f} |")
    core = median(single, "merge+gguf+quantize(Q4_K_M)")
    print(
        f"\ntarget merge + GGUF + quantize(Q4_K_M) ≤ {TARGET_SECONDS:.0f} s: {'met' if core <= TARGET_SECONDS else 'MISSED'} ({core:.1f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
