"""Bad export input fails early with a reason (no model needed)."""

from __future__ import annotations

import pytest
from modelkit.export import QUANT_FTYPES, default_parity_prompts, export_adapter, file_stem
from modelkit.export.quantize import check_quant_names


def test_file_stem_makes_versions_safe_file_names():
    assert file_stem("gemma3-270m-q4_k_m@base") == "gemma3-270m-q4_k_m-base"
    assert file_stem("gemma3-270m-1a2b3c4d") == "gemma3-270m-1a2b3c4d"
    with pytest.raises(ValueError):
        file_stem("@@/")


def test_unknown_or_repeated_quant_types_are_refused_by_name():
    with pytest.raises(ValueError, match="Q3_XX"):
        check_quant_names(("Q4_K_M", "Q3_XX"))
    with pytest.raises(ValueError, match="twice"):
        check_quant_names(("Q8_0", "Q8_0"))
    check_quant_names(tuple(QUANT_FTYPES))


def test_export_refuses_bad_arguments_before_touching_the_output(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="Q9"):
        export_adapter(
            tmp_path, tmp_path, out, version="v", base_gguf=tmp_path / "x.gguf", quants=("Q9",)
        )
    with pytest.raises(ValueError, match="parity_tokens"):
        export_adapter(
            tmp_path, tmp_path, out, version="v", base_gguf=tmp_path / "x.gguf", parity_tokens=0
        )
    assert not out.exists()


def test_export_refuses_a_directory_without_an_adapter_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    from modelkit.base_model import bundled_gguf_path

    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        export_adapter(tmp_path, tmp_path, out, version="v", base_gguf=bundled_gguf_path())
    assert list(out.iterdir()) == []


def test_there_are_at_least_ten_distinct_parity_prompts_in_the_chat_format():
    prompts = default_parity_prompts()

    assert len(set(prompts)) >= 10
    assert all(
        p.startswith("<start_of_turn>user\n") and p.endswith("<start_of_turn>model\n")
        for p in prompts
    )
