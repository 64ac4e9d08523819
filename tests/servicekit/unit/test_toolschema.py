"""The shared schema check: once per distinct schema, invalid ones named and never kept."""

from __future__ import annotations

import pytest

from servicekit.toolschema import InvalidToolSchemaError, SchemaValidators


def test_an_invalid_schema_names_the_tool_and_the_place_in_the_schema():
    with pytest.raises(InvalidToolSchemaError) as info:
        SchemaValidators().get("weather", {"type": "object", "properties": {"city": {"type": "town"}}})
    assert info.value.tool == "weather"
    assert info.value.reason.startswith("at properties/city/type: ")
    assert str(info.value).startswith("tool 'weather': at properties/city/type")


def test_a_schema_is_checked_once_whatever_its_key_order(monkeypatch):
    from jsonschema import Draft202012Validator

    checks = []
    original = Draft202012Validator.check_schema
    monkeypatch.setattr(Draft202012Validator, "check_schema",
                        classmethod(lambda cls, schema, **kw: (checks.append(schema), original(schema, **kw))))
    validators = SchemaValidators()
    first = validators.get("f", {"type": "object", "properties": {"n": {"type": "integer"}}})
    again = validators.get("g", {"properties": {"n": {"type": "integer"}}, "type": "object"})
    assert again is first and len(checks) == 1


def test_invalid_schemas_are_refused_every_time_and_not_kept():
    validators = SchemaValidators(size=4)
    for _ in range(2):
        with pytest.raises(InvalidToolSchemaError):
            validators.get("broken", {"type": 5})
    assert len(validators) == 0


def test_the_cache_is_bounded_and_pinned_schemas_outlive_it():
    validators = SchemaValidators(size=1)
    pinned = validators.pin("own", {"type": "object"})
    validators.get("a", {"type": "object", "title": "a"})
    b = validators.get("b", {"type": "object", "title": "b"})
    assert len(validators) == 2
    assert validators.get("own", {"type": "object"}) is pinned
    assert validators.get("b", {"type": "object", "title": "b"}) is b
