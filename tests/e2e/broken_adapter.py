"""A deliberately broken LoRA adapter for the gate to stop: peft's own format and shapes for
the real base model, random weights instead of trained ones. Scale 0.05 (a delta as large as the
weights) wrecked the model so far that the export's parity check refused it (export.failed, no
verdict); 0.02 perturbs every projection without that, and the gate has to judge it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.harness import IsolatedEnv

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_broken_adapter(out_dir: Path, *, scale: float = 0.02, seed: int = 7) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from modelkit.base_model import bundled_gguf_path
    from modelkit.hf_base import resolve_base_model

    # The architecture only: the adapter's shapes come from the config; no base weights needed.
    config = AutoConfig.from_pretrained(resolve_base_model(bundled_gguf_path()))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, lora_dropout=0.0))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.normal_(0.0, scale)
    peft_model.save_pretrained(out_dir)
    return out_dir


def upload_broken_adapter(infra: IsolatedEnv, job_id: str) -> str:
    """Build it and upload it where the trainer puts adapters; returns its s3:// URI."""
    from minio import Minio

    client = Minio(infra.s3.endpoint, access_key=infra.s3.access_key, secret_key=infra.s3.secret_key, secure=False)
    prefix = f"training/{job_id}/adapter/"
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_broken_adapter(Path(tmp))
        for path in folder.rglob("*"):
            if path.is_file():
                client.fput_object(infra.bucket, prefix + path.relative_to(folder).as_posix(), str(path))
    return f"s3://{infra.bucket}/{prefix}"
