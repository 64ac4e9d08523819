"""Roles are ordered, and who sees which run follows from them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.domain import Identity, Role, RunRecord


def test_roles_are_ordered_user_operator_admin():
    assert Role.USER < Role.OPERATOR < Role.ADMIN


@pytest.mark.parametrize(
    ("role", "required", "allowed"),
    [
        (Role.USER, Role.USER, True),
        (Role.USER, Role.OPERATOR, False),
        (Role.USER, Role.ADMIN, False),
        (Role.OPERATOR, Role.USER, True),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ADMIN, False),
        (Role.ADMIN, Role.USER, True),
        (Role.ADMIN, Role.OPERATOR, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_a_role_allows_itself_and_everything_below(role, required, allowed):
    assert Identity("x", role).allows(required) is allowed


def test_roles_parse_from_their_names_only():
    assert Role.parse("operator") is Role.OPERATOR
    assert Role.parse("ADMIN") is Role.ADMIN
    for bad in ("root", "", None, 3, "user "):
        with pytest.raises(ValueError):
            Role.parse(bad)


def test_users_see_only_their_own_runs_and_operators_see_all():
    run = RunRecord(run_id="r", subject="alice", status="queued", created_at=datetime.now(UTC))
    assert run.visible_to(Identity("alice", Role.USER))
    assert not run.visible_to(Identity("bob", Role.USER))
    assert run.visible_to(Identity("bob", Role.OPERATOR))
    assert run.visible_to(Identity("carol", Role.ADMIN))
