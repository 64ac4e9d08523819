"""Which compute dtype `precision: auto` picks on the CPU: bf16 only where the CPU does bf16 in
hardware. oneDNN reports bf16 support on any AVX512 CPU, where it is emulated and several times
slower than fp32 (docs/benchmarks.md, training throughput)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.training.recipe import compute_dtype, native_cpu_bf16


def _cpu_flags() -> set[str]:
    path = Path("/proc/cpuinfo")
    if not path.exists():
        pytest.fail("these tests read the CPU's flags from /proc/cpuinfo (Linux)")
    return set(path.read_text().split())


def test_native_bf16_follows_the_cpu_flags() -> None:
    flags = _cpu_flags()
    assert native_cpu_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_auto_precision_on_the_cpu_is_bf16_only_with_native_bf16() -> None:
    cpu = torch.device("cpu")
    expected = torch.bfloat16 if {"avx512_bf16", "amx_bf16"} & _cpu_flags() else torch.float32
    assert compute_dtype("auto", cpu) == expected
    assert compute_dtype("fp32", cpu) == torch.float32
    assert compute_dtype("bf16", cpu) == torch.bfloat16
