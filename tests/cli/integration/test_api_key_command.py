"""`agentloop api-key` against a real (isolated) database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.harness import IsolatedEnv

KEY_RE = re.compile(r"^al_([0-9a-f]{16})_\S+$")


def agentloop(infra: IsolatedEnv, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "agentloop"
    return subprocess.run(
        [str(exe), *args], env={**os.environ, **infra.env}, capture_output=True, text=True, timeout=60
    )


def test_api_key_create_prints_the_key_once_and_stores_only_its_hash(infra: IsolatedEnv):
    out = agentloop(infra, "api-key", "create", "--role", "operator", "--name", "cli-test")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    match = KEY_RE.match(key)
    assert match, out.stdout
    with psycopg.connect(infra.database_url.replace("+asyncpg", "")) as conn:
        role, name, secret_hash = conn.execute(
            "SELECT role, name, secret_hash FROM gateway.api_keys WHERE key_id = %s", (match.group(1),)
        ).fetchone()
    assert (role, name) == ("operator", "cli-test")
    assert key.split("_", 2)[2] not in secret_hash


def test_api_key_revoke_marks_the_key_revoked(infra: IsolatedEnv):
    key = agentloop(infra, "api-key", "create", "--role", "user", "--name", "to-revoke").stdout.strip()
    out = agentloop(infra, "api-key", "revoke", key)
    assert out.returncode == 0, out.stderr
    listing = agentloop(infra, "api-key", "list")
    assert listing.returncode == 0, listing.stderr
    assert KEY_RE.match(key).group(1) in listing.stdout
    assert agentloop(infra, "api-key", "revoke", key).returncode == 1  # already revoked


def test_api_key_create_refuses_an_unknown_role(infra: IsolatedEnv):
    out = agentloop(infra, "api-key", "create", "--role", "root")
    assert out.returncode == 2
