"""Facts about the bundled Gemma 3 270M that training and export rely on."""

from __future__ import annotations

import pytest
import torch
from modelkit.base_model import bundled_gguf_path

from trainer.training.base_weights import GGUF_NORM_NAMES, GGUF_NORM_SHIFT, gguf_tensors
from trainer.training.data import tokenize_example

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf_model(real_base_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(real_base_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def gguf_weights():
    return gguf_tensors(
        bundled_gguf_path(),
        lambda name: name.endswith("norm.weight") or name == "blk.0.attn_k.weight",
    )


def hf_norm_name(gguf_name: str) -> str:
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    _, layer, kind, _ = gguf_name.split(".")
    (hf_kind,) = [hf for hf, g in GGUF_NORM_NAMES.items() if g == kind]
    return f"model.layers.{layer}.{hf_kind}.weight"


def test_every_gguf_norm_weight_is_the_loaded_hf_weight_plus_one(hf_model, gguf_weights):
    state = hf_model.state_dict()
    norms = [n for n in gguf_weights if n.endswith("norm.weight")]

    assert len(norms) == 18 * 6 + 1  # six norms per block, plus the final one
    for name in norms:
        gguf_value = torch.from_numpy(gguf_weights[name])
        torch.testing.assert_close(
            state[hf_norm_name(name)] + GGUF_NORM_SHIFT, gguf_value, rtol=0, atol=1e-5
        )
        assert not torch.allclose(state[hf_norm_name(name)], gguf_value)


def test_other_weights_are_the_dequantised_gguf_tensors_unshifted(hf_model, gguf_weights):
    k_proj = hf_model.state_dict()["model.layers.0.self_attn.k_proj.weight"]

    torch.testing.assert_close(
        k_proj, torch.from_numpy(gguf_weights["blk.0.attn_k.weight"]), rtol=0, atol=0
    )


def test_segment_by_segment_tokens_equal_the_tokens_of_the_whole_text(real_tokenizer, bfcl_records):
    from modelkit.chat_format import render_segments

    for record in bfcl_records[:50]:
        ex = tokenize_example(record["messages"], record["tools"], real_tokenizer, max_seq_len=4096)
        text = "".join(s.text for s in render_segments(record["messages"], record["tools"]))
        assert ex.input_ids == real_tokenizer.encode(text)  # the tokenizer adds BOS itself here
