"""The body `agentloop retrain` sends: sources made absolute, weights parsed, options checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentloop_cli.commands.retrain import absolute_source, retrain_body
from agentloop_cli.config import ConfigError


def test_relative_corpus_paths_are_resolved_against_the_working_directory():
    cwd = Path("/home/op/project")
    assert absolute_source("bfcl:data/simple.jsonl", cwd) == "bfcl:/home/op/project/data/simple.jsonl"
    assert absolute_source("data/chat.jsonl", cwd) == "/home/op/project/data/chat.jsonl"
    assert absolute_source("openai:s3://bucket/x.jsonl", cwd) == "openai:s3://bucket/x.jsonl"
    assert absolute_source("mined", cwd) == "mined"


def test_the_body_carries_only_what_was_given():
    assert retrain_body() == {"reason": ""}
    body = retrain_body(reason="drift", sources=["mined", "bfcl:/d/simple.jsonl"], weights=["bfcl=0.5", "mined=2"],
                        max_steps=30, base_model="v3", val_fraction=0.2, max_examples=1000)
    assert body == {
        "reason": "drift",
        "dataset": {"sources": ["mined", "bfcl:/d/simple.jsonl"], "weights": {"bfcl": 0.5, "mined": 2.0},
                    "val_fraction": 0.2, "max_examples": 1000},
        "training": {"max_steps": 30},
        "base_model": "v3",
    }


@pytest.mark.parametrize("weight", ["bfcl", "bfcl=lots", "=2"])
def test_a_malformed_weight_is_refused_before_sending(weight):
    with pytest.raises(ConfigError):
        retrain_body(weights=[weight])


def test_options_the_contracts_refuse_are_refused_before_sending():
    with pytest.raises(ConfigError):
        retrain_body(val_fraction=1.5)


def test_shape_weights_travel_in_the_dataset_options():
    body = retrain_body(shape_weights=["no_call=1", "parallel=3.5"])

    assert body == {"reason": "", "dataset": {"shape_weights": {"no_call": 1.0, "parallel": 3.5}}}


@pytest.mark.parametrize("item", ["parallel", "parallel=x", "=2", "sideways=2", "no_call=-1"])
def test_a_bad_shape_weight_is_refused_before_sending(item):
    with pytest.raises(ConfigError) as info:
        retrain_body(shape_weights=[item])

    assert "shape" in str(info.value).lower()
