"""No secret in any log of the session: every service process the tests started (the stack, the
workers, the drills) wrote its log under the session's directory, and none may hold an API key, a
JWT, the S3 secret or the token signing key. Runs after every other test (tests/conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness import IsolatedEnv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
API_KEY = re.compile(r"\bal_[0-9a-f]{16}_[A-Za-z0-9_-]{32,}")  # key id, then the secret (gateway.service.api_keys)


def pem_lines(keys_dir: Path) -> list[str]:
    """Lines of the signing keys' base64 bodies (any one of them in a log would be a leak)."""
    lines = []
    for pem in keys_dir.glob("*.pem"):
        lines += [x for x in pem.read_text().splitlines() if x and not x.startswith("-----")]
    return lines


def test_no_log_of_the_session_holds_a_secret(stack, infra: IsolatedEnv, session_tmp: Path, api_key, token) -> None:
    keys = [api_key(role) for role in ("user", "operator", "admin")]
    jwt = token("user")  # one more exchange: its token must not be logged either
    literal = {"an API key": keys, "a JWT": [jwt], "the S3 secret key": [infra.s3.secret_key],
               "the token signing key": pem_lines(infra.keys_dir)}
    logs = sorted(session_tmp.rglob("*.log"))
    assert any(p.name == "gateway.log" for p in logs), "no gateway log to scan"
    found = []
    for path in logs:
        text = path.read_text(errors="replace")
        for what, values in literal.items():
            found += [f"{path.name}: {what}" for v in values if v and v in text]
        found += [f"{path.name}: a JWT-shaped string {m.group()[:16]}..." for m in JWT.finditer(text)]
        found += [f"{path.name}: an API-key-shaped string {m.group()[:10]}..." for m in API_KEY.finditer(text)]
    assert not found, "\n".join(sorted(set(found)))
    assert sum(p.stat().st_size for p in logs) > 10_000  # the scan read real logs
