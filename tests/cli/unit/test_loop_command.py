"""`agentloop loop`: its options and the training options it sends."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agentloop_cli.commands.loop import shape_weights, training_options
from agentloop_cli.config import ConfigError
from agentloop_cli.main import app
from loopdemo.loop import DEMO_TRAINING


def test_training_options_start_from_the_demo_defaults_and_take_overrides():
    assert training_options(None, None, None) == DEMO_TRAINING
    opts = training_options(8, 5e-4, '{"rank": 8}')
    assert opts["max_steps"] == 8 and opts["learning_rate"] == 5e-4 and opts["rank"] == 8


@pytest.mark.parametrize("extra, message", [
    ("not json", "not JSON"),
    ("[1]", "JSON object"),
    ('{"rank": 0}', "invalid training options"),
    ('{"ranks": 8}', "unknown training options: ranks"),
])
def test_bad_training_options_are_refused_before_anything_runs(extra, message):
    with pytest.raises(ConfigError, match=message):
        training_options(None, None, extra)


def test_the_command_is_mounted_with_its_options():
    result = CliRunner().invoke(app, ["loop", "--help"])
    assert result.exit_code == 0
    for option in ("--tasks", "--traffic", "--heldout", "--max-steps", "--report"):
        assert option in result.output


def test_a_missing_task_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["loop", "--tasks", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2


def test_shape_weights_are_parsed_and_checked_against_the_dataset_contract():
    assert shape_weights([]) == {}
    assert shape_weights(["no_call=1", "parallel=3"]) == {"no_call": 1.0, "parallel": 3.0}
    with pytest.raises(ConfigError, match="SHAPE=NUMBER"):
        shape_weights(["parallel"])
    with pytest.raises(ConfigError, match="invalid --shape-weight"):
        shape_weights(["sideways=2"])
