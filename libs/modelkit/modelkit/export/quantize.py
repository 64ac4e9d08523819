"""Quantizing an F16 GGUF with llama.cpp's own quantizer (`llama_model_quantize`)."""

from __future__ import annotations

import ctypes
from pathlib import Path

from ..llama import usable_cores

# Ladder names → llama_ftype constant names in llama_cpp.
QUANT_FTYPES = {
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "Q5_K_S": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
}


class QuantizeError(RuntimeError):
    """llama.cpp refused or failed to quantize."""


def check_quant_names(quants: list[str] | tuple[str, ...]) -> None:
    unknown = [q for q in quants if q not in QUANT_FTYPES]
    if unknown:
        raise ValueError(f"unknown quantization types {unknown}; supported: {sorted(QUANT_FTYPES)}")
    if len(set(quants)) != len(quants):
        raise ValueError(f"quantization types listed twice: {list(quants)}")


def ftype_of(quant: str) -> int:
    import llama_cpp

    check_quant_names((quant,))
    return int(getattr(llama_cpp, QUANT_FTYPES[quant]))


def quantize(src: Path, dst: Path, quant: str, *, n_threads: int | None = None) -> None:
    """Write `dst` as the `quant` quantization of the F16/F32 GGUF `src`, using every usable core."""
    import llama_cpp

    ftype = ftype_of(quant)
    llama_cpp.llama_backend_init()  # idempotent; the quantizer reads the file through ggml
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = n_threads or usable_cores()
    rc = llama_cpp.llama_model_quantize(
        str(src).encode("utf-8"), str(dst).encode("utf-8"), ctypes.byref(params)
    )
    if rc != 0 or not dst.is_file():
        raise QuantizeError(f"llama_model_quantize({src.name} → {quant}) returned {rc}")
