"""The AST checker: is a model's tool call the call a BFCL-format item expects?

Implements the judging rules of BFCL's AST category as summarised in
`shared/eval/bfcl-dev/RULES.md` (an independent implementation, not a port of upstream code):

- category dispatch: `simple` wants exactly one call; `multiple` as many calls as the ground
  truth (one), judged against the expected function; `parallel*` as many calls as the ground
  truth, matched greedily in any order; `expect == "no_call"` (irrelevance) passes iff no
  well-formed call was made.
- per call, in order: function name, required parameters, no parameter outside the schema and
  the ground truth, Python-style type check (with the "variable" escape), value check (strings
  standardised, lists in order, dicts key by key, lists of dicts pairwise), and every omitted
  ground-truth parameter must allow `""`.

Schemas may use BFCL's dialect (`dict`, `float`, `tuple`, `any`) or plain JSON Schema
(`object`, `number`): regression suites built from logged traffic carry the latter.

Input calls are what `modelkit.chat_format.parse_output` yields: `ParsedCall`s (a malformed
block has `error` set) or plain `{"name", "arguments"}` dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OK = "ok"
NO_CALL = "no_call"  # a call was expected, the output holds none
INVALID_JSON = "invalid_json"  # a <tool_call> block that does not parse into {name, arguments}
WRONG_CALL_COUNT = "wrong_call_count"
WRONG_FUNCTION = "wrong_function"
MISSING_REQUIRED = "missing_required"
UNEXPECTED_PARAM = "unexpected_param"
TYPE_MISMATCH = "type_mismatch"
VALUE_NOT_ACCEPTED = "value_not_accepted"
MISSING_PARAM = "missing_param"  # a ground-truth parameter without "" among its values was omitted
CALL_ON_IRRELEVANCE = "call_on_irrelevance"
BAD_ITEM = "bad_item"  # the item itself is unusable (ground truth names a function it does not offer)

REASON_CODES = (OK, NO_CALL, INVALID_JSON, WRONG_CALL_COUNT, WRONG_FUNCTION, MISSING_REQUIRED, UNEXPECTED_PARAM,
                TYPE_MISMATCH, VALUE_NOT_ACCEPTED, MISSING_PARAM, CALL_ON_IRRELEVANCE, BAD_ITEM)

# Schema type -> the Python type a JSON-decoded value must have (`type(v) is T`, so bool is not int).
_PY_TYPES: dict[str, type] = {
    "string": str, "integer": int, "float": float, "number": float, "boolean": bool,
    "array": list, "tuple": list, "dict": dict, "object": dict, "any": str,
}
_LIST_TYPES = ("array", "tuple")
_STRIP = re.compile(r"[ ,./\-_*^]")


@dataclass(frozen=True)
class Verdict:
    code: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.code == OK


@dataclass(frozen=True)
class Call:
    name: str | None
    arguments: dict[str, Any] | None
    error: str | None = None  # set for a block that did not parse


_PASS = Verdict(OK)


def as_calls(calls: Sequence[Any]) -> list[Call]:
    """ParsedCall objects, `Call`s or `{"name", "arguments"}` dicts -> `Call`s."""
    out = []
    for c in calls:
        if isinstance(c, Call):
            out.append(c)
        elif isinstance(c, Mapping):
            out.append(Call(c.get("name"), c.get("arguments"), c.get("error")))
        else:
            out.append(Call(getattr(c, "name", None), getattr(c, "arguments", None), getattr(c, "error", None)))
    return out


def check(item: Mapping[str, Any], calls: Sequence[Any]) -> Verdict:
    """Judge the model's calls for one item (`function`, `ground_truth`, `expect`, `category`)."""
    parsed = as_calls(calls)
    if item.get("expect") == "no_call" or not item.get("ground_truth"):
        well_formed = [c for c in parsed if c.error is None and c.name]
        if well_formed:
            return Verdict(CALL_ON_IRRELEVANCE, f"called {well_formed[0].name!r} where no call was expected")
        return _PASS
    broken = [c for c in parsed if c.error is not None or c.name is None or c.arguments is None]
    if broken:
        return Verdict(INVALID_JSON, broken[0].error or "malformed tool call")
    if not parsed:
        return Verdict(NO_CALL, "no tool call in the output")
    functions = {f["name"]: f for f in item.get("function") or []}
    expected = [_single(call) for call in item["ground_truth"]]
    category = str(item.get("category") or "")
    if "parallel" in category:
        return _check_parallel(functions, expected, parsed)
    if len(parsed) != len(expected) or ("multiple" not in category and len(parsed) != 1):
        return Verdict(WRONG_CALL_COUNT, f"{len(parsed)} calls, expected {len(expected)}")
    name, params = expected[0]
    if name not in functions:
        return Verdict(BAD_ITEM, f"ground truth names {name!r}, which the item does not offer")
    return check_call(functions[name], parsed[0], params)


