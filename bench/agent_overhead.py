"""What the platform adds on top of the engine.

Starts gateway, agent-runner (zero-cost `scripted` engine) and log-miner as processes on an
isolated vhost/database/bucket, then drives `POST /v1/runs?wait=true` from N concurrent
clients. Overhead per run = client-observed latency − engine time reported by the runner.
After each level it checks that nothing was lost: every submitted run is completed in the
gateway's index, has one trajectory, and its interaction reached the log miner. It also
reports each service's CPU time per run (user + system, over every run of the level).

In the same run, on the same vhost, it measures the bare round trip the targets are ratios to:
one confirmed persistent publish to a quorum queue, one consume, one transient reply, with plain
aio-pika and no application code (`bench.messaging_floor`'s `mq` mode), and prints the
platform's overhead p50 and runs/s beside it as ratios (issue 10: ≤ 4× the bare p50 at 1 client,
≥ 0.3× the bare throughput at 16 clients).

    .venv/bin/python -m bench.agent_overhead [--levels 1,16,64] [--seconds 20] [--no-bare]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from bench.http_load import HttpConnection
from bench.messaging_floor import measure as bare_round_trip
from tests.harness import ServiceProcess, isolated_env, run_path, wait_until


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids() -> dict[str, list[int]]:
    """The local RabbitMQ (beam.smp) and Postgres processes (all backends), for their CPU per run."""
    found: dict[str, list[int]] = {"rabbitmq": [], "postgres": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("beam"):
            found["rabbitmq"].append(int(entry.name))
        elif comm.startswith("postgres"):
            found["postgres"].append(int(entry.name))
    return found


def servers_cpu() -> dict[str, float]:
    """CPU seconds of the servers' processes; backends that come and go are counted while alive."""
    total: dict[str, float] = {}
    for name, pids in server_pids().items():
        seconds = 0.0
        for pid in pids:
            try:
                seconds += cpu_seconds(pid)
            except OSError:
                pass
        total[name] = seconds
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def drive(url: str, token: str, concurrency: int, seconds: float, warmup: float = 2.0,
                client: str = "raw") -> dict:
    """N clients, each on its own keep-alive connection, posting runs back to back.

    `overhead` is the client-observed latency minus the engine time the runner reports;
    `gateway overhead` is the gateway's own time to the answer (its Server-Timing header)
    minus the same engine time, i.e. without the client and the loopback hop."""
    latencies: list[float] = []
    overheads: list[float] = []
    gateway_overheads: list[float] = []
    run_ids: list[str] = []
    errors: list[str] = []
    body = json.dumps({"instruction": "ping", "options": {"max_steps": 1, "max_tokens": 8}}).encode()
    path = "/v1/runs?wait=true&timeout=20"
    host, port = url.removeprefix("http://").split(":")
    cpu0 = time.process_time()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def post_raw():
        conn = HttpConnection(host, int(port))
        request = conn.encode("POST", path, body, {"authorization": f"Bearer {token}"})

        async def post() -> tuple[int, dict[str, str], bytes]:
            resp = await conn.send(request)
            return resp.status, {k.decode(): v.decode() for k, v in resp.headers.items()}, resp.body

        return post, conn.close

    async def post_httpx():
        http = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

        async def post() -> tuple[int, dict[str, str], bytes]:
            resp = await http.post(path, content=body, headers={"content-type": "application/json"})
            return resp.status_code, dict(resp.headers), resp.content

        return post, http.aclose

    async def worker() -> None:
        post, close = await (post_raw() if client == "raw" else post_httpx())
        try:
            while (now := time.perf_counter()) < stop_at:
                t0 = time.perf_counter()
                try:
                    status, headers, content = await post()
                except (OSError, ValueError, asyncio.IncompleteReadError, httpx.HTTPError) as exc:
                    errors.append(repr(exc))
                    continue
                elapsed_ms = (time.perf_counter() - t0) * 1000
                if status != 200:
                    errors.append(f"{status} {content[:200]!r}")
                    continue
                doc = json.loads(content)
                run_ids.append(doc["run_id"])
                if now >= measure_from:
                    engine_ms = (doc.get("usage") or {}).get("engine_ms", 0.0)
                    latencies.append(elapsed_ms)
                    overheads.append(elapsed_ms - engine_ms)
                    timing = headers.get("server-timing", "")
                    if timing.startswith("app;dur="):
                        gateway_overheads.append(float(timing.removeprefix("app;dur=")) - engine_ms)
        finally:
            await close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    total_runs = max(len(run_ids), 1)
    return {
        "concurrency": concurrency,
        "client": client,
        "measured_runs": len(latencies),
        "runs_per_s": len(latencies) / seconds,
        "latency_p50_ms": percentile(latencies, 0.5),
        "overhead_p50_ms": percentile(overheads, 0.5),
        "overhead_p95_ms": percentile(overheads, 0.95),
        "overhead_p99_ms": percentile(overheads, 0.99),
        "gateway_overhead_p50_ms": percentile(gateway_overheads, 0.5),
        "gateway_overhead_p95_ms": percentile(gateway_overheads, 0.95),
        "gateway_overhead_p99_ms": percentile(gateway_overheads, 0.99),
        "client_cpu_ms_per_run": round((time.process_time() - cpu0) * 1000 / total_runs, 2),
        "errors": len(errors),
        "first_errors": errors[:3],
        "run_ids": run_ids,
    }


