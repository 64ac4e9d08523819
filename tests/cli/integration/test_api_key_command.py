"""API keys: the gateway's admin entry point (`python -m gateway.admin`, the first key, on the database)
against a real (isolated) database, and `agentloop api-key` through a real gateway's admin routes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.harness import IsolatedEnv, ServiceProcess, admin_command, make_api_key

KEY_RE = re.compile(r"^al_([0-9a-f]{16})_\S+$")


def agentloop(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "agentloop"
    return subprocess.run([str(exe), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def stored(infra: IsolatedEnv, key_id: str) -> tuple:
    with psycopg.connect(infra.database_url.replace("+asyncpg", "")) as conn:
        return conn.execute(
            "SELECT role, name, secret_hash, revoked_at IS NOT NULL FROM gateway.api_keys WHERE key_id = %s", (key_id,)
        ).fetchone()


# --------------------------------------------------------------------------- python -m gateway.admin


def test_the_admin_entry_point_prints_the_key_once_and_stores_only_its_hash(infra: IsolatedEnv):
    out = admin_command(infra.env, "api-key", "create", "--role", "operator", "--name", "cli-test")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    match = KEY_RE.match(key)
    assert match, out.stdout
    role, name, secret_hash, _ = stored(infra, match.group(1))
    assert (role, name) == ("operator", "cli-test")
    assert key.split("_", 2)[2] not in secret_hash


def test_the_admin_entry_point_revokes_and_lists(infra: IsolatedEnv):
    key = make_api_key(infra.env, "user", "to-revoke")
    out = admin_command(infra.env, "api-key", "revoke", key)
    assert out.returncode == 0, out.stderr
    listing = admin_command(infra.env, "api-key", "list")
    assert listing.returncode == 0, listing.stderr
    assert KEY_RE.match(key).group(1) in listing.stdout
    assert admin_command(infra.env, "api-key", "revoke", key).returncode == 1  # already revoked


def test_the_admin_entry_point_refuses_an_unknown_role(infra: IsolatedEnv):
    out = admin_command(infra.env, "api-key", "create", "--role", "root")
    assert out.returncode == 2


# --------------------------------------------------------------------------- agentloop api-key (HTTP)


@pytest.fixture(scope="module")
def gateway(infra: IsolatedEnv, session_tmp: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess("gateway", {**infra.env, "INSTANCE_ID": f"gw-keys-{uuid.uuid4().hex[:6]}"},
                          session_tmp / "logs" / "cli-api-keys")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def cli_env(infra: IsolatedEnv, gateway: ServiceProcess, key: str) -> dict[str, str]:
    env = {**infra.env, "AGENTLOOP_URL": gateway.url, "AGENTLOOP_API_KEY": key}
    env.pop("AGENTLOOP_TOKEN", None)
    return env


def test_an_admin_creates_lists_and_revokes_keys_through_the_gateway(infra: IsolatedEnv, gateway: ServiceProcess):
    admin = cli_env(infra, gateway, make_api_key(infra.env, "admin", f"admin-{uuid.uuid4().hex[:6]}"))
    out = agentloop(admin, "api-key", "create", "--role", "user", "--name", "via-http")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    match = KEY_RE.match(key)
    assert match, out.stdout
    role, name, secret_hash, revoked = stored(infra, match.group(1))
    assert (role, name, revoked) == ("user", "via-http", False)
    assert key.split("_", 2)[2] not in secret_hash
    assert httpx.post(f"{gateway.url}/v1/auth/token", headers={"X-API-Key": key}).status_code == 200

    listing = agentloop(admin, "api-key", "list")
    assert listing.returncode == 0, listing.stderr
    assert match.group(1) in listing.stdout and "via-http" in listing.stdout

    assert agentloop(admin, "api-key", "revoke", key).returncode == 0
    assert stored(infra, match.group(1))[3] is True
    assert httpx.post(f"{gateway.url}/v1/auth/token", headers={"X-API-Key": key}).status_code == 401
    again = agentloop(admin, "api-key", "revoke", key)
    assert again.returncode == 1 and "no active key matched" in again.stderr


def test_the_admin_routes_refuse_a_non_admin_and_name_a_bad_field(infra: IsolatedEnv, gateway: ServiceProcess):
    operator = cli_env(infra, gateway, make_api_key(infra.env, "operator", "not-an-admin"))
    out = agentloop(operator, "api-key", "create", "--role", "user", "--name", "nope")
    assert out.returncode != 0 and "403" in out.stderr

    admin_key = make_api_key(infra.env, "admin", f"admin-{uuid.uuid4().hex[:6]}")
    token = httpx.post(f"{gateway.url}/v1/auth/token", headers={"X-API-Key": admin_key}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    bad = httpx.post(f"{gateway.url}/v1/admin/api-keys", headers=headers, json={"role": "root", "name": "x"})
    assert bad.status_code == 422
    assert [e["loc"] for e in bad.json()["detail"]] == [["body", "role"]]
    blank = httpx.post(f"{gateway.url}/v1/admin/api-keys", headers=headers, json={"role": "user", "name": "  "})
    assert blank.status_code == 422 and blank.json()["detail"][0]["loc"] == ["body", "name"]
    missing = httpx.delete(f"{gateway.url}/v1/admin/api-keys/0123456789abcdef", headers=headers)
    assert missing.status_code == 404
