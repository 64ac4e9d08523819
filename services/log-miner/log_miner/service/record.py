"""Use cases: take in a logged run or a piece of feedback exactly once, classify the run,
keep the taxonomy counts. The inbox claim, the rows and the counts share one transaction.

Logged runs are the hot path (one per agent run): concurrent deliveries share one flush
(`GroupCommit`), i.e. one transaction with set-based statements for the whole batch. The
per-run lock still orders a run against its feedback: the batch holds the locks of all its
runs before it checks their feedback, so feedback that committed first is seen, and feedback
that comes later waits for the batch and then finds the run on record."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from contracts import AgentRunFinished, FeedbackSubmitted, InteractionLogged
from servicekit.batching import GroupCommit
from servicekit.logs import log_fields

from ..domain.examples import example_kind
from ..domain.records import Feedback, Run
from ..domain.taxonomy import Classification, classify
from ..metrics import MinerMetrics
from ..ports import InteractionLog, MinerStore, NewInteraction

logger = logging.getLogger("log_miner.record")


LoggedRun = AgentRunFinished | InteractionLogged  # the run's trajectory (InteractionLogged: the legacy event)


def run_of(msg: LoggedRun) -> Run:
    return Run(
        run_id=msg.run_id, outcome=msg.outcome, messages=list(msg.messages), tools=list(msg.tools),
        steps=list(msg.steps), model_version=msg.model_version, engine=msg.engine, subject=msg.subject,
        logged_at=msg.envelope.occurred_at, usage=msg.usage.model_dump(mode="json"), confidence=msg.confidence,
        session_id=(getattr(msg, "metadata", None) or {}).get("session_id"),
        screening=list(getattr(msg, "screening", None) or []),
    )


def feedback_of(msg: FeedbackSubmitted) -> Feedback:
    return Feedback(
        feedback_id=msg.feedback_id, run_id=msg.run_id, rating=msg.rating, corrected_answer=msg.corrected_answer,
        corrected_tool_calls=msg.corrected_tool_calls, comment=msg.comment, submitted_by=msg.submitted_by,
        submitted_at=msg.envelope.occurred_at,
    )


@dataclass(frozen=True)
class _Taken:
    """What became of a first delivery of InteractionLogged (a duplicate gets None)."""

    classification: Classification
    example_kind: str | None
    inserted: bool  # False: the run is on record under another message id


class RecordRuns:
    def __init__(self, store: MinerStore, log: InteractionLog, metrics: MinerMetrics, *, include_unrated: bool,
                 on_recorded: Callable[[], None] = lambda: None, max_batch: int = 128) -> None:
        self.store = store
        self.log = log
        self.metrics = metrics
        self.include_unrated = include_unrated
        self.on_recorded = on_recorded  # pokes the retrain policy
        self._interactions: GroupCommit[LoggedRun, _Taken | None] = GroupCommit(
            self._record_batch, max_batch=max_batch, name="log-miner-interactions",
            on_flush=metrics.interaction_batch_size.observe,
        )

    def _duplicate(self, msg: LoggedRun | FeedbackSubmitted) -> None:
        env = msg.envelope
        logger.info("duplicate delivery ignored", extra=log_fields(message_id=env.message_id,
                                                                   message_type=env.message_type))

    def _received(self, msg: LoggedRun | FeedbackSubmitted, **fields: object) -> None:
        env = msg.envelope
        self.metrics.messages_received.labels(type=env.message_type).inc()
        logger.info("received %s", env.message_type,
                    extra=log_fields(message_id=env.message_id, message_type=env.message_type, **fields))

    async def interaction(self, msg: LoggedRun) -> bool:
        """True the first time this message arrives."""
        taken = await self._interactions.submit(msg)
        if taken is None:
            self._duplicate(msg)
            return False
        if not taken.inserted:
            logger.warning("run %s already on record under another message id", msg.run_id,
                           extra=log_fields(run_id=msg.run_id, message_id=msg.envelope.message_id))
            return True
        classification = taken.classification
        self.metrics.classified(msg.model_version, classification.label)
        self._received(msg, run_id=msg.run_id, label=classification.label.value,
                       labels=[label.value for label in classification.labels], example_kind=taken.example_kind)
        self.on_recorded()
        return True

    async def _record_batch(self, batch: Sequence[LoggedRun]) -> list[_Taken | None]:
        """One transaction for the batch: claim and lock, classify, insert and count. A later
        copy of a message id in the same batch is a duplicate. Runs are classified as if they
        had no feedback (the common case, no read needed); the insert writes only runs that
        indeed have none, and the others are classified again with their feedback, which the
        locks keep complete."""
        runs = [run_of(msg) for msg in batch]
        judged: dict[int, tuple[NewInteraction, Classification]] = {}
        inserted: set[str] = set()
        async with self.log.batch() as tx:
            claimed = await tx.claim([(m.envelope.message_id, m.envelope.message_type, m.run_id) for m in batch])
            first: dict[str, int] = {}
            for i, msg in enumerate(batch):
                if msg.envelope.message_id in claimed:
                    first.setdefault(msg.envelope.message_id, i)
            if first:
                judged = {i: self._judge(batch[i], runs[i], []) for i in first.values()}
                inserted, stale = await tx.insert_interactions([row for row, _ in judged.values()])
                if stale:
                    again = [first[message_id] for message_id in stale]
                    feedback = await tx.feedback_for([runs[i].run_id for i in again])
                    judged |= {i: self._judge(batch[i], runs[i], feedback.get(runs[i].run_id, [])) for i in again}
                    more, still = await tx.insert_interactions([judged[i][0] for i in again])
                    if still:  # cannot happen while the locks are held
                        raise RuntimeError(f"feedback on runs changed under their locks: {sorted(still)}")
                    inserted |= more
        return [
            _Taken(judged[i][1], judged[i][0].example_kind, inserted=msg.envelope.message_id in inserted)
            if i in judged else None
            for i, msg in enumerate(batch)
        ]

    def _judge(self, msg: LoggedRun, run: Run,
               feedback: list[Feedback]) -> tuple[NewInteraction, Classification]:
        classification = classify(run, feedback)
        kind = example_kind(run, feedback, classification, include_unrated=self.include_unrated)
        row = NewInteraction(msg.envelope.message_id, run, classification.label.value,
                             tuple(label.value for label in classification.labels), kind, len(feedback))
        return row, classification

    async def close(self) -> None:
        """Wait for the logged runs submitted so far to be written."""
        await self._interactions.close()

    async def feedback(self, msg: FeedbackSubmitted) -> bool:
        """True the first time this message arrives. Reclassifies the run when it is on record."""
        fb = feedback_of(msg)
        relabeled: tuple[str, str] | None = None
        async with self.store.transaction() as tx:
            if not await tx.claim(msg.envelope.message_id, msg.envelope.message_type):
                self._duplicate(msg)
                return False
            await tx.lock_run(fb.run_id)
            if not await tx.insert_feedback(msg.envelope.message_id, fb):
                logger.warning("feedback %s already on record", fb.feedback_id)
                return True
            stored = await tx.stored_run(fb.run_id)
            if stored is not None:
                feedback = await tx.feedback_for(fb.run_id)
                classification = classify(stored.run, feedback)
                kind = example_kind(stored.run, feedback, classification, include_unrated=self.include_unrated)
                labels = tuple(label.value for label in classification.labels)
                if (classification.label.value, labels, kind) != (stored.label, stored.labels, stored.example_kind):
                    await tx.update_classification(fb.run_id, classification, kind)
                if classification.label.value != stored.label:
                    await tx.move_count(stored.run.model_version, stored.label, classification.label.value)
                    relabeled = (stored.run.model_version, classification.label.value)
        if relabeled is not None:
            self.metrics.classified(*relabeled)
        self._received(msg, run_id=fb.run_id, feedback_id=fb.feedback_id, run_on_record=stored is not None,
                       relabeled_to=relabeled[1] if relabeled else None)
        self.on_recorded()
        return True
