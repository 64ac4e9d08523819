"""Task sets in BFCL format, the deterministic traffic / held-out split, and what a correct
call for a task is.

A task is one line `{id, category, question, function, ground_truth, expect}` (see
`../shared/eval/bfcl-dev/RULES.md`): `question` is a list of turns of `{role, content}`
messages, `function` the offered tools in BFCL's schema dialect, `ground_truth` a list of
`{function_name: {param: [acceptable values]}}` (`""` among them: may be omitted), `expect`
`ast_match` or `no_call`. The demo's own set ships in this package (`data/tasks.jsonl`); any
file of the same format can replace it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from evalkit.ast_checker import reference_calls
from evalkit.tools import tool_specs

EXPECTS = ("ast_match", "no_call")
DEMO_TASKS = "tasks.jsonl"
HELDOUT_TASKS = "heldout.jsonl"  # split(load_tasks()).heldout, written by taskgen
# Shown to the model for a task that needs no tool, as the corrected answer.
NO_TOOL_ANSWER = "None of my tools can help with that, so I will answer without them."


class TaskFileError(ValueError):
    """A task file that cannot be used; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Task:
    id: str
    category: str
    question: list[list[dict[str, Any]]]
    function: list[dict[str, Any]]
    ground_truth: list[dict[str, dict[str, list[Any]]]] | None
    expect: str

    @classmethod
    def parse(cls, raw: dict[str, Any], where: str = "task") -> Task:
        def bad(problem: str) -> TaskFileError:
            return TaskFileError(f"{where}: {problem}")

        if not isinstance(raw, dict):
            raise bad("not a JSON object")
        for key in ("id", "question", "function"):
            if key not in raw:
                raise bad(f"missing {key!r}")
        question, functions = raw["question"], raw["function"]
        if not (isinstance(question, list) and question and all(isinstance(t, list) and t for t in question)):
            raise bad("question must be a non-empty list of turns (lists of messages)")
        if not all(isinstance(m, dict) and "role" in m and "content" in m for turn in question for m in turn):
            raise bad("every message of question needs role and content")
        if not isinstance(functions, list) or not all(isinstance(f, dict) and f.get("name") for f in functions):
            raise bad("function must be a list of tools with a name")
        truth = raw.get("ground_truth")
        expect = raw.get("expect") or ("no_call" if not truth else "ast_match")
        if expect not in EXPECTS:
            raise bad(f"expect must be one of {EXPECTS}, got {expect!r}")
        if expect == "ast_match":
            if not isinstance(truth, list) or not truth:
                raise bad("ast_match needs a non-empty ground_truth list")
            for call in truth:
                if not (isinstance(call, dict) and len(call) == 1 and isinstance(next(iter(call.values())), dict)):
                    raise bad("each ground_truth call must be {function_name: {param: [values]}}")
        category = str(raw.get("category") or str(raw["id"]).rsplit("_", 1)[0])
        return cls(str(raw["id"]), category, question, functions, truth if expect == "ast_match" else None, expect)

    def line(self) -> dict[str, Any]:
        return {"id": self.id, "category": self.category, "question": self.question, "function": self.function,
                "ground_truth": self.ground_truth, "expect": self.expect}

    def messages(self) -> list[dict[str, Any]]:
        """The conversation sent to the agent: the task's first turn (non-live BFCL has one)."""
        return [{"role": m["role"], "content": m["content"]} for m in self.question[0]]

    def tools(self) -> list[dict[str, Any]]:
        """The offered functions as the runner's tools (the evaluator renders them the same way)."""
        return tool_specs(self.function)

    def client_run(self, *, max_tokens: int, timeout_s: float, constrained: str | None = None,
                   groupthink: int | None = None, model: str | None = None) -> dict[str, Any]:
        """The run a client with its own (client-side) tools asks for: one model turn, which ends
        with the model's call(s) for the client to execute, or with an answer. `constrained`
        (auto | off), `groupthink` (samples) and `model` are left to the runner when None."""
        options: dict[str, Any] = {"server_tools": False, "max_steps": 1, "max_tokens": max_tokens,
                                   "temperature": 0.0, "timeout_s": timeout_s}
        if constrained is not None:
            options["constrained"] = constrained
        if groupthink:
            options["groupthink"] = {"samples": groupthink}
        if model is not None:
            options["model"] = model
        return {"messages": self.messages(), "tools": self.tools(), "options": options}

    def reference_calls(self) -> list[dict[str, Any]]:
        """The calls a user would write as the correction (evalkit: each parameter's first
        acceptable value; omittable ones left out unless the schema requires them)."""
        return reference_calls(self.line())