def _single(call: Mapping[str, Any]) -> tuple[str, dict[str, list[Any]]]:
    if len(call) != 1:
        raise ValueError(f"a ground-truth call has exactly one key, got {list(call)}")
    ((name, params),) = call.items()
    return name, params


def _check_parallel(functions: Mapping[str, Any], expected: list[tuple[str, dict[str, list[Any]]]],
                    calls: list[Call]) -> Verdict:
    if len(calls) != len(expected):
        return Verdict(WRONG_CALL_COUNT, f"{len(calls)} calls, expected {len(expected)}")
    unmatched = list(range(len(calls)))
    for n, (name, params) in enumerate(expected):
        if name not in functions:
            return Verdict(BAD_ITEM, f"ground truth names {name!r}, which the item does not offer")
        first_failure: Verdict | None = None
        for i in unmatched:
            verdict = check_call(functions[name], calls[i], params)
            if verdict.ok:
                unmatched.remove(i)
                break
            if first_failure is None and calls[i].name == name:
                first_failure = verdict
        else:
            # Report why the closest attempt (a call of the same function) failed.
            why = first_failure or Verdict(WRONG_FUNCTION, f"no call of {name!r}")
            return Verdict(why.code, f"expected call {n + 1} ({name}) has no match: {why.detail}")
    return _PASS


def check_call(function: Mapping[str, Any], call: Call, acceptable: Mapping[str, list[Any]]) -> Verdict:
    """One model call against one expected call (the function's schema + acceptable values)."""
    name = function["name"]
    if call.name != name:
        return Verdict(WRONG_FUNCTION, f"called {call.name!r}, expected {name!r}")
    args = call.arguments or {}
    schema = function.get("parameters") or {}
    properties = schema.get("properties") or {}
    for required in schema.get("required") or []:
        if required not in args:
            return Verdict(MISSING_REQUIRED, f"required parameter {required!r} missing")
    for param in args:
        if param not in properties or param not in acceptable:
            return Verdict(UNEXPECTED_PARAM, f"parameter {param!r} is not expected")
    for param, value in args.items():
        verdict = _check_param(param, value, properties[param], acceptable[param])
        if not verdict.ok:
            return verdict
    for param, values in acceptable.items():
        if param not in args and "" not in values:
            return Verdict(MISSING_PARAM, f"parameter {param!r} omitted but it has no default")
    return _PASS


# --------------------------------------------------------------------------- one parameter


def _answer_type(acceptable: Sequence[Any]) -> type | None:
    """The type of the first non-optional acceptable value (None if all are "")."""
    for value in acceptable:
        if value != "":
            return type(value)
    return None


def _type_check(value: Any, acceptable: Sequence[Any], expected: type | None,
                nested: type | None) -> tuple[bool, bool, str]:
    """(valid, is_variable, failure kind). A value of the ground truth's own type, where that
    differs from the schema's, is a "variable" and is compared as it is."""
    answer_type = _answer_type(acceptable)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return True, is_variable, ""
        for option in acceptable:
            items_ok = True
            if type(option) is list:
                for element in value:
                    if not _type_check(element, option, nested, None)[0]:
                        items_ok = False
                        break
            if items_ok:
                return True, is_variable, ""
        return False, is_variable, "nested"
    if answer_type is not None and type(value) is answer_type:
        return True, True, ""
    return False, is_variable, "simple"


def _check_param(param: str, value: Any, spec: Mapping[str, Any], acceptable: list[Any]) -> Verdict:
    type_name = spec.get("type") if isinstance(spec, Mapping) else None
    expected = _PY_TYPES.get(type_name) if isinstance(type_name, str) else None
    if expected is None:  # untyped or a JSON Schema type union: compare values only
        return _check_value(param, value, type(value), None, acceptable)
    nested = None
    if type_name in _LIST_TYPES:
        item_type = (spec.get("items") or {}).get("type")
        nested = _PY_TYPES.get(item_type) if isinstance(item_type, str) else None
    if expected is float and type(value) is int:
        value = float(value)  # an int is accepted where a float is expected
    valid, is_variable, kind = _type_check(value, acceptable, expected, nested)
    if not valid:
        got = type(value).__name__
        where = "an element of " if kind == "nested" else ""
        return Verdict(TYPE_MISMATCH, f"{where}{param!r} has type {got}, expected {type_name}")
    if is_variable:
        return _member(param, value, acceptable)
    return _check_value(param, value, expected, nested, acceptable)


