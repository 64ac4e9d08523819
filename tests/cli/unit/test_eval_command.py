"""`agentloop eval`: its options, refused before anything runs when they are wrong."""

from __future__ import annotations

from typer.testing import CliRunner

from agentloop_cli.commands.evaluate import categories_of
from agentloop_cli.main import app


def test_categories_may_be_comma_separated_or_repeated():
    assert categories_of(["simple,multiple", "parallel", " "]) == ["simple", "multiple", "parallel"]
    assert categories_of(None) is None and categories_of([""]) is None


def test_the_command_is_mounted_with_its_options():
    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--groupthink", "--constrained", "--limit", "--categories", "--concurrency", "--json"):
        assert option in result.output


def test_bad_options_are_usage_errors(tmp_path):
    file = tmp_path / "items.jsonl"
    file.write_text("{}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["eval", str(tmp_path / "none.jsonl")]).exit_code == 2
    assert runner.invoke(app, ["eval", str(file), "--constrained", "maybe"]).exit_code == 2
    assert runner.invoke(app, ["eval", str(file), "--groupthink", "1"]).exit_code == 2