def parse_lines(lines: Iterable[str], source: str) -> list[Task]:
    tasks: list[Task] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{where}: not JSON ({exc.msg})") from None
        task = Task.parse(raw, where)
        if task.id in seen:
            raise TaskFileError(f"{where}: duplicate id {task.id!r}")
        seen.add(task.id)
        tasks.append(task)
    if not tasks:
        raise TaskFileError(f"{source}: no tasks")
    return tasks


def load_tasks(path: Path | None = None) -> list[Task]:
    """The tasks of a BFCL-format JSONL file, or of every `*.jsonl` file of a directory (in name
    order, e.g. `../shared/eval/bfcl-dev/`); without a path, the demo's own set."""
    if path is None:
        text = data_path().read_text(encoding="utf-8")
        return parse_lines(text.splitlines(), f"loopdemo/data/{DEMO_TASKS}")
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise TaskFileError(f"{path}: a directory without *.jsonl files")
    tasks: list[Task] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise TaskFileError(f"cannot read {file}: {exc.strerror or exc}") from None
        tasks += parse_lines(text.splitlines(), str(file))
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise TaskFileError(f"{path}: duplicate id {task.id!r} across files")
        seen.add(task.id)
    return tasks


def data_path(name: str = DEMO_TASKS) -> Path:
    """Path of a data file shipped with the package (`tasks.jsonl`, `heldout.jsonl`)."""
    return Path(str(resources.files(__package__).joinpath("data", name)))


def demo_suite_path() -> Path:
    """The demo's held-out part as its own BFCL file."""
    return data_path(HELDOUT_TASKS)


def demo_suites_dir() -> Path:
    """The evaluator's suites for the demo (EVAL__SUITES): the held-out part as the primary
    `ast` suite (its header sets the gate's threshold), JSON validity and latency."""
    return data_path("suites")


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class Split:
    traffic: list[Task]
    heldout: list[Task]

    def limited(self, traffic: int | None = None, heldout: int | None = None) -> Split:
        """At most N tasks of each part, categories kept in proportion (round-robin)."""
        return Split(_take(self.traffic, traffic), _take(self.heldout, heldout))


def _rank(task_id: str) -> str:
    return hashlib.sha256(task_id.encode()).hexdigest()


def split(tasks: Sequence[Task], heldout_share: float = 1 / 3) -> Split:
    """Deterministic: within each category, tasks ordered by the hash of their id; the first
    `heldout_share` (rounded, at least one when the category has two or more) are held out."""
    if not 0 < heldout_share < 1:
        raise ValueError("heldout_share must be between 0 and 1")
    traffic: list[Task] = []
    heldout: list[Task] = []
    for category in sorted({t.category for t in tasks}):
        ranked = sorted((t for t in tasks if t.category == category), key=lambda t: _rank(t.id))
        n = round(len(ranked) * heldout_share)
        if len(ranked) >= 2:
            n = min(max(n, 1), len(ranked) - 1)
        else:
            n = 0
        heldout += ranked[:n]
        traffic += ranked[n:]
    return Split(_interleave(traffic), _interleave(heldout))


def validation_test(heldout: Sequence[Task]) -> tuple[list[Task], list[Task]]:
    """The held-out part halved, per category and deterministically (a second hash of the id):
    options are chosen on the validation half, numbers are reported once on the test half."""
    val: list[Task] = []
    test: list[Task] = []
    for category in sorted({t.category for t in heldout}):
        ranked = sorted((t for t in heldout if t.category == category), key=lambda t: _rank("val:" + t.id))
        half = len(ranked) // 2
        val += ranked[:half]
        test += ranked[half:]
    return _interleave(val), _interleave(test)


def _interleave(tasks: Sequence[Task]) -> list[Task]:
    """Round-robin over categories (in their order of appearance), so a prefix of the list
    has every category in proportion."""
    by_category: dict[str, list[Task]] = {}
    for t in tasks:
        by_category.setdefault(t.category, []).append(t)
    queues = list(by_category.values())
    total = len(tasks)
    out: list[Task] = []
    # Weighted round-robin: pick the category furthest behind its share.
    taken = [0] * len(queues)
    while len(out) < total:
        best = min(
            (i for i, q in enumerate(queues) if taken[i] < len(q)),
            key=lambda i: (taken[i] + 1) / len(queues[i]),
        )
        out.append(queues[best][taken[best]])
        taken[best] += 1
    return out


def _take(tasks: list[Task], n: int | None) -> list[Task]:
    return list(tasks) if n is None else list(tasks[:n])
