"""The CLI as a user runs it, against the six services as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import make_api_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXE = Path(sys.executable).parent / "agentloop"


def agentloop(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cli_env(stack, infra, tmp_path_factory) -> dict[str, str]:
    key = make_api_key(infra.env, "user", "cli-e2e")
    env = {**infra.env, "AGENTLOOP_URL": stack.gateway_url, "AGENTLOOP_API_KEY": key}
    for module, proc in stack.services.items():
        env[f"AGENTLOOP_{module.upper()}_URL"] = proc.url
    env.pop("AGENTLOOP_TOKEN", None)
    return env


def test_token_prints_a_jwt(cli_env):
    out = agentloop(cli_env, "token")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(".") == 2  # header.payload.signature


def test_token_with_a_wrong_key_fails_with_the_reason(cli_env):
    out = agentloop(cli_env, "token", "--api-key", "al_0123456789abcdef_" + "x" * 43)
    assert out.returncode == 2
    assert "401" in out.stderr


def test_run_streams_the_run_and_prints_its_answer(cli_env):
    out = agentloop(cli_env, "run", "What is 17*23?", "--max-steps", "2", "--max-tokens", "48")
    assert out.returncode in (0, 1), out.stderr  # 1: the small model may not answer in 2 steps
    assert "accepted" in out.stderr and "outcome" in out.stderr
    assert any(line.startswith("answer:") for line in out.stdout.splitlines()), out.stdout


def test_status_shows_every_service_ready(cli_env):
    out = agentloop(cli_env, "status", timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    for service in ("gateway", "agent-runner", "log-miner", "trainer", "evaluator", "exporter"):
        assert service in out.stdout
