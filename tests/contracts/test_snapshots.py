"""Every contract's JSON schema against its committed snapshot: breaking changes fail.

A breaking change needs a new contract version (new routing key, producer emits both for a
while). To accept a compatible change, or a new contract, rewrite the snapshots deliberately:

    UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/contracts
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from contracts import ALL_CONTRACTS, Contract
from tests.contracts.compatibility import breaking_changes

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"


def snapshot_path(contract: type[Contract]) -> Path:
    return SNAPSHOTS / f"{contract.routing_key}.json"


def snapshot_of(contract: type[Contract]) -> dict:
    return {
        "contract": contract.__name__,
        "routing_key": contract.routing_key,
        "schema_version": contract.schema_version,
        "schema": contract.model_json_schema(mode="validation"),
    }


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("contract", ALL_CONTRACTS, ids=lambda c: c.__name__)
def test_contract_schema_has_no_breaking_change_since_its_snapshot(contract: type[Contract]):
    path = snapshot_path(contract)
    current = snapshot_of(contract)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(current))
        return
    assert path.exists(), f"no snapshot for {contract.__name__}: run UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/contracts"
    committed = json.loads(path.read_text())
    assert committed["contract"] == contract.__name__, "a routing key now names another contract"
    changes = breaking_changes(committed["schema"], current["schema"], contract.__name__)
    assert not changes, (
        f"breaking change(s) to {contract.routing_key}; publish a new version instead:\n  " + "\n  ".join(changes)
    )


def test_every_snapshot_still_has_its_contract():
    """Removing a contract (or its routing key) breaks whoever still sends or consumes it."""
    live = {snapshot_path(c).name for c in ALL_CONTRACTS}
    stale = sorted(p.name for p in SNAPSHOTS.glob("*.json") if p.name not in live)
    if UPDATE:
        for name in stale:
            (SNAPSHOTS / name).unlink()
        return
    assert not stale, f"contracts removed but snapshots remain (removal is breaking): {stale}"


def test_snapshots_record_compatible_changes_too():
    """Compatible changes pass, with a warning until the snapshot records them (so a field added
    now and removed later is still caught)."""
    if UPDATE:
        pytest.skip("rewriting snapshots")
    outdated = [
        c.__name__
        for c in ALL_CONTRACTS
        if snapshot_path(c).exists() and snapshot_path(c).read_text() != render(snapshot_of(c))
    ]
    if outdated:
        warnings.warn(
            f"contract snapshots lag compatible changes: {outdated}; "
            "run UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/contracts",
            stacklevel=1,
        )
