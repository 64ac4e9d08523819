"""The rules the snapshot test applies, shown on a small model changed in each way."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tests.contracts.compatibility import breaking_changes


class Inner(BaseModel):
    size: int


class V1(BaseModel):
    name: str
    count: int = 0
    kind: Literal["a", "b"] = "a"
    inner: Inner | None = None


def changes_from_v1(model: type[BaseModel]) -> list[str]:
    return breaking_changes(V1.model_json_schema(), model.model_json_schema(), "V")


def test_an_added_optional_field_is_compatible():
    class V2(BaseModel):
        name: str
        count: int = 0
        kind: Literal["a", "b"] = "a"
        inner: Inner | None = None
        note: str | None = None

    assert changes_from_v1(V2) == []


def test_new_descriptions_and_defaults_are_compatible():
    class V2(BaseModel):
        name: str = Field(description="who")
        count: int = 7
        kind: Literal["a", "b"] = "b"
        inner: Inner | None = None

    assert changes_from_v1(V2) == []


def test_a_removed_field_is_breaking():
    class V2(BaseModel):
        name: str
        kind: Literal["a", "b"] = "a"
        inner: Inner | None = None

    assert changes_from_v1(V2) == ["V.count: field removed"]


def test_a_changed_type_is_breaking():
    class V2(BaseModel):
        name: str
        count: str = "0"
        kind: Literal["a", "b"] = "a"
        inner: Inner | None = None

    [change] = changes_from_v1(V2)
    assert change.startswith("V.count: type changed")


def test_a_changed_enum_is_breaking():
    class V2(BaseModel):
        name: str
        count: int = 0
        kind: Literal["a"] = "a"
        inner: Inner | None = None

    [change] = changes_from_v1(V2)
    assert change.startswith("V.kind: type changed")


def test_a_newly_required_field_is_breaking():
    class V2(BaseModel):
        name: str
        count: int
        kind: Literal["a", "b"] = "a"
        inner: Inner | None = None

    assert changes_from_v1(V2) == ["V.count: newly required"]


def test_an_added_required_field_is_breaking():
    class V2(BaseModel):
        name: str
        count: int = 0
        kind: Literal["a", "b"] = "a"
        inner: Inner | None = None
        owner: str

    assert changes_from_v1(V2) == ["V.owner: newly required"]


def test_a_change_inside_a_nested_model_is_breaking():
    class Inner(BaseModel):  # noqa: F811 - same $defs name, new shape
        size: float

    class V2(BaseModel):
        name: str
        count: int = 0
        kind: Literal["a", "b"] = "a"
        inner: Inner | None = None

    [change] = changes_from_v1(V2)
    assert change.startswith("$defs.Inner.size: type changed")
