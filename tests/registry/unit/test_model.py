"""ModelVersion.gguf picks the served quant."""

from __future__ import annotations

from datetime import UTC, datetime

from modelregistry import ModelFile, ModelVersion


def _version(quant: str | None, files: list[ModelFile]) -> ModelVersion:
    return ModelVersion(version="v", base_model="b", status="candidate", quantization=quant, files=files, lineage={},
                        metrics={}, job_id=None, dataset_id=None, adapter_uri=None, evaluation_id=None,
                        created_at=datetime.now(UTC))


Q4 = ModelFile("Q4_K_M", "s3://b/v-q4.gguf", "a" * 64, 1, "gguf")
Q8 = ModelFile("Q8_0", "s3://b/v-q8.gguf", "b" * 64, 2, "gguf")
MODELFILE = ModelFile(None, "s3://b/Modelfile", "c" * 64, 3, "modelfile")


def test_gguf_defaults_to_the_served_quant() -> None:
    assert _version("Q8_0", [Q4, Q8, MODELFILE]).gguf() == Q8
    assert _version("Q8_0", [Q4, Q8]).gguf("q4_k_m") == Q4
    assert _version("Q5_K_M", [Q4, Q8]).gguf() is None


def test_gguf_without_a_served_quant_answers_only_an_unambiguous_file() -> None:
    assert _version(None, [Q4, MODELFILE]).gguf() == Q4
    assert _version(None, [Q4, Q8]).gguf() is None


def test_promotion_refusal_names_each_rule() -> None:
    from dataclasses import replace

    from modelregistry import BASE_VERSION, promotion_refusal

    fresh = _version("Q4_K_M", [Q4])
    assert "never evaluated" in promotion_refusal(fresh)
    assert promotion_refusal(fresh, evaluation_id="ev-1") is None  # the gate's verdict comes with the command
    assert promotion_refusal(replace(fresh, evaluation_id="ev-1")) is None
    assert promotion_refusal(replace(fresh, status="previous")) is None  # served before: accepted once
    assert promotion_refusal(replace(fresh, version=BASE_VERSION)) is None
    assert "rejected by the gate" in promotion_refusal(replace(fresh, status="rejected", evaluation_id="ev-1"))
    assert "no exported GGUF for quantization 'Q8_0' (has: Q4_K_M)" in promotion_refusal(fresh, "Q8_0", "ev-1")
