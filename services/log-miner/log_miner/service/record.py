"""Use cases: take in a logged run or a piece of feedback exactly once, classify the run,
keep the taxonomy counts. The inbox claim, the rows and the counts share one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable

from contracts import FeedbackSubmitted, InteractionLogged
from servicekit.logs import log_fields

from ..domain.examples import example_kind
from ..domain.records import Feedback, Run
from ..domain.taxonomy import classify
from ..metrics import MinerMetrics
from ..ports import MinerStore

logger = logging.getLogger("log_miner.record")


def run_of(msg: InteractionLogged) -> Run:
    return Run(
        run_id=msg.run_id, outcome=msg.outcome, messages=list(msg.messages), tools=list(msg.tools),
        steps=list(msg.steps), model_version=msg.model_version, engine=msg.engine, subject=msg.subject,
        logged_at=msg.envelope.occurred_at, usage=msg.usage.model_dump(mode="json"),
    )


def feedback_of(msg: FeedbackSubmitted) -> Feedback:
    return Feedback(
        feedback_id=msg.feedback_id, run_id=msg.run_id, rating=msg.rating, corrected_answer=msg.corrected_answer,
        corrected_tool_calls=msg.corrected_tool_calls, comment=msg.comment, submitted_by=msg.submitted_by,
        submitted_at=msg.envelope.occurred_at,
    )


class RecordRuns:
    def __init__(self, store: MinerStore, metrics: MinerMetrics, *, include_unrated: bool,
                 on_recorded: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.metrics = metrics
        self.include_unrated = include_unrated
        self.on_recorded = on_recorded  # pokes the retrain policy

    def _duplicate(self, msg: InteractionLogged | FeedbackSubmitted) -> None:
        env = msg.envelope
        logger.info("duplicate delivery ignored", extra=log_fields(message_id=env.message_id,
                                                                   message_type=env.message_type))

    def _received(self, msg: InteractionLogged | FeedbackSubmitted, **fields: object) -> None:
        env = msg.envelope
        self.metrics.messages_received.labels(type=env.message_type).inc()
        logger.info("received %s", env.message_type,
                    extra=log_fields(message_id=env.message_id, message_type=env.message_type, **fields))

    async def interaction(self, msg: InteractionLogged) -> bool:
        """True the first time this message arrives."""
        run = run_of(msg)
        async with self.store.transaction() as tx:
            if not await tx.claim(msg.envelope.message_id, msg.envelope.message_type):
                self._duplicate(msg)
                return False
            await tx.lock_run(run.run_id)
            feedback = await tx.feedback_for(run.run_id)
            classification = classify(run, feedback)
            kind = example_kind(run, feedback, classification, include_unrated=self.include_unrated)
            inserted = await tx.insert_interaction(msg.envelope.message_id, run, classification, kind)
            if inserted:
                await tx.move_count(run.model_version, None, classification.label)
        if not inserted:
            logger.warning("run %s already on record under another message id", run.run_id,
                           extra=log_fields(run_id=run.run_id, message_id=msg.envelope.message_id))
            return True
        self.metrics.classified(run.model_version, classification.label)
        self._received(msg, run_id=run.run_id, label=classification.label.value,
                       labels=[label.value for label in classification.labels], example_kind=kind)
        self.on_recorded()
        return True

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