def _check_value(param: str, value: Any, expected: type, nested: type | None, acceptable: list[Any]) -> Verdict:
    if expected is dict and isinstance(value, dict):
        return _check_dict(param, value, acceptable)
    if expected is list and nested is dict and isinstance(value, list):
        return _check_list_of_dicts(param, value, acceptable)
    if expected is str and isinstance(value, str):
        options = [standardize(a) for a in acceptable if type(a) is str]
        if standardize(value) not in options:
            return Verdict(VALUE_NOT_ACCEPTED, f"{param!r}={value!r} is not among {acceptable!r}")
        return _PASS
    if expected is list and isinstance(value, list):
        mine = _standardize_list(value)
        if mine not in [_standardize_list(a) for a in acceptable if isinstance(a, list | str)]:
            return Verdict(VALUE_NOT_ACCEPTED, f"{param!r}={value!r} is not among {acceptable!r}")
        return _PASS
    return _member(param, value, acceptable)


def _member(param: str, value: Any, acceptable: list[Any]) -> Verdict:
    if value not in acceptable:
        return Verdict(VALUE_NOT_ACCEPTED, f"{param!r}={value!r} is not among {acceptable!r}")
    return _PASS


def standardize(text: str) -> str:
    """BFCL's string normalisation: no spaces or , . / - _ * ^; lower case; ' becomes "."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _standardize_list(values: Any) -> list[Any]:
    # An acceptable "" stands for an omitted list; iterating it gives [] (so [] matches it).
    return [standardize(v) if type(v) is str else v for v in values]


def _standardize_options(options: Sequence[Any]) -> list[Any]:
    return [standardize(v) if type(v) is str else v for v in options]


def _dict_matches(value: Mapping[str, Any], option: Mapping[str, Any]) -> str | None:
    """None when `value` fits the acceptable dict `option`, else why not."""
    for key, item in value.items():
        if key not in option:
            return f"unexpected key {key!r}"
        mine = standardize(item) if type(item) is str else item
        if mine not in _standardize_options(option[key]):
            return f"key {key!r}={item!r} is not among {option[key]!r}"
    for key, options in option.items():
        if key not in value and "" not in options:
            return f"key {key!r} missing"
    return None


def _check_dict(param: str, value: Mapping[str, Any], acceptable: list[Any]) -> Verdict:
    why = "no acceptable value"
    for option in acceptable:
        if option == "":
            continue
        if not isinstance(option, Mapping):
            why = f"acceptable value {option!r} is not a dict"
            continue
        problem = _dict_matches(value, option)
        if problem is None:
            return _PASS
        why = problem
    return Verdict(VALUE_NOT_ACCEPTED, f"{param!r}: {why}")


def _check_list_of_dicts(param: str, value: list[Any], acceptable: list[Any]) -> Verdict:
    why = "no acceptable value"
    for option in acceptable:
        if not isinstance(option, list | str):
            continue
        if len(value) != len(option):
            why = f"{len(value)} dicts, expected {len(option)}"
            continue
        problems = [
            _dict_matches(v, o) if isinstance(v, Mapping) and isinstance(o, Mapping) else "not a dict"
            for v, o in zip(value, option, strict=True)
        ]
        bad = [p for p in problems if p is not None]
        if not bad:
            return _PASS
        why = bad[0]
    return Verdict(VALUE_NOT_ACCEPTED, f"{param!r}: {why}")


# --------------------------------------------------------------------------- the oracle


def reference_calls(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ground truth as calls a perfect model would make: each parameter's first acceptable
    value; parameters that may be omitted are left out unless the schema requires them."""
    calls = []
    functions = {f["name"]: f for f in item.get("function") or []}
    for call in item.get("ground_truth") or []:
        name, params = _single(call)
        required = set(((functions.get(name) or {}).get("parameters") or {}).get("required") or [])
        args = {}
        for param, values in params.items():
            if "" in values and param not in required:
                continue
            first = _first_value(values)
            if first is not _OMIT:
                args[param] = first
        calls.append({"name": name, "arguments": args})
    return calls


_OMIT = object()


def _first_value(values: Sequence[Any]) -> Any:
    for value in values:
        if value == "":
            continue
        if isinstance(value, Mapping):
            return _first_dict(value)
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            return [_first_dict(v) for v in value]
        return value
    return _OMIT


def _first_dict(option: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, values in option.items():
        if "" in values:
            continue
        first = _first_value(values)
        if first is not _OMIT:
            out[key] = first
    return out
