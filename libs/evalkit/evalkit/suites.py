"""Evaluation suites: a header line plus BFCL-format items (format documented in docs/suites.md).

    {"suite": {"name": "tool-calls", "kind": "ast", "primary": true, "threshold": 0.5,
               "tolerance": 0.02, "sample": {"max_items": 50, "seed": 0}}}
    {"id": "weather-1", "category": "simple", "question": [[{"role": "user", "content": "..."}]],
     "function": [...], "ground_truth": [{"get_weather": {"city": ["Paris"]}}], "expect": "ast_match"}

- `ast`: the items are judged by the AST checker; score = accuracy (per category too).
- `regression`: items built from a log-miner dataset's val.jsonl (`source`), judged the same way.
  (`evalkit.dataset_suite` builds a BFCL-category suite from the same examples.)
- `json_validity`, `latency`: no items; measured on the generations of the item suites (`of`).

A file without a header line is an `ast` suite named after the file. The header may name item
files instead of carrying items (`"items": ["../data/simple.jsonl"]`, relative to the suite file).
"""

from __future__ import annotations

import glob
import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .tools import function_of

AST = "ast"
REGRESSION = "regression"
JSON_VALIDITY = "json_validity"
LATENCY = "latency"
KINDS = (AST, REGRESSION, JSON_VALIDITY, LATENCY)
GENERATIVE = (AST, REGRESSION)  # kinds whose items the model answers
CANDIDATE_DATASET = "candidate_dataset"  # regression source: the val.jsonl of the candidate's dataset


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Sampling:
    max_items: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class Suite:
    name: str
    kind: str
    items: tuple[dict[str, Any], ...] = ()
    primary: bool = False
    threshold: float | None = None  # absolute bar of the primary suite
    tolerance: float | None = None  # allowed regression vs production (latency: relative)
    category_tolerance: float | None = None  # allowed regression per category (None: `tolerance`)
    of: tuple[str, ...] = ()  # json_validity/latency: suites measured (empty: every item suite)
    source: str | None = None  # regression: path, s3:// URI or "candidate_dataset"
    sampling: Sampling = field(default_factory=Sampling)
    path: str | None = None

    @property
    def generative(self) -> bool:
        return self.kind in GENERATIVE

    def content_hash(self) -> str:
        """What the scores depend on: kind, measured suites and the items (not the gate's numbers)."""
        doc = {"kind": self.kind, "of": list(self.of), "items": list(self.items)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def limited(self, max_items: int | None) -> Suite:
        """The suite's own sampling, then at most `max_items` items (stratified by category)."""
        cap = _smaller(self.sampling.max_items, max_items)
        if cap is None or len(self.items) <= cap:
            return self
        return replace(self, items=tuple(sample(self.items, cap, self.sampling.seed)))

    def with_items(self, items: Iterable[Mapping[str, Any]]) -> Suite:
        return replace(self, items=tuple(dict(i) for i in items))


def _smaller(a: int | None, b: int | None) -> int | None:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else None


def sample(items: Sequence[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` items, the same ones for the same seed: categories take turns, each shuffled by the seed."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(str(item.get("category", "")), []).append(item)
    rng = random.Random(seed)
    queues = []
    for category in sorted(groups):
        group = list(groups[category])
        rng.shuffle(group)
        queues.append(group)
    out: list[dict[str, Any]] = []
    while len(out) < n and any(queues):
        for queue in queues:
            if queue and len(out) < n:
                out.append(queue.pop(0))
    return out


# --------------------------------------------------------------------------- items


def normalize_item(raw: Any, where: str) -> dict[str, Any]:
    """Check one BFCL-format item and fill the defaults; SuiteError names `where` on a problem."""
    if not isinstance(raw, Mapping):
        raise SuiteError(f"{where}: an item is a JSON object")
    question = raw.get("question")
    if not isinstance(question, list) or not question:
        raise SuiteError(f"{where}: 'question' must be a non-empty list of turns (lists of messages)")
    turns = [question] if isinstance(question[0], Mapping) else question  # one turn given flat
    messages = []
    for turn in turns:
        if not isinstance(turn, list):
            raise SuiteError(f"{where}: each turn of 'question' is a list of {{role, content}} messages")
        for m in turn:
            if not isinstance(m, Mapping) or m.get("role") not in ("system", "user", "assistant", "tool"):
                raise SuiteError(f"{where}: a message needs a role of system, user, assistant or tool")
            messages.append(dict(m))
    functions = raw.get("function", [])
    if not isinstance(functions, list) or not all(isinstance(f, Mapping) and isinstance(f.get("name"), str)
                                                  for f in functions):
        raise SuiteError(f"{where}: 'function' must be a list of functions, each with a 'name'")
    truth = raw.get("ground_truth")
    expect = raw.get("expect") or ("ast_match" if truth else "no_call")
    if expect not in ("ast_match", "no_call"):
        raise SuiteError(f"{where}: 'expect' is 'ast_match' or 'no_call', not {expect!r}")
    if expect == "ast_match":
        if not isinstance(truth, list) or not truth:
            raise SuiteError(f"{where}: 'ast_match' needs a non-empty 'ground_truth' list")
        names = {f["name"] for f in functions}
        for call in truth:
            if not isinstance(call, Mapping) or len(call) != 1:
                raise SuiteError(f"{where}: a ground-truth call is {{function_name: {{param: [values]}}}}")
            ((name, params),) = call.items()
            if name not in names:
                raise SuiteError(f"{where}: ground truth calls {name!r}, which 'function' does not offer")
            if not isinstance(params, Mapping) or not all(isinstance(v, list) for v in params.values()):
                raise SuiteError(f"{where}: parameters of {name!r} map to lists of acceptable values")
    category = raw.get("category") or infer_category(truth if expect == "ast_match" else None, functions)
    item_id = raw.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise SuiteError(f"{where}: every item needs a string 'id'")
    return {"id": item_id, "category": str(category), "question": [messages], "function": [dict(f) for f in functions],
            "ground_truth": truth if expect == "ast_match" else None, "expect": expect}


def infer_category(truth: Sequence[Mapping[str, Any]] | None, functions: Sequence[Any]) -> str:
    """BFCL's category of an item from its expected calls and offered functions: no call →
    irrelevance; one call → simple (one function offered) or multiple (several offered);
    several calls → parallel (all of one function) or parallel_multiple (across functions)."""
    if not truth:
        return "irrelevance"
    if len(truth) == 1:
        return "simple" if len(functions) <= 1 else "multiple"
    called = {name for call in truth for name in call}
    return "parallel" if len(called) == 1 else "parallel_multiple"


def messages_of(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(m) for turn in item["question"] for m in turn]


# --------------------------------------------------------------------------- regression items


def _acceptable(value: Any) -> list[Any]:
    """A logged argument as the one acceptable value, in the checker's shapes."""
    if isinstance(value, Mapping):
        return [{k: [v] for k, v in value.items()}]
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return [[{k: [x] for k, x in v.items()} for v in value]]
    return [value]


@dataclass(frozen=True)
class LoggedAnswer:
    """What a log-miner example (`{"messages", "tools", "meta"}`) expects: the conversation up to
    the model's first turn after the last user message, and that turn (as logged, or as corrected
    by feedback): its calls in ground-truth shape, or none when it answered in text."""

    question: list[dict[str, Any]]
    functions: list[dict[str, Any]]
    calls: list[dict[str, dict[str, list[Any]]]]
    text: str  # the turn's text (empty when it only called)
    origin: str  # run ids, else the corpus origin, else ""


def logged_answer(line: Mapping[str, Any]) -> LoggedAnswer | None:
    """None when the example has no user message or no answer after it. ValueError for a call
    whose arguments are not a JSON object."""
    messages = list(line.get("messages") or [])
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        return None
    answer_at = next((i for i in range(last_user + 1, len(messages)) if messages[i].get("role") == "assistant"),
                     None)
    if answer_at is None:
        return None
    answer = messages[answer_at]
    calls = []
    for c in answer.get("tool_calls") or []:
        fn = c.get("function") if isinstance(c.get("function"), Mapping) else c
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            args = json.loads(args)
        if not isinstance(args, Mapping):
            raise ValueError(f"the arguments of {fn.get('name')!r} are not a JSON object")
        calls.append({fn["name"]: {k: _acceptable(v) for k, v in args.items()}})
    meta = line.get("meta") or {}
    origin = "-".join(str(r) for r in meta.get("run_ids") or []) or str(meta.get("origin") or "")
    return LoggedAnswer([dict(m) for m in messages[:answer_at]], [dict(function_of(t)) for t in line.get("tools") or []],
                        calls, str(answer.get("content") or "").strip(), origin)


def regression_items(lines: Iterable[Mapping[str, Any]], prefix: str = "regression") -> list[dict[str, Any]]:
    """Items from log-miner examples (`logged_answer`): the logged turn is what is expected, its
    calls, or no call when it answered directly."""
    items = []
    for n, line in enumerate(lines, start=1):
        logged = logged_answer(line)
        if logged is None:
            continue
        calls = logged.calls
        kind = "call" if len(calls) == 1 else "parallel" if calls else "no_call"
        items.append({
            "id": f"{prefix}-{n}-{logged.origin or n}"[:200], "category": f"regression_{kind}",
            "question": [logged.question], "function": logged.functions,
            "ground_truth": calls or None, "expect": "ast_match" if calls else "no_call",
        })
    return items


# --------------------------------------------------------------------------- files


def _header(doc: Any, where: str) -> dict[str, Any] | None:
    if isinstance(doc, Mapping) and "suite" in doc:
        if not isinstance(doc["suite"], Mapping):
            raise SuiteError(f"{where}: 'suite' is an object")
        return dict(doc["suite"])
    return None


def _number(header: Mapping[str, Any], key: str, where: str, *, lo: float = 0.0,
            hi: float | None = None) -> float | None:
    value = header.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise SuiteError(f"{where}: '{key}' must be a number {bound}")
    return float(value)


def read_items_file(path: Path) -> list[dict[str, Any]]:
    items = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SuiteError(f"{where}: not JSON ({exc.msg})") from None
            if _header(doc, where) is not None:
                continue
            items.append(normalize_item(doc, where))
    return items


def load_suite(path: str | Path) -> Suite:
    """One suite file; SuiteError on anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    header: dict[str, Any] | None = None
    items: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SuiteError(f"{where}: not JSON ({exc.msg})") from None
            found = _header(doc, where)
            if found is not None:
                if header is not None or items:
                    raise SuiteError(f"{where}: the suite header must be the first line, and only one")
                header = found
                continue
            items.append(normalize_item(doc, where))
    header = header or {}
    where = str(path)
    kind = header.get("kind", AST)
    if kind not in KINDS:
        raise SuiteError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    name = header.get("name") or path.stem
    if not isinstance(name, str):
        raise SuiteError(f"{where}: 'name' is a string")
    extra = header.get("items") or []
    if isinstance(extra, str):
        extra = [extra]
    for pattern in extra:
        matches = sorted(glob.glob(str(path.parent / pattern)))
        if not matches:
            raise SuiteError(f"{where}: 'items' pattern {pattern!r} matches no file")
        for match in matches:
            items.extend(read_items_file(Path(match)))
    seen: set[str] = set()
    for item in items:
        if item["id"] in seen:
            raise SuiteError(f"{where}: item id {item['id']!r} appears twice")
        seen.add(item["id"])
    sampling_doc = header.get("sample") or {}
    if not isinstance(sampling_doc, Mapping):
        raise SuiteError(f"{where}: 'sample' is an object ({{max_items, seed}})")
    max_items = sampling_doc.get("max_items")
    if max_items is not None and (not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 1):
        raise SuiteError(f"{where}: 'sample.max_items' is a positive integer")
    of = header.get("of") or []
    if isinstance(of, str):
        of = [of]
    source = header.get("source")
    if kind == REGRESSION and not source and not items:
        raise SuiteError(f"{where}: a regression suite needs a 'source' (val.jsonl path, s3:// URI or "
                         f"{CANDIDATE_DATASET!r})")
    if kind in GENERATIVE and kind != REGRESSION and not items:
        raise SuiteError(f"{where}: an {kind} suite needs items")
    if kind not in GENERATIVE and items:
        raise SuiteError(f"{where}: a {kind} suite measures other suites' generations and has no items")
    return Suite(
        name=name, kind=kind, items=tuple(items), primary=bool(header.get("primary", False)),
        threshold=_number(header, "threshold", where, hi=1.0), tolerance=_number(header, "tolerance", where),
        category_tolerance=_number(header, "category_tolerance", where),
        of=tuple(str(s) for s in of), source=str(source) if source else None,
        sampling=Sampling(max_items=max_items, seed=int(sampling_doc.get("seed", 0))), path=str(path),
    )


def suite_paths(entries: Iterable[str | Path]) -> list[Path]:
    """Files and directories (every *.jsonl in it, sorted) -> suite files, in order."""
    out: list[Path] = []
    for entry in entries:
        p = Path(entry)
        if p.is_dir():
            out.extend(sorted(p.glob("*.jsonl")))
        else:
            out.append(p)
    return out


def load_suites(entries: Iterable[str | Path]) -> list[Suite]:
    """Suites from files/directories; names must be unique, at most one primary, `of` must resolve."""
    suites = [load_suite(p) for p in suite_paths(entries)]
    if not suites:
        raise SuiteError("no suite files given")
    names = [s.name for s in suites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SuiteError(f"suite names must be unique: {', '.join(dupes)}")
    primaries = [s.name for s in suites if s.primary]
    if len(primaries) > 1:
        raise SuiteError(f"only one suite can be primary: {', '.join(primaries)}")
    generative = {s.name for s in suites if s.generative}
    for s in suites:
        unknown = [n for n in s.of if n not in generative]
        if unknown:
            raise SuiteError(f"suite {s.name!r} measures {', '.join(unknown)}, which are not ast/regression suites")
    return suites


def with_primary(suites: Sequence[Suite], name: str) -> list[Suite]:
    """The suites with `name` as the one primary (the flag of any other cleared); SuiteError when
    no ast/regression suite has that name."""
    found = [s for s in suites if s.name == name]
    if not found or not found[0].generative:
        known = ", ".join(s.name for s in suites if s.generative) or "none"
        raise SuiteError(f"primary suite {name!r} is not among the ast/regression suites ({known})")
    return [replace(s, primary=s.name == name) for s in suites]


def primary_suite(suites: Sequence[Suite]) -> Suite:
    """The suite flagged primary, else the first ast suite."""
    for s in suites:
        if s.primary:
            return s
    for s in suites:
        if s.kind == AST:
            return s
    raise SuiteError("no primary suite: flag one with \"primary\": true or include an ast suite")
