"""Clients for the running stack: API keys made with the real CLI, tokens from the real gateway."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.harness import IsolatedEnv, admin_command

KEY_RE = re.compile(r"\bal_[A-Za-z0-9_\-]+")


def cli(infra: IsolatedEnv, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "agentloop"
    return subprocess.run(
        [str(exe), *args],
        env={**os.environ, **infra.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def with_settings(stack, settings: dict[str, dict[str, str]]):
    """The session's stack with these services' settings (restarted only where they differ; the
    settings stay for the rest of the session)."""
    restarted = []
    for module, extra in settings.items():
        svc = stack.service(module)
        if any(svc.env.get(k) != v for k, v in extra.items()):
            svc.env.update(extra)
            svc.stop()
            svc.start(wait=False)
            restarted.append(svc)
    for svc in restarted:
        svc.wait_ready()
    return stack


@pytest.fixture(scope="session")
def api_key(infra: IsolatedEnv) -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def make(role: str) -> str:
        if role not in cache:
            out = admin_command(infra.env, "api-key", "create", "--role", role, "--name", f"e2e-{role}")
            assert out.returncode == 0, out.stderr
            match = KEY_RE.search(out.stdout)
            assert match, f"no API key in the admin command's output: {out.stdout!r}"
            cache[role] = match.group(0)
        return cache[role]

    return make


@pytest.fixture(scope="session")
def token(stack, api_key) -> Callable[[str], str]:
    def make(role: str = "user") -> str:
        resp = httpx.post(f"{stack.gateway_url}/v1/auth/token", headers={"X-API-Key": api_key(role)}, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]

    return make


@pytest.fixture(scope="session")
def db(infra: IsolatedEnv):
    with psycopg.connect(infra.database_url.replace("+asyncpg", ""), autocommit=True) as conn:
        yield conn
