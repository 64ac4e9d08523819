"""servicekit.text: what text may reach storage, found and named in JSON bodies."""

from __future__ import annotations

import json

import pytest

from servicekit.text import MAX_DEPTH, storable, text_problem, unstorable_json, unstorable_value


def body(value) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("value, loc", [
    ({"messages": [{"role": "user", "content": "hi\u0000there"}]}, ("messages", 0, "content")),
    ({"metadata": {"k\u0000": "v"}}, ("metadata", "k\u0000")),
    ({"tools": [{"name": "x", "parameters": {"a": ["ok", "bad\ud800"]}}]}, ("tools", 0, "parameters", "a", 1)),
    (["\udfff"], (0,)),
])
def test_a_nul_or_a_lone_surrogate_is_found_and_named(value, loc):
    found = unstorable_json(body(value))
    assert found is not None and found.loc == loc
    assert ("NUL" in found.reason) or ("surrogate" in found.reason)


def test_the_field_name_reads_like_pydantics():
    found = unstorable_json(body({"messages": [{"content": "\u0000"}]}))
    assert found is not None and found.field == "messages[0].content"


@pytest.mark.parametrize("value", [
    {"messages": [{"role": "user", "content": "an emoji \U0001F600 is a valid surrogate pair"}]},
    {"text": "a literal backslash-u: \\u0000 is six characters, not a NUL"},
    {"deep": [[[["fine"]]]]},
])
def test_clean_bodies_pass(value):
    assert unstorable_json(body(value)) is None


def test_json_nested_too_deep_is_refused_with_its_depth():
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    found = unstorable_json(deep)
    assert found is not None and found.loc == () and f"{MAX_DEPTH + 1} deep" in found.reason
    many_brackets_in_strings = body({"a": "[" * 500, "b": [{"c": 1}] * 200})
    assert unstorable_json(many_brackets_in_strings) is None  # brackets inside strings and siblings do not count


def test_a_body_that_is_not_json_is_left_to_the_parser():
    assert unstorable_json(b'{"a": "\\u0000"') is None


def test_decoded_values_and_single_strings():
    assert unstorable_value({"a": ["x", "y\u0000"]}).loc == ("a", 1)
    assert text_problem("plain") is None and "NUL" in text_problem("\u0000")


def test_text_that_must_be_kept_is_escaped_not_dropped():
    kept = storable({"page": "a\u0000b", "list": ["\ud800x", 3], "k\u0000": None})
    assert kept == {"page": "a\\u0000b", "list": ["\ufffdx", 3], "k\\u0000": None}
    assert unstorable_value(kept) is None
    assert storable("clean") == "clean" and storable(7) == 7
