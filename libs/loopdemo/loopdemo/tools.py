"""The demo's tool set: four small functions with fixed data, offered to the agent as
client-side tools (the run ends with the model's call; the demo executes it here).

Schemas are written in the BFCL dialect (`dict` for an object, `float` for a number), the
format of the task files; `evalkit.tools.tool_specs` turns them into the OpenAI function format
the gateway takes, exactly as the evaluator does. Descriptions are short on purpose: every offered tool is part of every prompt, and the
prompt is what a 2-core CPU spends its time on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any


class ToolInputError(ValueError):
    """Arguments a demo tool cannot work with; the message says which and why."""


# --------------------------------------------------------------------------- fixed data

# Factor to the base unit of each dimension (metre, kilogram, litre); temperatures are affine.
LENGTH = {"km": 1000.0, "m": 1.0, "mi": 1609.344, "ft": 0.3048}
MASS = {"kg": 1.0, "lb": 0.45359237}
VOLUME = {"l": 1.0, "gal": 3.785411784}
TEMPERATURE = ("c", "f")
UNITS = (*LENGTH, *MASS, *VOLUME, *TEMPERATURE)

# Units of currency per 1 USD: a fixed table, so the demo needs no network.
RATES_PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.0, "CHF": 0.88, "CAD": 1.36}
CURRENCIES = tuple(RATES_PER_USD)


# --------------------------------------------------------------------------- implementations


def _number(args: Mapping[str, Any], name: str) -> float:
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolInputError(f"{name} must be a number, got {value!r}")
    return float(value)


def _choice(args: Mapping[str, Any], name: str, allowed: tuple[str, ...], *, upper: bool = False) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise ToolInputError(f"{name} must be a string, got {value!r}")
    key = value.strip().upper() if upper else value.strip().lower()
    if key not in allowed:
        raise ToolInputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return key


def convert_units(args: Mapping[str, Any]) -> dict[str, Any]:
    value = _number(args, "value")
    src = _choice(args, "from_unit", UNITS)
    dst = _choice(args, "to_unit", UNITS)
    if src in TEMPERATURE and dst in TEMPERATURE:
        celsius = value if src == "c" else (value - 32) * 5 / 9
        result = celsius if dst == "c" else celsius * 9 / 5 + 32
    else:
        for table in (LENGTH, MASS, VOLUME):
            if src in table and dst in table:
                result = value * table[src] / table[dst]
                break
        else:
            raise ToolInputError(f"cannot convert {src} to {dst}: different quantities")
    return {"value": round(result, 4), "unit": dst}


def convert_currency(args: Mapping[str, Any]) -> dict[str, Any]:
    amount = _number(args, "amount")
    src = _choice(args, "from_currency", CURRENCIES, upper=True)
    dst = _choice(args, "to_currency", CURRENCIES, upper=True)
    return {"amount": round(amount / RATES_PER_USD[src] * RATES_PER_USD[dst], 2), "currency": dst}


def add_days(args: Mapping[str, Any]) -> dict[str, Any]:
    raw, days = args.get("date"), args.get("days")
    if not isinstance(raw, str):
        raise ToolInputError(f"date must be a string YYYY-MM-DD, got {raw!r}")
    try:
        start = date.fromisoformat(raw.strip())
    except ValueError:
        raise ToolInputError(f"date must be YYYY-MM-DD, got {raw!r}") from None
    if isinstance(days, bool) or not isinstance(days, int):
        raise ToolInputError(f"days must be an integer, got {days!r}")
    return {"date": (start + timedelta(days=days)).isoformat()}


def calculate_tip(args: Mapping[str, Any]) -> dict[str, Any]:
    bill = _number(args, "bill")
    percent = _number(args, "percent")
    people = args.get("people", 1)
    if isinstance(people, bool) or not isinstance(people, int) or people < 1:
        raise ToolInputError(f"people must be a positive integer, got {people!r}")
    tip = bill * percent / 100
    return {"tip": round(tip, 2), "total": round(bill + tip, 2), "per_person": round((bill + tip) / people, 2)}


# --------------------------------------------------------------------------- schemas (BFCL dialect)


def _param(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


FUNCTIONS: dict[str, dict[str, Any]] = {
    "convert_units": {
        "name": "convert_units",
        "description": "Convert a quantity between units of length, mass, volume or temperature.",
        "parameters": {"type": "dict", "properties": {
            "value": _param("float", "The quantity to convert."),
            "from_unit": _param("string", "Unit of the value.", enum=list(UNITS)),
            "to_unit": _param("string", "Unit to convert to.", enum=list(UNITS)),
        }, "required": ["value", "from_unit", "to_unit"]},
    },
    "convert_currency": {
        "name": "convert_currency",
        "description": "Convert money between currencies at today's fixed rates.",
        "parameters": {"type": "dict", "properties": {
            "amount": _param("float", "The amount of money."),
            "from_currency": _param("string", "ISO code of the amount's currency.", enum=list(CURRENCIES)),
            "to_currency": _param("string", "ISO code of the target currency.", enum=list(CURRENCIES)),
        }, "required": ["amount", "from_currency", "to_currency"]},
    },
    "add_days": {
        "name": "add_days",
        "description": "The calendar date a number of days after (or before, if negative) a date.",
        "parameters": {"type": "dict", "properties": {
            "date": _param("string", "Start date, YYYY-MM-DD."),
            "days": _param("integer", "Days to add."),
        }, "required": ["date", "days"]},
    },
    "calculate_tip": {
        "name": "calculate_tip",
        "description": "Tip and total for a restaurant bill, optionally split between people.",
        "parameters": {"type": "dict", "properties": {
            "bill": _param("float", "The bill before the tip."),
            "percent": _param("float", "Tip in percent."),
            "people": _param("integer", "People sharing the bill. Default 1."),
        }, "required": ["bill", "percent"]},
    },
}

IMPLEMENTATIONS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "convert_units": convert_units,
    "convert_currency": convert_currency,
    "add_days": add_days,
    "calculate_tip": calculate_tip,
}

TOOL_NAMES = tuple(FUNCTIONS)


def execute(name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Run a demo tool as the client would after the model's call; ToolInputError if it cannot."""
    if name not in IMPLEMENTATIONS:
        raise ToolInputError(f"no demo tool named {name!r}")
    return IMPLEMENTATIONS[name](arguments)
