"""Generates the demo's task set from templates with a fixed seed (the files under `data/`
are its output; a unit test checks they are current).

    python -m loopdemo.taskgen          # rewrite data/tasks.jsonl and data/heldout.jsonl

Categories, as in BFCL: `simple` (the one right tool is offered), `multiple` (all four are
offered, one is right), `parallel` (one tool offered, two requests for it in one message: two
calls in one turn), `parallel_multiple` (all four offered, two requests for two different tools),
`irrelevance` (a tool is offered, none fits: no call is correct).
Values are drawn at random, phrasings from a few templates per tool, so the held-out part
asks the same kinds of things with other numbers, units and words.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .tasks import DEMO_TASKS, HELDOUT_TASKS, Task, data_path, split
from .tools import FUNCTIONS, TOOL_NAMES

SEED = 20261124
PER_TOOL = {"simple": 4, "multiple": 4}
PARALLEL_PER_TOOL = 3
PARALLEL_MULTIPLE = 8
IRRELEVANT = 18

UNIT_NAMES = {
    "km": "kilometers", "mi": "miles", "m": "meters", "ft": "feet", "kg": "kilograms", "lb": "pounds",
    "l": "liters", "gal": "gallons", "c": "degrees Celsius", "f": "degrees Fahrenheit",
}
UNIT_PAIRS = [("km", "mi"), ("mi", "km"), ("m", "ft"), ("ft", "m"), ("kg", "lb"), ("lb", "kg"),
              ("l", "gal"), ("gal", "l"), ("c", "f"), ("f", "c")]
CURRENCY_NAMES = {"USD": "US dollars", "EUR": "euros", "GBP": "British pounds", "JPY": "Japanese yen",
                  "CHF": "Swiss francs", "CAD": "Canadian dollars"}

UNIT_TEMPLATES = ["Convert {v} {src} to {dst}.", "How many {dst} is {v} {src}?", "What is {v} {src} in {dst}?"]
CURRENCY_TEMPLATES = ["Convert {a} {src} to {dst}.", "How much is {a} {src} in {dst}?",
                      "I have {a} {src}. What is that in {dst}?"]
DATE_TEMPLATES = ["What date is {n} days after {d}?", "Add {n} days to {d}.",
                  "If today is {d}, what is the date in {n} days?"]
TIP_TEMPLATES = ["What is a {p}% tip on a ${b} bill?", "Calculate a {p} percent tip for a bill of ${b}."]
SPLIT_TEMPLATES = ["Split a ${b} bill with a {p}% tip between {k} people.",
                   "Our bill is ${b} and we tip {p}%. How much does each of the {k} of us pay?"]

IRRELEVANT_QUESTIONS = [
    "Write a haiku about the sea.", "Who wrote Pride and Prejudice?", "What is the capital of Japan?",
    "Tell me a joke about cats.", "Translate 'good morning' into Spanish.", "Who painted the Mona Lisa?",
    "Summarize the plot of Hamlet in one sentence.", "What does DNA stand for?",
    "Recommend a good book about space.", "How do I reverse a list in Python?",
    "What is the tallest mountain in Africa?", "Give me three tips for better sleep.",
    "Name three primary colors.", "In which year did people first land on the Moon?",
    "Suggest a name for a pet turtle.", "Explain what a prime number is.",
    "How many legs does a spider have?", "What is the chemical symbol for gold?",
    "What is the boiling point of water at sea level?", "Who discovered penicillin?",
    "Write a short thank-you note to a colleague.", "What language is spoken in Brazil?",
    "Give me a synonym for 'happy'.", "Why is the sky blue?",
]



def _units(rng: random.Random) -> tuple[str, dict[str, list[Any]]]:
    src, dst = rng.choice(UNIT_PAIRS)
    value = rng.randint(2, 250)
    q = rng.choice(UNIT_TEMPLATES).format(v=value, src=UNIT_NAMES[src], dst=UNIT_NAMES[dst])
    return q, {"value": [value], "from_unit": [src], "to_unit": [dst]}


def _currency(rng: random.Random) -> tuple[str, dict[str, list[Any]]]:
    src, dst = rng.sample(sorted(CURRENCY_NAMES), 2)
    amount = rng.choice([5, 10, 20, 25, 40, 50, 75, 80, 100, 120, 150, 200, 250, 300, 500, 1000])
    q = rng.choice(CURRENCY_TEMPLATES).format(a=amount, src=CURRENCY_NAMES[src], dst=CURRENCY_NAMES[dst])
    return q, {"amount": [amount], "from_currency": [src], "to_currency": [dst]}


def _dates(rng: random.Random) -> tuple[str, dict[str, list[Any]]]:
    start = (date(2026, 1, 1) + timedelta(days=rng.randint(0, 364))).isoformat()
    days = rng.randint(2, 120)
    q = rng.choice(DATE_TEMPLATES).format(n=days, d=start)
    return q, {"date": [start], "days": [days]}


def _tip(rng: random.Random) -> tuple[str, dict[str, list[Any]]]:
    bill = rng.randint(12, 240)
    percent = rng.choice([10, 12, 15, 18, 20, 22, 25])
    if rng.random() < 0.4:
        people = rng.randint(2, 6)
        q = rng.choice(SPLIT_TEMPLATES).format(b=bill, p=percent, k=people)
        return q, {"bill": [bill], "percent": [percent], "people": [people]}
    q = rng.choice(TIP_TEMPLATES).format(b=bill, p=percent)
    return q, {"bill": [bill], "percent": [percent], "people": ["", 1]}


MAKERS: dict[str, Callable[[random.Random], tuple[str, dict[str, list[Any]]]]] = {
    "convert_units": _units, "convert_currency": _currency, "add_days": _dates, "calculate_tip": _tip,
}


def _task(task_id: str, category: str, question: str, functions: list[str],
          truth: list[dict[str, Any]] | None) -> Task:
    return Task(
        id=task_id, category=category, question=[[{"role": "user", "content": question}]],
        function=[FUNCTIONS[name] for name in functions], ground_truth=truth,
        expect="ast_match" if truth else "no_call",
    )


def generate(seed: int = SEED) -> list[Task]:
    rng = random.Random(seed)
    tasks: list[Task] = []
    seen: set[str] = set()
    for category, per_tool in PER_TOOL.items():
        n = 0
        for name in TOOL_NAMES:
            made = 0
            while made < per_tool:
                question, params = MAKERS[name](rng)
                if question in seen:  # the same question twice would leak across the split
                    continue
                seen.add(question)
                offered = [name] if category == "simple" else list(TOOL_NAMES)
                tasks.append(_task(f"demo_{category}_{n}", category, question, offered, [{name: params}]))
                n += 1
                made += 1
    n = 0
    for name in TOOL_NAMES:  # parallel: two requests for the same tool
        for _ in range(PARALLEL_PER_TOOL):
            (q1, p1), (q2, p2) = _two(rng, [name, name], seen)
            tasks.append(_task(f"demo_parallel_{n}", "parallel", f"{q1} {q2}", [name], [{name: p1}, {name: p2}]))
            n += 1
    for n in range(PARALLEL_MULTIPLE):  # parallel_multiple: two requests for two different tools
        first, second = rng.sample(list(TOOL_NAMES), 2)
        (q1, p1), (q2, p2) = _two(rng, [first, second], seen)
        tasks.append(_task(f"demo_parallel_multiple_{n}", "parallel_multiple", f"{q1} {q2}", list(TOOL_NAMES),
                           [{first: p1}, {second: p2}]))
    questions = rng.sample(IRRELEVANT_QUESTIONS, IRRELEVANT)
    for n, question in enumerate(questions):
        tasks.append(_task(f"demo_irrelevance_{n}", "irrelevance", question, [rng.choice(TOOL_NAMES)], None))
    return tasks


def _two(rng: random.Random, names: list[str], seen: set[str]) -> list[tuple[str, dict[str, list[Any]]]]:
    """Two fresh questions for the given tools (never asked before, not the same twice)."""
    out: list[tuple[str, dict[str, list[Any]]]] = []
    for name in names:
        while True:
            question, params = MAKERS[name](rng)
            if question not in seen:
                seen.add(question)
                out.append((question, params))
                break
    return out


def render(tasks: list[Task]) -> str:
    return "".join(json.dumps(t.line(), separators=(", ", ": ")) + "\n" for t in tasks)


def write(folder: Path | None = None) -> tuple[Path, Path]:
    tasks = generate()
    all_path = (folder / DEMO_TASKS) if folder else data_path(DEMO_TASKS)
    heldout_path = (folder / HELDOUT_TASKS) if folder else data_path(HELDOUT_TASKS)
    all_path.parent.mkdir(parents=True, exist_ok=True)
    all_path.write_text(render(tasks), encoding="utf-8")
    heldout_path.write_text(render(split(tasks).heldout), encoding="utf-8")
    return all_path, heldout_path


if __name__ == "__main__":
    for path in write():
        print(path)
