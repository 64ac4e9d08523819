"""Routing keys follow `<domain>.<event>.v<N>`, agree with the schema version and are unique."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from contracts import ALL_CONTRACTS, BY_TYPE, Contract

ROUTING_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\.v(?P<version>[1-9][0-9]*)$")


@pytest.mark.parametrize("contract", ALL_CONTRACTS, ids=lambda c: c.__name__)
def test_routing_key_is_domain_event_version(contract: type[Contract]):
    match = ROUTING_KEY.match(contract.routing_key)
    assert match, f"{contract.__name__}.routing_key {contract.routing_key!r} is not <domain>.<event>.v<N>"
    assert int(match["version"]) == contract.schema_version, "routing key version != schema_version"


def test_routing_keys_are_unique():
    counts = Counter(c.routing_key for c in ALL_CONTRACTS)
    assert [k for k, n in counts.items() if n > 1] == []


def test_contract_names_are_unique_and_indexed_by_type():
    assert len(BY_TYPE) == len(ALL_CONTRACTS)
    assert all(BY_TYPE[c.__name__] is c for c in ALL_CONTRACTS)
