"""Reading a GGUF quickly, and writing the merged model as an F16 GGUF that carries the base's
metadata and tokenizer.

`gguf.GGUFReader` builds a numpy view per token of Gemma's 262k-entry vocabulary (~30 s on a 2-core
CPU); `read_gguf` walks the file with `struct` instead (~1 s) and keeps token strings as raw bytes so
they are written back byte for byte.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..hf_base import GGUF_NORM_SHIFT
from .chat_template import CHAT_TEMPLATE

F16_FILE_TYPE = 1  # llama_ftype LLAMA_FTYPE_MOSTLY_F16 ("except 1d tensors")

# Keys the F16 file must not inherit from the quantized base: the writer sets them itself, or they
# describe the base's quantization (imatrix provenance, file type).
_REPLACED_KEYS = {"general.architecture", "general.name", "general.file_type", "general.alignment",
                  "tokenizer.chat_template"}
_DROPPED_PREFIXES = ("quantize.",)


class GGUFConversionError(ValueError):
    """The merged model does not map onto the base GGUF's tensors (names, shapes or values)."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    vtype: Any  # gguf.GGUFValueType
    value: Any  # str for strings, list of bytes for string arrays, list for other arrays
    sub_type: Any = None  # element type of an array


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order (slowest dimension first), as torch shows HF weights
    qtype: Any  # gguf.GGMLQuantizationType
    offset: int  # from the start of the data section


@dataclass(frozen=True)
class GGUFContents:
    path: Path
    kv: dict[str, KeyValue]
    tensors: dict[str, TensorInfo]
    data_start: int

    def value(self, key: str, default: Any = None) -> Any:
        kv = self.kv.get(key)
        return default if kv is None else kv.value


def read_gguf(path: str | os.PathLike[str]) -> GGUFContents:
    """Metadata (every key with its type) and the tensor directory of a GGUF file."""
    from gguf import GGMLQuantizationType, GGUFValueType

    scalar = _scalar_formats()
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if bytes(buf[:4]) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        off = 24

        def read_bytes(off: int) -> tuple[bytes, int]:
            (n,) = struct.unpack_from("<Q", buf, off)
            off += 8
            return bytes(buf[off : off + n]), off + n

        kv: dict[str, KeyValue] = {}
        for _ in range(n_kv):
            raw_key, off = read_bytes(off)
            key = raw_key.decode("utf-8")
            (vtype_id,) = struct.unpack_from("<I", buf, off)
            off += 4
            vtype = GGUFValueType(vtype_id)
            if vtype == GGUFValueType.STRING:
                raw, off = read_bytes(off)
                kv[key] = KeyValue(key, vtype, raw.decode("utf-8"))
            elif vtype == GGUFValueType.ARRAY:
                item_id, count = struct.unpack_from("<IQ", buf, off)
                off += 12
                item = GGUFValueType(item_id)
                if item == GGUFValueType.STRING:
                    items = []
                    for _ in range(count):
                        raw, off = read_bytes(off)
                        items.append(raw)
                elif item in scalar:
                    fmt = scalar[item]
                    items = list(struct.unpack_from(f"<{count}{fmt}", buf, off))
                    off += count * struct.calcsize(fmt)
                else:
                    raise ValueError(f"{path}: nested arrays ({key}) are not supported")
                kv[key] = KeyValue(key, vtype, items, item)
            else:
                fmt = scalar[vtype]
                (value,) = struct.unpack_from("<" + fmt, buf, off)
                off += struct.calcsize(fmt)
                kv[key] = KeyValue(key, vtype, value)

        tensors: dict[str, TensorInfo] = {}
        for _ in range(n_tensors):
            raw_name, off = read_bytes(off)
            (n_dims,) = struct.unpack_from("<I", buf, off)
            off += 4
            dims = struct.unpack_from(f"<{n_dims}Q", buf, off)
            off += 8 * n_dims
            qtype_id, data_off = struct.unpack_from("<IQ", buf, off)
            off += 12
            name = raw_name.decode("utf-8")
            shape = tuple(int(d) for d in reversed(dims))  # GGUF lists dims fastest-first
            tensors[name] = TensorInfo(name, shape, GGMLQuantizationType(qtype_id), data_off)
        alignment = kv["general.alignment"].value if "general.alignment" in kv else 32
        data_start = off + (-off % alignment)
    return GGUFContents(Path(path), kv, tensors, data_start)


