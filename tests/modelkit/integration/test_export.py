"""Acceptance of the export core on the real model: F16 GGUF greedy tokens equal the merged HF
model's on ≥ 10 prompts; tokenization identical to the HF tokenizer; quantized files load; the
Modelfile is written next to the GGUF it names; a broken norm convention is caught."""

from __future__ import annotations

import hashlib

import pytest
from modelkit.export import ParityError, default_parity_prompts, export_adapter, gguf_io
from modelkit.export.parity import hf_prompt_ids, hf_teacher_forced_logits
from modelkit.llama import complete, load_llama, stop_token_ids, tokenize_prompt

pytestmark = pytest.mark.slow

VERSION = "gemma3-270m-test@lora"
QUANTS = ("Q4_K_M", "Q5_K_M", "Q8_0")


@pytest.fixture(scope="module")
def exported(hf_base_dir, lora_adapter, bundled_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    calls: list[tuple[str, float]] = []
    result = export_adapter(
        hf_base_dir,
        lora_adapter,
        out,
        version=VERSION,
        base_gguf=bundled_gguf,
        quants=QUANTS,
        progress=lambda stage, fraction: calls.append((stage, fraction)),
    )
    return result, out, calls


@pytest.fixture(scope="module")
def tokenizer(hf_base_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_base_dir)


def test_f16_greedy_tokens_equal_the_merged_models_on_at_least_ten_prompts(exported):
    result, _, _ = exported
    parity = result.parity

    assert parity["prompts"] >= 10
    assert parity["mismatches"] == []
    assert len(parity["per_prompt"]) == parity["prompts"]
    assert all(p["tokens"] for p in parity["per_prompt"])
    assert parity["tokens_compared"] == sum(len(p["tokens"]) for p in parity["per_prompt"])
    assert parity["tokens_compared"] >= 5 * parity["prompts"]  # not just one stop token each


def test_the_adapter_changes_the_greedy_output_of_the_base(exported, hf_base_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    result, _, _ = exported
    base = AutoModelForCausalLM.from_pretrained(hf_base_dir, dtype=torch.float32).eval()

    def base_says_the_same(index: int, prompt: str) -> bool:
        merged_tokens = result.parity["per_prompt"][index]["tokens"]
        rows = hf_teacher_forced_logits(base, hf_prompt_ids(tokenizer, prompt), merged_tokens)
        return rows.argmax(axis=-1).tolist() == merged_tokens  # the base's greedy choices

    assert not all(base_says_the_same(i, p) for i, p in enumerate(default_parity_prompts())), (
        "the merged adapter behaves exactly like the base: parity would prove nothing"
    )


def test_llama_cpp_tokenizes_exactly_like_the_hf_tokenizer(exported, tokenizer):
    result, _, _ = exported
    texts = [
        *default_parity_prompts(),
        "<start_of_turn>user\n  spaces,\ttabs\n\nand   newlines <end_of_turn>\n",
        '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>',
        "Ünïcödé — 東京 🚀 ∑x² <bos> literal",
    ]
    llm = load_llama(result.f16_path, n_ctx=512)
    try:
        for text in texts:
            assert tokenize_prompt(llm, text) == hf_prompt_ids(tokenizer, text), text
    finally:
        llm.close()
    assert result.parity["tokenizer_identical"] is True


def test_f16_file_keeps_the_base_metadata_tokenizer_and_tensor_layout(exported, bundled_gguf):
    result, _, _ = exported
    base = gguf_io.read_gguf(bundled_gguf)
    f16 = gguf_io.read_gguf(result.f16_path)

    assert f16.value("general.name") == VERSION
    assert f16.value("general.file_type") == 1
    assert f16.value("general.architecture") == "gemma3"
    for key, kv in base.kv.items():
        if key.startswith(("tokenizer.", "gemma3.")):
            assert f16.kv[key] == kv, key
    assert {n: t.shape for n, t in f16.tensors.items()} == {
        n: t.shape for n, t in base.tensors.items()
    }
    for tensor in f16.tensors.values():
        assert tensor.qtype.name == ("F32" if len(tensor.shape) == 1 else "F16"), tensor.name


def test_the_quantized_files_carry_the_chat_template_llama_cpp_serves_them_with(exported):
    """llama-cpp-python (and so `python -m llama_cpp.server`) picks the file's template with no flag
    and prompts exactly as the runner does."""
    from modelkit.chat_format import render_prompt
    from modelkit.export.chat_template import CHAT_TEMPLATE
    from modelkit.export.parity import PARITY_CONVERSATIONS

    result, _, _ = exported
    for path in (result.f16_path, *result.quant_paths.values()):
        assert gguf_io.read_gguf(path).value("tokenizer.chat_template") == CHAT_TEMPLATE, path.name
    llm = load_llama(result.quant_paths["Q4_K_M"], n_ctx=512)
    try:
        assert llm.chat_format == "chat_template.default"
        handler = llm._chat_handlers["chat_template.default"]
        assert handler is not None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(llm.metadata["tokenizer.chat_template"], eos_token="<eos>", bos_token="<bos>")
        for messages, tools in PARITY_CONVERSATIONS:
            assert formatter(messages=messages, tools=tools or None).prompt == "<bos>" + render_prompt(messages, tools)
        out = llm.create_chat_completion(messages=[{"role": "user", "content": "Say hello."}], max_tokens=8,
                                         temperature=0)
        assert out["choices"][0]["message"]["content"].strip()
    finally:
        llm.close()


def test_norm_weights_are_stored_with_the_plus_one_like_the_base(exported, bundled_gguf):
    result, _, _ = exported
    norms = lambda name: name.endswith("norm.weight")
    ours = gguf_io.read_tensors(result.f16_path, norms)
    base = gguf_io.read_tensors(bundled_gguf, norms)

    assert len(ours) == 18 * 6 + 1
    for name, values in base.items():  # norms are not LoRA targets: they stay the base's
        assert abs(ours[name] - values).max() < 1e-6, name


def test_every_quantized_file_has_its_type_loads_and_completes(exported):
    import llama_cpp

    result, _, _ = exported
    assert set(result.quant_paths) == set(QUANTS)
    for quant, path in result.quant_paths.items():
        expected = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
        assert gguf_io.read_gguf(path).value("general.file_type") == expected
        report = result.parity["quant_loads"][quant]
        assert report["loads"] and report["nonempty_completions"] >= 1
    assert result.quant_paths["Q4_K_M"].stat().st_size < result.quant_paths["Q8_0"].stat().st_size
    llm = load_llama(result.quant_paths["Q4_K_M"], n_ctx=512)
    try:
        assert complete(llm, default_parity_prompts()[0], 16).strip()
        assert stop_token_ids(llm) == {106, 1}
    finally:
        llm.close()


def test_modelfile_names_the_smallest_quant_written_beside_it(exported):
    result, out, _ = exported
    text = result.modelfile_path.read_text()

    assert text.splitlines()[0] == f"FROM ./{result.quant_paths['Q4_K_M'].name}"
    assert (out / result.quant_paths["Q4_K_M"].name).is_file()


def test_sha256_covers_every_file_and_nothing_else_is_left(exported):
    result, out, _ = exported
    files = sorted(p.name for p in out.iterdir())

    assert files == sorted(result.sha256)  # no staging directory or stray file left
    for name, digest in result.sha256.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest


def test_progress_and_stage_times_cover_every_stage(exported):
    result, _, calls = exported
    stages = [stage for stage, _ in calls]

    assert stages == [
        "merge",
        "gguf",
        "parity",
        "quantize",
        "quant_check",
        "modelfile",
        "sha256",
        "done",
    ]
    fractions = [fraction for _, fraction in calls]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert set(stages[:-1]) <= set(result.stage_seconds)
    assert all(f"quantize_{q}" in result.stage_seconds for q in QUANTS)


def test_skipping_the_norm_shift_is_caught_by_parity(
    hf_base_dir, lora_adapter, bundled_gguf, tmp_path, monkeypatch
):
    monkeypatch.setattr(gguf_io, "GGUF_NORM_SHIFT", 0.0)
    out = tmp_path / "out"

    with pytest.raises(ParityError) as caught:
        export_adapter(
            hf_base_dir,
            lora_adapter,
            out,
            version="broken",
            base_gguf=bundled_gguf,
            quants=("Q4_K_M",),
            parity_prompts=default_parity_prompts()[:2],
            parity_tokens=8,
        )

    assert caught.value.details["mismatches"]  # which prompt, where, both token lists
    assert list(out.iterdir()) == []  # nothing half-written