def audit(database_url: str, run_ids: list[str], timeout: float = 120) -> dict:
    """Every run: completed in the gateway index, one trajectory, interaction consumed by the log miner."""
    dsn = database_url.replace("+asyncpg", "")
    with psycopg.connect(dsn, autocommit=True) as conn:

        def counts() -> tuple[int, int, int]:
            completed = conn.execute(
                "SELECT count(*) FROM gateway.runs WHERE run_id = ANY(%s) AND status = 'completed'", (run_ids,)
            ).fetchone()[0]
            trajectories = conn.execute(
                "SELECT count(*) FROM agent_runner.trajectories WHERE run_id = ANY(%s)", (run_ids,)
            ).fetchone()[0]
            mined = conn.execute(
                "SELECT count(*) FROM log_miner.inbox i JOIN agent_runner.outbox o ON o.message_id = i.message_id"
                " WHERE o.message_type IN ('AgentRunFinished', 'InteractionLogged')"
                " AND o.body->>'run_id' = ANY(%s)",
                (run_ids,),
            ).fetchone()[0]
            return completed, trajectories, mined

        n = len(run_ids)
        try:
            wait_until(lambda: counts() == (n, n, n), timeout, interval=1.0, what="all runs accounted for")
        except TimeoutError:
            pass
        completed, trajectories, mined = counts()
    return {"submitted": n, "completed": completed, "trajectories": trajectories, "mined": mined,
            "lost": n - min(completed, trajectories, mined)}


def profile(services: list[ServiceProcess], out: Path, level: int, seconds: float) -> list[subprocess.Popen]:
    """py-spy (`pip install py-spy`) sampling each service for the level, as collapsed stacks."""
    out.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).parent / "py-spy"
    return [subprocess.Popen([str(exe), "record", "--pid", str(svc.process.pid), "--duration", str(int(seconds)),
                              "--rate", "100", "--format", "raw", "--nonblocking",
                              "--output", str(out / f"{svc.module}-{level}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for svc in services]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="also write results here")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="load generator: the lean keep-alive client (default) or httpx")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare aio-pika round trip")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="profile each service with py-spy during every level (collapsed stacks under DIR)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    print(f"load average at start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="agentloop-bench-") as tmp, isolated_env(Path(tmp)) as env:
        with run_path(env, Path(tmp) / "logs", prefix="bench") as path:
            services, gateway, token = path.services, path.gateway, path.token
            results = []
            for level in levels:
                before = {svc.module: cpu_seconds(svc.process.pid) for svc in services}
                servers_before = servers_cpu()
                spies = profile(services, args.py_spy, level, args.seconds + 2) if args.py_spy else []
                result = asyncio.run(drive(gateway.url, token, level, args.seconds, client=args.client))
                for spy in spies:
                    spy.wait(60)
                runs = max(len(result["run_ids"]), 1)
                result["cpu_ms_per_run"] = {svc.module: round((cpu_seconds(svc.process.pid) - before[svc.module])
                                                              * 1000 / runs, 2) for svc in services}
                servers_after = servers_cpu()
                result["cpu_ms_per_run"].update({name: round((servers_after[name] - servers_before[name]) * 1000 / runs, 2)
                                                 for name in servers_after})
                result["audit"] = audit(env.database_url, result.pop("run_ids"))
                results.append(result)
                print(json.dumps(result), flush=True)
        # The services are stopped: the bare round trip has the machine to itself, as they had.
        bare = [] if args.no_bare else asyncio.run(bare_round_trip("mq", env.broker_url, "", levels, args.seconds))
        for b in bare:
            print(json.dumps({"bare_round_trip": b}), flush=True)

    print()
    print(f"load average at end: {os.getloadavg()}")
    print("| clients | runs/s | overhead p50 / p95 / p99 ms (client) | overhead p50 / p95 / p99 ms (gateway) "
          "| errors | lost | CPU ms/run gateway / runner / miner / RabbitMQ / Postgres / client |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cpu = " / ".join(f"{v:.1f}" for v in [*r["cpu_ms_per_run"].values(), r["client_cpu_ms_per_run"]])
        print(f"| {r['concurrency']} | {r['runs_per_s']:.0f} "
              f"| {r['overhead_p50_ms']:.2f} / {r['overhead_p95_ms']:.2f} / {r['overhead_p99_ms']:.2f} "
              f"| {r['gateway_overhead_p50_ms']:.2f} / {r['gateway_overhead_p95_ms']:.2f} / "
              f"{r['gateway_overhead_p99_ms']:.2f} | {r['errors']} | {r['audit']['lost']} | {cpu} |")
    if bare:
        print()
        print("| clients | bare runs/s | bare p50 ms | platform runs/s ÷ bare | platform overhead p50 ÷ bare p50 |")
        print("|---:|---:|---:|---:|---:|")
        for r, b in zip(results, bare, strict=True):
            print(f"| {r['concurrency']} | {b['runs_per_s']:.0f} | {b['p50_ms']:.2f} "
                  f"| {r['runs_per_s'] / b['runs_per_s']:.2f} | {r['overhead_p50_ms'] / b['p50_ms']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"platform": results, "bare_round_trip": bare}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
