"""GGUF reading and the HF → GGUF tensor conventions, without loading a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from modelkit.export import GGUFConversionError
from modelkit.export.gguf_io import _check_against_base, gguf_tensor_items, read_gguf


@pytest.fixture(scope="module")
def base(bundled_gguf):
    return read_gguf(bundled_gguf)


def test_reads_the_bundled_gguf_directory_and_tokenizer(base):
    assert base.value("general.architecture") == "gemma3"
    assert base.value("gemma3.block_count") == 18
    assert len(base.value("tokenizer.ggml.tokens")) == 262144
    assert base.value("tokenizer.ggml.tokens")[106] == b"<end_of_turn>"
    assert len(base.tensors) == 236
    assert base.tensors["token_embd.weight"].shape == (262144, 640)  # numpy order, like HF


def test_norms_get_plus_one_matrices_become_f16_and_tied_lm_head_is_skipped():
    embed = torch.randn(8, 4)
    state = {
        "model.embed_tokens.weight": embed,
        "model.layers.0.input_layernorm.weight": torch.zeros(4),
        "model.layers.0.self_attn.k_norm.weight": torch.full((2,), 0.5),
        "model.layers.0.mlp.up_proj.weight": torch.ones(6, 4),
        "model.norm.weight": torch.zeros(4),
        "lm_head.weight": embed,
    }

    out = dict(gguf_tensor_items(state, n_blocks=1))

    assert sorted(out) == [
        "blk.0.attn_k_norm.weight",
        "blk.0.attn_norm.weight",
        "blk.0.ffn_up.weight",
        "output_norm.weight",
        "token_embd.weight",
    ]
    assert out["blk.0.attn_norm.weight"].dtype == np.float32
    assert out["blk.0.attn_norm.weight"].tolist() == [1.0] * 4
    assert out["blk.0.attn_k_norm.weight"].tolist() == [1.5, 1.5]
    assert out["output_norm.weight"].tolist() == [1.0] * 4
    assert out["blk.0.ffn_up.weight"].dtype == np.float16
    assert out["token_embd.weight"].shape == (8, 4)


def test_an_untied_lm_head_or_an_unknown_tensor_is_refused():
    embed = torch.randn(8, 4)
    with pytest.raises(GGUFConversionError, match="lm_head"):
        dict(
            gguf_tensor_items({"model.embed_tokens.weight": embed, "lm_head.weight": embed + 1}, 1)
        )
    with pytest.raises(GGUFConversionError, match="vision_tower"):
        dict(gguf_tensor_items({"model.vision_tower.x.weight": torch.ones(2, 2)}, 1))


def test_a_value_that_overflows_f16_is_refused():
    with pytest.raises(GGUFConversionError, match="float16"):
        dict(gguf_tensor_items({"model.layers.0.mlp.up_proj.weight": torch.full((2, 2), 1e6)}, 1))


def test_missing_extra_or_reshaped_tensors_fail_before_writing(base):
    tensors = {name: np.empty(info.shape, dtype=np.float16) for name, info in base.tensors.items()}
    _check_against_base(tensors, base)  # the exact layout passes

    missing = {n: t for n, t in tensors.items() if n != "blk.3.ffn_up.weight"}
    with pytest.raises(GGUFConversionError, match=r"missing \['blk.3.ffn_up.weight'\]"):
        _check_against_base(missing, base)
    with pytest.raises(GGUFConversionError, match="unexpected"):
        _check_against_base({**tensors, "output.weight": np.empty((1, 1))}, base)
    transposed = {**tensors, "blk.0.attn_q.weight": np.empty((640, 1024), dtype=np.float16)}
    with pytest.raises(GGUFConversionError, match="blk.0.attn_q.weight"):
        _check_against_base(transposed, base)
