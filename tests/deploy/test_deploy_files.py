"""docker-compose.yml, deploy/stack.yml, the Dockerfiles and the Prometheus config hold together.

There is no Docker engine here: the compose file and the stack are validated by the docker
CLI's own schema and interpolation (`docker stack config`), with the committed secret
templates and with secrets written by scripts/compose_secrets.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contracts import SERVICES

ROOT = Path(__file__).resolve().parents[2]
PORTS = {"gateway": 8000, "agent-runner": 8101, "log-miner": 8102, "trainer": 8103, "evaluator": 8104, "exporter": 8105}
INFRA = {"rabbitmq", "postgres", "redis", "minio", "ollama", "prometheus", "grafana"}

needs_docker = pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not on PATH")


def deploy_copy(tmp_path: Path, secrets: str) -> Path:
    """The compose file and deploy/ in a scratch dir, with deploy/secrets/ filled in."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("secrets"))
    target = tmp_path / "deploy" / "secrets"
    if secrets == "templates":
        shutil.copytree(ROOT / "deploy" / "secrets.example", target)
        (target / "gateway-signing.pem").write_text("placeholder\n")
    else:
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "compose_secrets.py"), "--dir", str(target)],
            check=True, capture_output=True,
        )
    return tmp_path


def stack_config(path: Path) -> dict:
    proc = subprocess.run(["docker", "stack", "config", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


@needs_docker
@pytest.mark.parametrize("secrets", ["templates", "generated"])
def test_compose_file_is_valid_and_runs_every_service_with_a_healthcheck(tmp_path: Path, secrets: str):
    config = stack_config(deploy_copy(tmp_path, secrets) / "docker-compose.yml")
    services = config["services"]
    assert set(SERVICES) | INFRA | {"migrate"} <= set(services)
    for name in SERVICES:
        svc = services[name]
        assert svc["build"]["dockerfile"] == f"services/{name}/Dockerfile"
        assert "healthcheck" in svc, name
        env = svc["environment"]
        assert {"BROKER__URL", "DATABASE__URL", "S3__ACCESS_KEY", "S3__SECRET_KEY"} <= set(env), name
    for name in INFRA - {"prometheus", "grafana"}:
        assert "healthcheck" in services[name], name
    assert services["migrate"]["command"] == ["alembic", "upgrade", "heads"]


@needs_docker
@pytest.mark.parametrize("secrets", ["templates", "generated"])
def test_swarm_stack_is_valid_and_deploys_every_service(tmp_path: Path, secrets: str):
    config = stack_config(deploy_copy(tmp_path, secrets) / "deploy" / "stack.yml")
    services = config["services"]
    assert set(SERVICES) | INFRA | {"migrate"} <= set(services)
    assert services["migrate"]["deploy"]["mode"] == "replicated-job"
    for name in SERVICES:
        assert "build" not in services[name]  # a stack deploys pushed images
        assert services[name]["deploy"]["replicas"] >= 1
        assert "healthcheck" in services[name]
        assert services[name]["environment"]["INSTANCE_ID"] == f"{name}-{{{{.Task.Slot}}}}"


def test_committed_files_hold_no_secret_values():
    """Secrets come only from deploy/secrets/ (git-ignored); templates leave them empty."""
    for path in (ROOT / "deploy" / "secrets.example").glob("*.env"):
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if re.search(r"PASS|SECRET", key):
                assert value == "", f"{path.name}: {key} has a value"
    compose = (ROOT / "docker-compose.yml").read_text() + (ROOT / "deploy" / "stack.yml").read_text()
    assert not re.search(r"(PASSWORD|SECRET_KEY|_PASS)\s*[:=]\s*\S", compose)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/secrets/services.env"], cwd=ROOT
    ).returncode
    assert ignored == 0, "deploy/secrets/ must be git-ignored"


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfiles_share_one_multi_stage_pattern(service: str):
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    header, marker, body = text.partition("# ---- The shared pattern")
    assert marker, "the shared-pattern marker is missing"
    reference = (ROOT / "services" / "gateway" / "Dockerfile").read_text().partition("# ---- The shared pattern")[2]
    assert body == reference, "the part below the marker must be the same in every service Dockerfile"
    assert f"ARG MODULE={service.replace('-', '_')}\n" in header
    assert f"ARG PORT={PORTS[service]}\n" in header
    assert re.findall(r"^FROM \S+ AS (\w+)$", body, re.M) == ["deps", "build", "runtime"]


def test_prometheus_scrapes_every_service_and_the_swarm_config_every_replica():
    compose = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    static = {j["job_name"]: j["static_configs"][0]["targets"] for j in compose["scrape_configs"]}
    swarm = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.swarm.yml").read_text())
    dns = {j["job_name"]: j.get("dns_sd_configs", [{}])[0] for j in swarm["scrape_configs"]}
    for service in SERVICES:
        assert static[service] == [f"{service}:{PORTS[service]}"]
        assert dns[service] == {"names": [f"tasks.{service}"], "type": "A", "port": PORTS[service]}


# .ci/run installs promtool (Debian `prometheus`), so in CI a missing promtool fails the test.
@pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("CI"),
                    reason="promtool not installed (apt-get install prometheus)")
def test_prometheus_configs_and_rules_pass_promtool():
    assert shutil.which("promtool"), "promtool not found: .ci/run installs Debian's prometheus package"
    prom = ROOT / "deploy" / "prometheus"
    for args in (
        ["check", "config", "--syntax-only", str(prom / "prometheus.yml")],
        ["check", "config", "--syntax-only", str(prom / "prometheus.swarm.yml")],
        ["check", "rules", *map(str, sorted((prom / "rules").glob("*.yml")))],
        ["test", "rules", *map(str, sorted((prom / "tests").glob("*.yml")))],  # each alert fires, and stays quiet
    ):
        proc = subprocess.run(["promtool", *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_line():
    prom = ROOT / "deploy" / "prometheus"
    alerts = {rule["alert"] for path in (prom / "rules").glob("*.yml")
              for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "alert" in rule}
    tested = {case["alertname"] for path in (prom / "tests").glob("*.yml")
              for test in yaml.safe_load(path.read_text())["tests"] for case in test.get("alert_rule_test", [])}
    runbook = (ROOT / "docs" / "operations.md").read_text()
    untested = alerts - tested
    assert not untested, f"alerts without a promtool test: {sorted(untested)}"
    missing = sorted(a for a in alerts if f"### {a}" not in runbook)
    assert not missing, f"alerts without a runbook section in docs/operations.md: {missing}"
