"""In-memory fakes of the gateway's own ports (never of a library)."""

from __future__ import annotations

import dataclasses

from contracts import Contract

from gateway.domain import ApiKeyRecord, AuditEntry, NewFeedback, NewRun, RunFinish, RunRecord, TaggedRun


class FakeRunStore:
    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self.outbox: list[Contract] = []
        self.inbox: set[str] = set()
        self.feedback: list[NewFeedback] = []
        self.tags: dict[str, dict[str, str]] = {}

    async def create(self, run: NewRun, message: Contract) -> None:
        self.runs[run.run_id] = RunRecord(run_id=run.run_id, subject=run.subject, status="queued",
                                          created_at=run.created_at, screening=run.request.get("screening", []))
        self.tags[run.run_id] = dict(run.request.get("metadata") or {})
        self.outbox.append(message)

    async def refuse(self, run: NewRun, error_code: str, error: str) -> None:
        self.runs[run.run_id] = RunRecord(run_id=run.run_id, subject=run.subject, status="refused",
                                          created_at=run.created_at, error_code=error_code, error=error,
                                          screening=run.request.get("screening", []))

    async def get(self, run_id: str) -> RunRecord | None:
        return self.runs.get(run_id)

    async def list(self, subject: str | None, metadata: dict[str, str], limit: int) -> list[TaggedRun]:
        runs = [TaggedRun(r, self.tags.get(r.run_id, {})) for r in reversed(self.runs.values())
                if subject in (None, r.subject)]
        return [t for t in runs if metadata.items() <= t.metadata.items()][:limit]

    async def screened(self, since, limit: int) -> list[dict]:
        out = []
        for r in reversed(self.runs.values()):
            steps = [s for s in r.steps or [] if isinstance(s.get("screening"), dict)]
            if r.created_at >= since and (r.screening or steps):
                out.append({"run_id": r.run_id, "subject": r.subject, "status": r.status, "created_at": r.created_at,
                            "model_version": r.model_version, "screening": r.screening, "screened_steps": steps})
        return out[:limit]

    async def finish(self, finish: RunFinish, *, message_id: str, message_type: str) -> RunRecord | None:
        if message_id in self.inbox:
            return None
        self.inbox.add(message_id)
        run = self.runs.get(finish.run_id)
        if run is None or run.finished:
            return None
        fields = {f.name: getattr(finish, f.name) for f in dataclasses.fields(finish) if f.name != "run_id"}
        if not finish.screening:  # the runner's record replaces the gateway's when it has one
            del fields["screening"]
        self.runs[finish.run_id] = dataclasses.replace(run, **fields)
        return self.runs[finish.run_id]

    async def add_feedback(self, feedback: NewFeedback, message: Contract) -> None:
        self.feedback.append(feedback)
        self.outbox.append(message)


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[Contract] = []
        self.on_publish = None  # lets a test play the runner

    async def publish_now(self, *messages: Contract) -> None:
        self.published.extend(messages)
        if self.on_publish is not None:
            for m in messages:
                self.on_publish(m)


class FakeLimiter:
    def __init__(self, allowed: int = 10**9, retry_after: int = 7) -> None:
        self.allowed = allowed
        self.retry_after = retry_after
        self.hits: list[tuple[str, str]] = []

    async def hit(self, limit: str, key: str) -> int | None:
        self.hits.append((limit, key))
        count = sum(1 for h in self.hits if h == (limit, key))
        return None if count <= self.allowed else self.retry_after


class FakeAuditLog:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    async def recent(self, limit: int) -> list[AuditEntry]:
        return list(reversed(self.entries))[:limit]


class FakeApiKeys:
    def __init__(self, *records: ApiKeyRecord) -> None:
        self.records = {r.key_id: r for r in records}
        self.touched: list[str] = []

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        return self.records.get(key_id)

    async def touch(self, key_id: str) -> None:
        self.touched.append(key_id)

    async def revoke(self, key_id: str, audit: AuditEntry) -> bool:
        rec = self.records.get(key_id)
        if rec is None or rec.revoked:
            return False
        self.records[key_id] = ApiKeyRecord(rec.key_id, rec.secret_hash, rec.role, rec.name, revoked=True)
        return True
