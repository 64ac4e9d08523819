"""Move the registry's aliases and tell the runners: the gate's `model.promoted`, an operator's
`model.promote.requested` and `model.rollback.requested`; and file the gate's
`evaluation.completed` on the version (its scores; a failed candidate rejected).

Each command is one transaction: inbox claim + alias move (registry writer, under the alias row
lock) + ModelDeployed in the outbox; published after commit. A command that can never succeed
(unknown version, never evaluated, nothing to roll back to, a digest that is not the registered
one) raises PermanentError: the transaction rolls back, the claim with it, and the message is
dead-lettered with the cause logged. With a model server (Ollama) configured, the version is
pushed there before the move, so `model.deployed` only announces what the server can answer;
a server failure retries the message (nothing was moved).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from contracts import (
    Contract,
    EvaluationCompleted,
    ModelDeployed,
    ModelPromoted,
    ModelPromoteRequested,
    ModelRollbackRequested,
    deterministic_id,
)
from modelregistry import GateEvaluation, ModelVersion, RegistryError
from modelregistry.write import AliasMove
from servicekit.logs import log_fields
from servicekit.messaging import PermanentError

from ..metrics import ExporterMetrics
from ..ports import Artifacts, DeployedFactory, Deployments, ModelServer

logger = logging.getLogger("exporter.deploy")


@contextlib.contextmanager
def registry_refusal(message_type: str, counted: Callable[[], None] = lambda: None) -> Iterator[None]:
    """A command the registry's writer refuses can never succeed: PermanentError, so the
    transaction (inbox claim included) rolls back and the message is dead-lettered with the cause."""
    try:
        yield
    except (RegistryError, PermanentError) as exc:
        counted()
        raise PermanentError(f"{message_type} refused, nothing changed: {exc}") from exc


@dataclass(frozen=True)
class _Command:
    msg: Contract
    cause: str  # ModelDeployed.cause: promoted | operator | rollback
    actor: str
    reason: str


class DeployModels:
    def __init__(self, deployments: Deployments, artifacts: Artifacts, metrics: ExporterMetrics,
                 server: ModelServer | None = None) -> None:
        self.deployments = deployments
        self.artifacts = artifacts
        self.metrics = metrics
        self.server = server

    async def promoted(self, msg: ModelPromoted) -> ModelDeployed | None:
        """The gate passed: previous ← production, production ← the candidate (its evaluated quant)."""
        cmd = _Command(msg, "promoted", "evaluator", f"evaluation {msg.evaluation_id} passed the gate")

        def check(move: AliasMove) -> None:
            if msg.sha256 and msg.sha256 != move.gguf.sha256:
                raise PermanentError(f"{msg.model_version} {move.gguf.quantization}: the gate evaluated sha256 "
                                     f"{msg.sha256}, the registry holds {move.gguf.sha256}")
            if msg.gguf_uri and msg.gguf_uri != move.gguf.uri:
                raise PermanentError(f"{msg.model_version}: the gate evaluated {msg.gguf_uri}, "
                                     f"the registry serves {move.gguf.uri}")

        ollama = await self._push(cmd, msg.model_version, msg.quantization)
        return await self._move(cmd, ollama, check, lambda deployed: self.deployments.promote(
            msg.envelope.message_id, msg.envelope.message_type, msg.model_version, cause=cmd.cause, actor=cmd.actor,
            quantization=msg.quantization, evaluation_id=msg.evaluation_id, reason=cmd.reason, deployed=deployed,
        ))

    async def promote_requested(self, msg: ModelPromoteRequested) -> ModelDeployed | None:
        """An operator makes a registered, evaluated version production."""
        cmd = _Command(msg, "operator", msg.requested_by, msg.reason or "operator promotion")
        ollama = await self._push(cmd, msg.model_version, msg.quantization)
        return await self._move(cmd, ollama, None, lambda deployed: self.deployments.promote(
            msg.envelope.message_id, msg.envelope.message_type, msg.model_version, cause=cmd.cause, actor=cmd.actor,
            quantization=msg.quantization, evaluation_id=None, reason=cmd.reason, deployed=deployed,
        ))

    async def rollback_requested(self, msg: ModelRollbackRequested) -> ModelDeployed | None:
        """An operator moves production back to previous (production ↔ previous)."""
        cmd = _Command(msg, "rollback", msg.requested_by, msg.reason or "operator rollback")
        previous = (await self.deployments.aliases()).get("previous")
        ollama = await self._push(cmd, previous, None) if previous else None
        return await self._move(cmd, ollama, None, lambda deployed: self.deployments.rollback(
            msg.envelope.message_id, msg.envelope.message_type, actor=cmd.actor, reason=cmd.reason, deployed=deployed,
        ))

    async def evaluated(self, msg: EvaluationCompleted) -> ModelVersion | None:
        """The gate's verdict, passed or failed, is recorded on the version (its scores and primary
        score in `metrics`); a failed candidate is also marked `rejected` (it can never be promoted),
        while a passed one waits for its model.promoted. The version as recorded; None for a
        duplicate delivery."""
        env = msg.envelope
        fields = log_fields(message_id=env.message_id, message_type=env.message_type, version=msg.candidate)
        reason = None if msg.passed else "; ".join(msg.reasons)[:1000] or "failed the gate"
        with registry_refusal(env.message_type):
            recorded = await self.deployments.record_evaluation(env.message_id, env.message_type, msg.candidate,
                                                                gate_evaluation(msg), reject_reason=reason)
        if recorded is None:
            logger.info("duplicate delivery ignored", extra=fields)
            return None
        self.metrics.messages_received.labels(type=env.message_type).inc()
        if reason is None:
            logger.info("evaluation %s of %s recorded: passed with %s", msg.evaluation_id, msg.candidate,
                        msg.quantization, extra=fields)
        else:
            logger.info("candidate %s rejected by evaluation %s: %s", msg.candidate, msg.evaluation_id, reason,
                        extra=fields)
        return recorded

    # ------------------------------------------------------------------ steps

    async def _move(self, cmd: _Command, ollama: str | None, check: Callable[[AliasMove], None] | None,
                    run: Callable[[DeployedFactory], Awaitable[AliasMove | None]]) -> ModelDeployed | None:
        """Run the move with the event factory (the store publishes what it staged after commit)."""
        env = cmd.msg.envelope
        fields = log_fields(message_id=env.message_id, message_type=env.message_type, cause=cmd.cause, actor=cmd.actor)
        staged: list[ModelDeployed] = []
        deployed = self.deployed_factory(cmd.msg, cmd.cause, staged, ollama=ollama, check=check)

        refused = self.metrics.deployments.labels(cause=cmd.cause, outcome="refused")
        with registry_refusal(env.message_type, refused.inc):
            move = await run(deployed)
        if move is None:
            logger.info("duplicate delivery ignored", extra=fields)
            return None
        self.metrics.messages_received.labels(type=env.message_type).inc()
        if not staged:
            self.metrics.deployments.labels(cause=cmd.cause, outcome="unchanged").inc()
            logger.info("%s is production already: nothing moved", move.version.version, extra=fields)
            return None
        self.metrics.deployments.labels(cause=cmd.cause, outcome="deployed").inc()
        self.metrics.production_changed(move.version.version, move.previous_version)
        logger.info("production is %s (%s, %s) after %s by %s; previous %s", move.version.version,
                    move.gguf.quantization, move.gguf.uri, cmd.cause, cmd.actor, move.previous_version, extra=fields)
        return staged[0]

    def deployed_factory(self, msg: Contract, cause: str, staged: list[ModelDeployed], *, ollama: str | None = None,
                         check: Callable[[AliasMove], None] | None = None) -> DeployedFactory:
        """The `model.deployed` a move announces (none when nothing moved), appended to `staged`."""
        env = msg.envelope

        def deployed(move: AliasMove) -> ModelDeployed | None:
            if check is not None:
                check(move)
            if not move.changed:
                return None
            event = ModelDeployed.create(
                correlation_id=env.correlation_id, causation=msg,
                message_id=deterministic_id("model-deployed", env.message_id),
                model_version=move.version.version, gguf_uri=move.gguf.uri, sha256=move.gguf.sha256,
                alias="production", previous_version=move.previous_version, cause=cause, ollama_model=ollama,
            )
            staged.append(event)
            return event

        return deployed

    async def push(self, msg: Contract, cause: str, actor: str, version: str) -> str | None:
        """With a model server: push `version` before a move that will serve it (its model name)."""
        return await self._push(_Command(msg, cause, actor, ""), version, None)

    async def _push(self, cmd: _Command, version: str, quantization: str | None) -> str | None:
        """With a model server: the version's GGUF + Modelfile pushed and checked; its model name."""
        if self.server is None:
            return None
        target = await self.deployments.version(version)
        if target is None:
            return None  # the move refuses it with the registry's reason
        gguf = target.gguf(quantization)
        if gguf is None:
            return None  # likewise
        path = await self.artifacts.local_model_file(gguf)
        modelfile_file = next((f for f in target.files if f.kind == "modelfile"), None)
        modelfile = await self.artifacts.read_text(modelfile_file.uri) if modelfile_file else None
        current = (await self.deployments.aliases()).get("production")
        try:
            name = await self.server.publish(target, path, modelfile, current)
        except Exception:
            self.metrics.server_pushes.labels(outcome="failed").inc()
            raise  # retried within the delivery limit; nothing has moved
        self.metrics.server_pushes.labels(outcome="pushed").inc()
        logger.info("%s pushed to the model server as %s", target.version, name,
                    extra=log_fields(message_id=cmd.msg.envelope.message_id))
        return name


def gate_evaluation(msg: EvaluationCompleted) -> GateEvaluation:
    """What the registry records of a verdict: the candidate's score per suite and the primary suite."""
    return GateEvaluation(evaluation_id=msg.evaluation_id, passed=msg.passed, quantization=msg.quantization,
                          primary_suite=msg.primary_suite, scores={s.suite: s.score for s in msg.candidate_scores})
