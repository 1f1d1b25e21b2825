"""Load: many concurrent clients against a real server on 127.0.0.1, mixing models, usage, health and generate.

    python -m bench.load                      # 200 clients for 60 s
    python -m bench.load --clients 20 --seconds 10 --mix models=1,usage=1,health=1,generate=2

Starts `imagestudio serve` itself on a free loopback port with a data dir in a temp folder (nothing outside
it is touched, nothing leaves the machine), creates a Studio-plan key with `imagestudio keys create`, raises
that plan's limits for the run, warms the tiny model, then runs a bounded closed loop: every client has at
most one request in flight, and stops sending when the time is up. Prints per endpoint: requests, errors
by status, throughput, p50/p99 latency; writes the same as JSON to bench/results/load-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.common import RESULTS, ROOT, machine, percentile, print_table, running_server, temp_dirs, wait_until_idle  # noqa: E402

GENERATE_BODY = {"model": "tiny-sd", "width": 256, "height": 256, "steps": 2}
ENDPOINTS = {  # name -> (method, path, has a body)
    "models": ("GET", "/api/v1/models", False),
    "usage": ("GET", "/api/v1/usage", False),
    "health": ("GET", "/api/v1/health", False),
    "generate": ("POST", "/api/v1/generate", True),
}


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # perf_counter() at each answer
    statuses: Counter = field(default_factory=Counter)  # HTTP status, or the exception's name

    def record(self, started: float, status: int | str) -> None:
        now = time.perf_counter()
        self.latencies.append(now - started)
        self.finished.append(now)
        self.statuses[status] += 1

    def errors(self) -> dict[str, int]:
        return {str(s): n for s, n in sorted(self.statuses.items(), key=str)
                if not (isinstance(s, int) and 200 <= s < 300)}


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in ENDPOINTS:
            raise SystemExit(f"unknown endpoint in --mix: {name} (known: {', '.join(ENDPOINTS)})")
        mix[name] = float(weight or 1)
    return mix


def prepare(data_dir: Path, models_dir: Path, database: dict[str, str]) -> str:
    """Tiny model on disk, a Studio-plan key from the CLI, and that plan's limits raised out of the way."""
    from sqlmodel import select

    from engine.data.db import make_engine, session_scope
    from engine.data.tables import Plan, Workspace
    from engine.generation.tiny_models import ensure_tiny_model

    ensure_tiny_model("tiny-sd", models_dir)
    env = os.environ | {"IMAGESTUDIO_DATA_DIR": str(data_dir), "IMAGESTUDIO_MODELS_PATH": str(models_dir),
                        "HF_HUB_OFFLINE": "1"} | database
    out = subprocess.run([sys.executable, "-m", "api.cli", "keys", "create", "--email", "load@localhost",
                          "--plan", "studio", "--name", "load"], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    key = out.strip().splitlines()[-1]
    big = 10**9
    db = make_engine(database.get("IMAGESTUDIO_DATABASE_URL") or f"sqlite:///{(data_dir / 'imagestudio.db').resolve()}")
    with session_scope(db) as session:
        plan = session.get(Plan, "studio")
        plan.requests_per_minute = plan.requests_per_day = plan.requests_per_month = big
        plan.max_concurrent_jobs, plan.monthly_credits = 100_000, big
        session.add(plan)
        for workspace in session.exec(select(Workspace).where(Workspace.plan_slug == "studio")).all():
            workspace.credits, workspace.credits_month = big, datetime.now(UTC).strftime("%Y-%m")
            session.add(workspace)
        session.commit()
    db.dispose()
    return key


async def drive(base: str, key: str, clients: int, seconds: float, mix: dict[str, float], timeout: float,
                seed: int) -> tuple[dict[str, Stats], float, float]:
    stats = {name: Stats() for name in mix}
    names, weights = list(mix), list(mix.values())
    stop_at = time.perf_counter() + seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(seed + index)
        n = 0
        while time.perf_counter() < stop_at:
            name = rng.choices(names, weights)[0]
            method, path, has_body = ENDPOINTS[name]
            body = GENERATE_BODY | {"prompt": f"load client {index} request {n}"} if has_body else None
            n += 1
            started = time.perf_counter()
            try:
                status: int | str = (await http.request(method, path, json=body)).status_code
            except httpx.HTTPError as exc:  # counted, never fatal: the run goes on
                status = type(exc).__name__
            stats[name].record(started, status)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=timeout,
                                 limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    return stats, stop_at, time.perf_counter() - (stop_at - seconds)


def report(stats: dict[str, Stats], stop_at: float, seconds: float) -> dict:
    """Throughput counts the answers that came within the run's time (not those of the requests still in
    flight when it ended, which only drain); latencies count every request."""
    rows = {}
    everything = Stats()
    for name, s in stats.items():
        everything.latencies += s.latencies
        everything.finished += s.finished
        everything.statuses += s.statuses
    for name, s in list(stats.items()) + [("total", everything)]:
        count = len(s.latencies)
        in_time = sum(1 for t in s.finished if t <= stop_at)
        rows[name] = {"requests": count, "ok": count - sum(s.errors().values()), "errors": s.errors(),
                      "throughput_rps": round(in_time / seconds, 1),
                      "p50_ms": round(percentile(s.latencies, 50) * 1000, 1) if count else None,
                      "p99_ms": round(percentile(s.latencies, 99) * 1000, 1) if count else None,
                      "max_ms": round(max(s.latencies) * 1000, 1) if count else None}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--mix", default="models=1,usage=1,health=1,generate=1", help="endpoint=weight,...")
    parser.add_argument("--timeout", type=float, default=120, help="per request, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, help="reuse tiny models built here (default: a temp folder)")
    parser.add_argument("--database-url", help="an empty database for the server (default: SQLite in the data dir)")
    parser.add_argument("--out", type=Path, help="JSON output (default: bench/results/load-<date>.json)")
    parser.add_argument("--fail-on-errors", action="store_true", help="exit 1 on any 5xx or transport error")
    args = parser.parse_args(argv)
    mix = parse_mix(args.mix)

    with temp_dirs() as (data_dir, temp_models):
        models_dir = args.models_dir or temp_models
        database = {"IMAGESTUDIO_DATABASE_URL": args.database_url} if args.database_url else {}
        key = prepare(data_dir, models_dir, database)
        with running_server(data_dir, models_dir, database) as (base, server_proc, ready_s):
            auth = {"Authorization": f"Bearer {key}"}
            warm = httpx.post(f"{base}/api/v1/generate", json=GENERATE_BODY | {"prompt": "warm up"}, headers=auth,
                              timeout=300)
            warm.raise_for_status()  # the model is loaded before the clock starts
            settled_s = wait_until_idle(server_proc.pid)  # and the background imports are done
            print(f"server ready in {ready_s:.1f} s, idle {settled_s:.0f} s later; {args.clients} clients for "
                  f"{args.seconds:g} s ...", flush=True)
            stats, stop_at, elapsed = asyncio.run(drive(base, key, args.clients, args.seconds, mix, args.timeout,
                                                        args.seed))
            usage = httpx.get(f"{base}/api/v1/usage", headers=auth, timeout=60).json()
            healthy = httpx.get(f"{base}/api/v1/health", timeout=60).status_code == 200

    rows = report(stats, stop_at, args.seconds)
    # Every successful generate is one metered request and one image (plus the warm-up); nothing else is metered.
    generated = rows["generate"]["ok"] + 1 if "generate" in rows else 1
    usage_today = usage["data"]["usage"]["today"]
    consistent = usage_today["requestCount"] == usage_today["imageCount"] == generated
    print(f"\nLoad: {args.clients} clients for {args.seconds:g} s (+{elapsed - args.seconds:.1f} s for the last "
          f"answers), mix {args.mix}, tiny-sd 256x256 2 steps\n")
    table = [{"endpoint": name, **{k: v for k, v in row.items() if k != "errors"},
              "errors": ", ".join(f"{s}: {n}" for s, n in row["errors"].items()) or "0"} for name, row in rows.items()]
    print_table(table, ["endpoint", "requests", "ok", "errors", "throughput_rps", "p50_ms", "p99_ms", "max_ms"])
    print(f"\nserver healthy after the run: {healthy}; usage adds up ({usage_today['requestCount']} requests, "
          f"{usage_today['imageCount']} images for {generated} generations): {consistent}")

    result = {"benchmark": "load", "when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "elapsed_s": round(elapsed, 2), "endpoints": rows, "server_healthy_after": healthy,
              "usage_today": usage_today, "usage_consistent": consistent}
    out = args.out or RESULTS / f"load-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")

    failures = {s: n for row in rows.values() for s, n in row["errors"].items() if not s.isdigit() or s >= "500"}
    if args.fail_on_errors and (failures or not healthy or not consistent):
        print(f"FAILED: {failures or ''} healthy={healthy} consistent={consistent}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
