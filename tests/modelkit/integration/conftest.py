"""A real LoRA adapter on the bundled base, with non-zero lora_B so merging changes the model."""

from __future__ import annotations

from pathlib import Path

import pytest

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_B_STD = 0.02  # small: the merged model still speaks, but greedy outputs move


@pytest.fixture(scope="session")
def lora_adapter(hf_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1234)  # lora_A's default init
    base = AutoModelForCausalLM.from_pretrained(hf_base_dir, dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS)
    )
    generator = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero, which would make the adapter a no-op
                param.copy_(torch.randn(param.shape, generator=generator) * LORA_B_STD)
    out = tmp_path_factory.mktemp("lora-adapter")
    model.save_pretrained(out)
    return out
