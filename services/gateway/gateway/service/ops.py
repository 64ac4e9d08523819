"""Operator use cases: ask for a retrain, read the audit log, screen texts for prompt injection.
Every call is audited."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from contracts import DatasetOptions, LoraOptions, RetrainRequested, deterministic_id, new_id

from screening import Screener, Verdict
from screening.policy import excerpt

from ..domain import AuditEntry, Identity, RetrainSubmission, ScreenMarkSubmission, ScreenSubmission
from ..ports import AuditLog, OpsStore, Publisher, RunStore, ScreeningMarks


class OpsService:
    def __init__(self, store: OpsStore, audit: AuditLog, publisher: Publisher, screener: Screener,
                 marks: ScreeningMarks, runs: RunStore) -> None:
        self.store = store
        self.runs = runs
        self.audit = audit
        self.publisher = publisher
        self.screener = screener
        self.marks = marks

    async def mark(self, who: Identity, body: ScreenMarkSubmission, client_ip: str | None) -> int:
        """Store operators' verdicts on texts (false positives as `benign`, misses as `malicious`)."""
        count = await self.marks.add(body.marks, who.subject)
        labels = [m.label for m in body.marks]
        await self.audit.record(AuditEntry(
            subject=who.subject, role=who.role.label, action="ops.screen.mark", outcome="ok", client_ip=client_ip,
            details={"marks": count, "benign": labels.count("benign"), "malicious": labels.count("malicious")}))
        return count

    async def mark_lines(self, who: Identity, limit: int, client_ip: str | None) -> list[dict]:
        """The marks as corpus lines `python -m screening.train --extra` reads, newest first."""
        rows = await self.marks.recent(limit)
        await self.audit.record(AuditEntry(subject=who.subject, role=who.role.label, action="ops.screen.marks.read",
                                           outcome="ok", client_ip=client_ip, details={"limit": limit}))
        return [{"text": r["text"], "label": r["label"], "category": "operator_mark", "source": r["source"],
                 "note": r["note"], "marked_by": r["marked_by"], "marked_at": r["marked_at"].isoformat()}
                for r in rows]

    async def flagged(self, who: Identity, since: datetime, limit: int, client_ip: str | None) -> list[dict[str, Any]]:
        """Runs the injection screen fired on, newest first, each with what fired: a user or system
        message the gateway flagged or blocked, a tool result the runner quarantined or flagged
        (with an excerpt, so an operator can mark a false positive: `POST /v1/ops/screen/marks`)."""
        rows = await self.runs.screened(since, limit)
        await self.audit.record(AuditEntry(subject=who.subject, role=who.role.label, action="ops.screen.flagged.read",
                                           outcome="ok", client_ip=client_ip,
                                           details={"since": since.isoformat(), "limit": limit, "runs": len(rows)}))
        return [{"run_id": r["run_id"], "subject": r["subject"], "status": r["status"],
                 "created_at": r["created_at"], "model_version": r["model_version"],
                 "flags": [*r["screening"], *map(_step_flag, r["screened_steps"])]} for r in rows]

    async def screen(self, who: Identity, body: ScreenSubmission, client_ip: str | None) -> list[Verdict]:
        """The verdict on each text, by the screener the gateway's own policy uses (same rules,
        classifier and mode), so a corpus measured here is measured as served."""
        verdicts = [self.screener.screen(item.text) for item in body.items]
        await self.audit.record(AuditEntry(
            subject=who.subject, role=who.role.label, action="ops.screen", outcome="ok", client_ip=client_ip,
            details={"items": len(verdicts), "flagged": sum(v.flagged for v in verdicts), **self.screener.describe()}))
        return verdicts

    async def request_retrain(self, who: Identity, body: RetrainSubmission, client_ip: str | None) -> str:
        request_id = new_id()
        msg = RetrainRequested.create(
            correlation_id=request_id,
            message_id=deterministic_id("retrain-requested", request_id),
            request_id=request_id,
            requested_by=who.subject,
            reason=body.reason,
            dataset=body.dataset or DatasetOptions(),
            training=body.training or LoraOptions(),
            base_model=body.base_model,
        )
        entry = AuditEntry(
            subject=who.subject, role=who.role.label, action="ops.retrain", outcome="ok", target=request_id,
            client_ip=client_ip, details=body.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
        )
        await self.store.request(entry, msg)
        await self.publisher.publish_now(msg)
        return request_id

    async def recent_audit(self, who: Identity, limit: int, client_ip: str | None) -> list[AuditEntry]:
        await self.audit.record(
            AuditEntry(subject=who.subject, role=who.role.label, action="ops.audit.read", outcome="ok",
                       client_ip=client_ip, details={"limit": limit})
        )
        return await self.audit.recent(limit)


def _step_flag(step: dict[str, Any]) -> dict[str, Any]:
    """A screened tool result as a flag: the step, its tool, the verdict and an excerpt of the output."""
    result = step.get("tool_result")
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    return {"source": "tool", "step": step.get("index"), "tool": (step.get("tool_call") or {}).get("name"),
            **step["screening"], "excerpt": excerpt(text)}