def read_tensors(path: str | os.PathLike[str], wanted: Callable[[str], bool]) -> dict[str, Any]:
    """Dequantised float32 numpy arrays of the tensors whose GGUF names pass `wanted`."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES
    from gguf.quants import dequantize

    contents = read_gguf(path)
    out: dict[str, Any] = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        for info in contents.tensors.values():
            if not wanted(info.name):
                continue
            block, type_size = GGML_QUANT_SIZES[info.qtype]
            n_elems = int(np.prod(info.shape))
            start = contents.data_start + info.offset
            raw = np.frombuffer(buf[start : start + n_elems // block * type_size], dtype=np.uint8)
            rows = raw.reshape(*info.shape[:-1], -1)
            out[info.name] = np.asarray(dequantize(rows, info.qtype), dtype=np.float32).reshape(
                info.shape
            )
    return out


def gguf_tensor_items(
    state_dict: Mapping[str, Any], n_blocks: int, *, norm_shift: float | None = None
) -> Iterator[tuple[str, Any]]:
    """(GGUF name, numpy array) for every HF Gemma 3 weight, in GGUF conventions.

    The tied `lm_head.weight` is skipped (llama.cpp reuses `token_embd`); every `*norm.weight`
    gets `norm_shift` (default `GGUF_NORM_SHIFT`, see `modelkit.hf_base`) added back; 1-D tensors
    stay float32, the rest are float16.
    """
    import gguf
    import numpy as np
    import torch

    shift = GGUF_NORM_SHIFT if norm_shift is None else norm_shift
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, n_blocks)
    embed = state_dict.get("model.embed_tokens.weight")
    for hf_name, tensor in state_dict.items():
        if hf_name == "lm_head.weight":
            if embed is None or not torch.equal(tensor, embed):
                raise GGUFConversionError(
                    "lm_head.weight differs from the token embedding; the Gemma 3 GGUF has no "
                    "separate output tensor (was lm_head a LoRA target?)"
                )
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise GGUFConversionError(f"no GGUF name for the HF tensor {hf_name}")
        data = tensor.detach().to(torch.float32)
        if name.endswith("norm.weight"):
            data = data + shift
        array = data.numpy()
        if array.ndim > 1:
            with np.errstate(over="ignore"):  # checked right below, with the tensor's name
                array = array.astype(np.float16)
            if not np.isfinite(array).all():
                raise GGUFConversionError(f"{hf_name} overflows float16")
        yield name, np.ascontiguousarray(array)


def write_f16_gguf(
    state_dict: Mapping[str, Any],
    base: GGUFContents,
    out_path: Path,
    *,
    name: str,
    norm_shift: float | None = None,
) -> None:
    """Write the HF model's weights as an F16 GGUF with the base GGUF's metadata and tokenizer, and
    the project's chat template (`chat_template.CHAT_TEMPLATE`; quantizing copies it).

    Every tensor must exist in the base under the same name with the same shape, and every base
    tensor must be written; anything else raises `GGUFConversionError` before the file is opened.
    """
    import gguf

    arch = base.value("general.architecture")
    if arch != "gemma3":
        raise GGUFConversionError(f"base GGUF architecture is {arch!r}; only gemma3 is supported")
    n_blocks = int(base.value("gemma3.block_count"))
    tensors = dict(gguf_tensor_items(state_dict, n_blocks, norm_shift=norm_shift))
    _check_against_base(tensors, base)

    writer = gguf.GGUFWriter(out_path, arch)
    for key, kv in base.kv.items():
        if key in _REPLACED_KEYS or key.startswith(_DROPPED_PREFIXES):
            continue
        writer.add_key_value(key, kv.value, kv.vtype, kv.sub_type)
    writer.add_name(name)
    writer.add_file_type(F16_FILE_TYPE)
    writer.add_chat_template(CHAT_TEMPLATE)  # the runner's turn format, for every other tool that loads the file
    for tensor_name in base.tensors:  # the base's order: llama.cpp does not care, diffs read better
        writer.add_tensor(tensor_name, tensors[tensor_name])
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _check_against_base(tensors: Mapping[str, Any], base: GGUFContents) -> None:
    missing = sorted(set(base.tensors) - set(tensors))
    extra = sorted(set(tensors) - set(base.tensors))
    wrong = [
        f"{n}: merged {tuple(tensors[n].shape)} vs base {base.tensors[n].shape}"
        for n in sorted(set(tensors) & set(base.tensors))
        if tuple(tensors[n].shape) != base.tensors[n].shape
    ]
    if missing or extra or wrong:
        raise GGUFConversionError(
            "merged model does not match the base GGUF: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}, "
            f"shape mismatches {wrong[:5]}{'...' if len(wrong) > 5 else ''}"
        )


def _scalar_formats() -> dict[Any, str]:
    from gguf import GGUFValueType

    return {
        GGUFValueType.UINT8: "B",
        GGUFValueType.INT8: "b",
        GGUFValueType.UINT16: "H",
        GGUFValueType.INT16: "h",
        GGUFValueType.UINT32: "I",
        GGUFValueType.INT32: "i",
        GGUFValueType.FLOAT32: "f",
        GGUFValueType.BOOL: "?",
        GGUFValueType.UINT64: "Q",
        GGUFValueType.INT64: "q",
        GGUFValueType.FLOAT64: "d",
    }
