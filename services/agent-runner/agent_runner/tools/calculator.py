"""calculator: arithmetic on numbers, evaluated by walking the AST (never `eval`).

Allowed: int/float literals, + - * / // % **, unary + -, parentheses, a few math functions
and constants. Sizes are bounded so that `9**9**9` or a factorial of a million cannot tie up
the runner: integers stay under MAX_INT_BITS, exponents under MAX_EXPONENT.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from contracts import FunctionSpec, ToolSpec

from ..domain import ToolError

MAX_LENGTH = 500
MAX_INT_BITS = 4096
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 500

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _factorial(n: Any) -> int:
    if not isinstance(n, int) or n < 0 or n > MAX_FACTORIAL:
        raise ToolError(f"factorial needs an integer from 0 to {MAX_FACTORIAL}")
    return math.factorial(n)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "min": min, "max": max,
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log2": math.log2, "log10": math.log10,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "floor": math.floor, "ceil": math.ceil, "factorial": _factorial,
}


def evaluate(expression: str) -> int | float:
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {exc.msg}") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("number too large") from None
    except (ValueError, TypeError) as exc:
        raise ToolError(f"math error: {exc}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolError(f"only numbers are allowed, not {node.value!r}")
        return _checked(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"unknown name {node.id!r}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise ToolError("only these functions are allowed: " + ", ".join(sorted(_FUNCTIONS)))
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise ToolError("functions take plain positional arguments")
        return _checked(_FUNCTIONS[node.func.id](*(_eval(a) for a in node.args)))
    raise ToolError(f"{type(node).__name__} is not allowed in an arithmetic expression")


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(exponent, complex) or abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent larger than {MAX_EXPONENT}")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if abs(base).bit_length() * exponent > MAX_INT_BITS:
            raise ToolError("number too large")


def _checked(value: Any) -> Any:
    if isinstance(value, complex):
        raise ToolError("complex results are not supported")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError("number too large")
    return value


class CalculatorTool:
    name = "calculator"
    spec = ToolSpec(
        function=FunctionSpec(
            name="calculator",
            description="Evaluate an arithmetic expression, e.g. 17*23 or sqrt(2)/3.",
            parameters={
                "type": "object",
                "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": MAX_LENGTH}},
                "required": ["expression"],
                "additionalProperties": False,
            },
        )
    )

    async def run(self, arguments: dict[str, Any]) -> int | float:
        return evaluate(arguments["expression"])
