"""The demo tools compute from fixed tables and refuse arguments they cannot use."""

from __future__ import annotations

import pytest

from loopdemo.tools import ToolInputError, execute


def test_converts_units_within_a_dimension():
    assert execute("convert_units", {"value": 10, "from_unit": "km", "to_unit": "mi"}) == {"value": 6.2137, "unit": "mi"}
    assert execute("convert_units", {"value": 100, "from_unit": "C", "to_unit": "f"}) == {"value": 212.0, "unit": "f"}


def test_refuses_units_of_different_quantities():
    with pytest.raises(ToolInputError, match="different quantities"):
        execute("convert_units", {"value": 1, "from_unit": "kg", "to_unit": "km"})


def test_converts_currency_through_the_fixed_table():
    assert execute("convert_currency", {"amount": 92, "from_currency": "eur", "to_currency": "USD"}) == {
        "amount": 100.0, "currency": "USD"}


def test_adds_days_across_months():
    assert execute("add_days", {"date": "2026-01-30", "days": 3}) == {"date": "2026-02-02"}
    with pytest.raises(ToolInputError, match="YYYY-MM-DD"):
        execute("add_days", {"date": "30/01/2026", "days": 3})


def test_tip_splits_between_people():
    assert execute("calculate_tip", {"bill": 100, "percent": 20, "people": 4}) == {
        "tip": 20.0, "total": 120.0, "per_person": 30.0}
    with pytest.raises(ToolInputError, match="people"):
        execute("calculate_tip", {"bill": 100, "percent": 20, "people": 0})


def test_unknown_tool_and_wrong_types_are_refused():
    with pytest.raises(ToolInputError, match="no demo tool"):
        execute("rm_rf", {})
    with pytest.raises(ToolInputError, match="must be a number"):
        execute("calculate_tip", {"bill": "100", "percent": 20})
