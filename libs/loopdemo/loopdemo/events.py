"""Following one retrain through the loop by its events alone.

`EventFeed` is a private queue (exclusive, auto-delete: it goes when the demo does) bound to
the events exchange for the learning-loop routing keys; it hands over each message as its
contract. `LoopTracker` (no I/O) decides which messages belong to our retrain and what stage
the loop is in:

    retrain.requested ─▶ dataset.built ─▶ training.requested ─▶ training.progress* ─▶
    training.completed ─▶ export.completed ─▶ evaluation.completed ─▶ model.promoted ─▶ model.deployed

Ours are recognised by the ids each event carries (dataset → job → model version), with the
correlation id (the retrain's request id, carried along by every service) as a second key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from contracts import (
    Contract,
    DatasetBuilt,
    EvaluationCompleted,
    ExportCompleted,
    ExportFailed,
    ModelDeployed,
    ModelPromoted,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)
from contracts.topology import EVENTS_EXCHANGE

logger = logging.getLogger("loopdemo.events")

FOLLOWED: tuple[type[Contract], ...] = (
    DatasetBuilt, TrainingRequested, TrainingProgress, TrainingCompleted, TrainingFailed,
    ExportCompleted, ExportFailed, EvaluationCompleted, ModelPromoted, ModelDeployed,
)
_BY_KEY = {c.routing_key: c for c in FOLLOWED}


class LoopFailedError(Exception):
    """The loop stopped short of a deployed model; the message says where and why."""


# --------------------------------------------------------------------------- tracking (no I/O)


@dataclass(frozen=True)
class Step:
    """What one of our events means for the display: the stage it belongs to and a line."""

    stage: str  # dataset | training | export | evaluation | promotion
    text: str
    done: bool = False  # the stage finished with this event
    failed: bool = False


@dataclass
class LoopTracker:
    request_id: str
    dataset_id: str | None = None
    dataset_counts: dict[str, int] = field(default_factory=dict)
    source_run_ids: list[str] = field(default_factory=list)
    job_id: str | None = None
    progress: TrainingProgress | None = None
    training: TrainingCompleted | None = None
    export: ExportCompleted | None = None
    evaluation: EvaluationCompleted | None = None
    promoted: ModelPromoted | None = None
    deployed: ModelDeployed | None = None
    failure: str | None = None

    @property
    def model_version(self) -> str | None:
        return self.export.model_version if self.export else None

    @property
    def finished(self) -> bool:
        return self.failure is not None or self.deployed is not None

    def _ours(self, msg: Contract, *, job_id: str | None = None, dataset_id: str | None = None) -> bool:
        if msg.envelope.correlation_id == self.request_id:
            return True
        if job_id is not None and job_id == self.job_id:
            return True
        return dataset_id is not None and dataset_id == self.dataset_id

    def accept(self, msg: Contract) -> Step | None:
        """Take one event; a Step when it is about our retrain, None otherwise."""
        if isinstance(msg, DatasetBuilt):
            if not self._ours(msg, dataset_id=msg.dataset_id):
                return None
            self.dataset_id = msg.dataset_id
            self.dataset_counts = dict(msg.counts)
            self.source_run_ids = list(msg.source_run_ids)
            counts = msg.counts
            return Step("dataset", f"dataset {msg.dataset_id[:8]} v{msg.version}: {counts.get('train', '?')} train / "
                                   f"{counts.get('val', '?')} val examples from {len(msg.source_run_ids)} runs", done=True)
        if isinstance(msg, TrainingRequested):
            if not self._ours(msg, dataset_id=msg.dataset_id):
                return None
            self.dataset_id = self.dataset_id or msg.dataset_id
            self.job_id = msg.job_id
            steps = msg.options.max_steps
            return Step("training", f"training job {msg.job_id[:8]} requested on {msg.base_model}"
                                    + (f", {steps} steps" if steps else ""))
        if isinstance(msg, TrainingProgress):
            if not self._ours(msg, job_id=msg.job_id):
                return None
            self.job_id = self.job_id or msg.job_id
            self.progress = msg
            parts = [f"step {msg.step}/{msg.total_steps}"]
            if msg.loss is not None:
                parts.append(f"loss {msg.loss:.3f}")
            if msg.tokens_per_s:
                parts.append(f"{msg.tokens_per_s:.0f} tok/s")
            if msg.eta_s is not None:
                parts.append(f"eta {msg.eta_s:.0f} s")
            return Step("training", ", ".join(parts))
        if isinstance(msg, TrainingCompleted):
            if not self._ours(msg, job_id=msg.job_id):
                return None
            self.job_id = self.job_id or msg.job_id
            self.training = msg
            loss = msg.metrics.get("final_loss")
            return Step("training", f"adapter trained in {msg.steps} steps"
                                    + (f", final loss {loss:.3f}" if loss is not None else ""), done=True)
        if isinstance(msg, TrainingFailed):
            if not self._ours(msg, job_id=msg.job_id):
                return None
            self.failure = f"training failed: {msg.reason}"
            return Step("training", self.failure, failed=True)
        if isinstance(msg, ExportCompleted):
            if not self._ours(msg, job_id=msg.job_id):
                return None
            self.export = msg
            quants = sorted({f.quantization for f in msg.files if f.kind == "gguf" and f.quantization})
            return Step("export", f"candidate {msg.model_version} registered: {', '.join(quants) or 'no GGUF'} "
                                  f"in {msg.duration_s:.0f} s", done=True)
        if isinstance(msg, ExportFailed):
            if not self._ours(msg, job_id=msg.job_id):
                return None
            self.failure = f"export failed: {msg.reason}"
            return Step("export", self.failure, failed=True)
        if isinstance(msg, EvaluationCompleted):
            if not (self._ours(msg, job_id=msg.job_id) or msg.candidate == self.model_version):
                return None
            self.evaluation = msg
            text = _evaluation_text(msg)
            if not msg.passed:
                self.failure = "the gate rejected the candidate: " + ("; ".join(msg.reasons) or "no reason given")
                return Step("evaluation", text, failed=True)
            return Step("evaluation", text, done=True)
        if isinstance(msg, ModelPromoted):
            if not (self._ours(msg, job_id=msg.job_id) or msg.model_version == self.model_version):
                return None
            self.promoted = msg
            return Step("promotion", f"{msg.model_version} promoted ({msg.quantization})")
        if isinstance(msg, ModelDeployed):
            mine = msg.model_version in {self.model_version, self.promoted.model_version if self.promoted else None}
            if not mine or msg.model_version is None:
                return None
            self.deployed = msg
            return Step("promotion", f"{msg.model_version} deployed as {msg.alias}"
                                     + (f" (was {msg.previous_version})" if msg.previous_version else ""), done=True)
        return None


def _evaluation_text(msg: EvaluationCompleted) -> str:
    def scores(items: list[Any]) -> str:
        # latency suites score seconds (p95), the others a share
        return ", ".join(f"{s.suite} {s.score:.2f} s" if "latency" in s.suite else f"{s.suite} {s.score * 100:.0f}%"
                         for s in items) or "–"

    verdict = "passed" if msg.passed else "failed"
    quant = f" on {msg.quantization}" if msg.quantization else ""
    text = f"gate {verdict}{quant}: candidate {scores(msg.candidate_scores)} vs {msg.baseline or 'production'} " \
           f"{scores(msg.baseline_scores)}"
    if msg.reasons and not msg.passed:
        text += " — " + "; ".join(msg.reasons)
    return text


def decode(routing_key: str, body: bytes) -> Contract | None:
    """The contract a message of the events exchange carries; None for keys we do not follow
    or bodies that do not parse (logged: someone else's problem, not a reason to stop)."""
    contract = _BY_KEY.get(routing_key)
    if contract is None:
        return None
    try:
        return contract.model_validate_json(body)
    except ValidationError as exc:
        logger.warning("unreadable %s message: %s", routing_key, exc.errors()[:1])
        return None


# --------------------------------------------------------------------------- the queue


class EventFeed:
    """A private queue on the events exchange; `async with EventFeed(url) as feed: await feed.next(5)`."""

    def __init__(self, broker_url: str, contracts: tuple[type[Contract], ...] = FOLLOWED) -> None:
        self.broker_url = broker_url
        self.contracts = contracts
        self.queue_name = f"loopdemo.{uuid.uuid4().hex[:12]}"
        self._inbox: asyncio.Queue[Contract] = asyncio.Queue()
        self._connection: Any = None

    async def __aenter__(self) -> EventFeed:
        import aio_pika

        try:
            self._connection = await aio_pika.connect(self.broker_url, timeout=15)
        except (OSError, aio_pika.exceptions.AMQPError) as exc:
            raise LoopFailedError(f"cannot reach RabbitMQ at {_safe(self.broker_url)}: {exc}") from None
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
        for contract in self.contracts:
            await queue.bind(exchange, routing_key=contract.routing_key)
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def _on_message(self, message: Any) -> None:
        msg = decode(message.routing_key or "", message.body)
        if msg is not None:
            self._inbox.put_nowait(msg)

    async def next(self, timeout: float) -> Contract | None:
        """The next event, or None when none came within `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self._inbox.get(), timeout)
        return None

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()


def _safe(url: str) -> str:
    """The broker URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.split(':', 1)[0]}@{tail}"
