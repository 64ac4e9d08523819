"""BFCL items → training conversations."""

from __future__ import annotations

import json

from modelkit.chat_format import parse_output, render_segments

from trainer.training.bfcl_examples import example_from_item

ITEM = {
    "id": "simple_python_0",
    "question": [
        [
            {
                "role": "user",
                "content": "Find the area of a triangle with a base of 10 and a height of 5.",
            }
        ]
    ],
    "function": [
        {
            "name": "calculate_triangle_area",
            "description": "Area of a triangle.",
            "parameters": {
                "type": "dict",
                "properties": {
                    "base": {"type": "integer"},
                    "height": {"type": "float"},
                    "unit": {"type": "string"},
                    "dims": {"type": "tuple", "items": {"type": "integer"}},
                },
                "required": ["base", "height"],
            },
        }
    ],
    "ground_truth": [
        {
            "calculate_triangle_area": {
                "base": [10],
                "height": [5.0, 5],
                "unit": ["units", ""],
                "dims": [[1, 2], [2, 1]],
            }
        }
    ],
}


def test_answer_is_a_tool_call_with_the_first_acceptable_values_and_no_optional_params():
    record = example_from_item(ITEM)

    assert record["messages"][0] == ITEM["question"][0][0]
    call = record["messages"][-1]["tool_calls"][0]["function"]
    assert call["name"] == "calculate_triangle_area"
    assert json.loads(call["arguments"]) == {"base": 10, "height": 5.0, "dims": [1, 2]}


def test_tool_schemas_use_json_schema_types():
    params = example_from_item(ITEM)["tools"][0]["function"]["parameters"]

    assert params["type"] == "object"
    assert params["properties"]["height"]["type"] == "number"
    assert params["properties"]["dims"]["type"] == "array"


def test_items_without_ground_truth_are_skipped():
    assert example_from_item({**ITEM, "ground_truth": None}) is None


def test_the_trained_text_parses_back_into_the_call():
    record = example_from_item(ITEM)
    trained = "".join(
        s.text for s in render_segments(record["messages"], record["tools"]) if s.trainable
    )

    (call,) = parse_output(trained).calls
    assert (
        call.error is None
        and call.name == "calculate_triangle_area"
        and call.arguments["base"] == 10
    )
