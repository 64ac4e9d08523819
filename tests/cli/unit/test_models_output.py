"""How `agentloop models` lays out the registry's versions."""

from __future__ import annotations

import io

from rich.console import Console

from agentloop_cli.commands.models import models_table


def render(body: dict) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=200).print(models_table(body))
    return out.getvalue().splitlines()


def test_each_version_is_a_row_with_aliases_status_quant_creation_and_score():
    lines = render({"versions": [
        {"version": "gemma3-270m-abc", "aliases": ["production"], "status": "production", "quantization": "Q5_K_M",
         "created_at": "2026-11-24T01:02:03.456+00:00", "primary_score": 0.91234},
        {"version": "gemma3-270m-q4_k_m@base", "aliases": ["previous"], "status": "previous",
         "quantization": "Q4_K_M", "created_at": "2026-11-20T00:00:00+00:00", "primary_score": None},
    ]})
    [trained] = [line for line in lines if "gemma3-270m-abc" in line]
    cells = [c.strip() for c in trained.split("│")[1:-1]]
    assert cells == ["gemma3-270m-abc", "production", "production", "Q5_K_M", "2026-11-24 01:02", "0.912"]
    [base] = [line for line in lines if "@base" in line]
    assert [c.strip() for c in base.split("│")[1:-1]][-1] == "-"  # no score recorded


def test_a_version_without_aliases_or_quant_shows_dashes():
    [row] = [line for line in render({"versions": [{"version": "v", "aliases": [], "status": "candidate",
                                                    "quantization": None, "created_at": None}]}) if "candidate" in line]
    assert [c.strip() for c in row.split("│")[1:-1]] == ["v", "-", "candidate", "-", "", "-"]
