"""The data layer under load: requests/s and p99 of /usage, /models, /health and tiny-model generation, one
endpoint at a time, at 1 and 16 clients, on SQLite and (with --postgres-url) PostgreSQL.

    python -m bench.data_layer --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    python -m bench.data_layer --repo /path/to/an/older/checkout --label before   # SQLite only there

Each run is bench/load.py (its own server, data dir and, on PostgreSQL, a fresh database); the table goes to
stdout and the rows to bench/results/data-layer-<label>-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, ROOT, machine, print_table  # noqa: E402

ENDPOINTS = ("usage", "models", "health", "generate")


def fresh_database(server_url: str) -> str:
    from sqlalchemy import create_engine, text

    name = f"imagestudio_bench_{secrets.token_hex(4)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base, _, query = server_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def one_run(repo: Path, endpoint: str, clients: int, seconds: float, models_dir: Path,
            database_url: str | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "load.json"
        command = [sys.executable, "bench/load.py", "--clients", str(clients), "--seconds", str(seconds), "--mix",
                   f"{endpoint}=1", "--models-dir", str(models_dir), "--out", str(out)]
        if database_url:
            command += ["--database-url", database_url]
        subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True)
        row = json.loads(out.read_text())["endpoints"][endpoint]
    return {"endpoint": endpoint, "clients": clients, "throughput_rps": row["throughput_rps"],
            "p50_ms": row["p50_ms"], "p99_ms": row["p99_ms"], "errors": row["errors"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", help="a PostgreSQL server (superuser) to also run on")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose server is measured")
    parser.add_argument("--label", default="after")
    parser.add_argument("--clients", default="1,16")
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args(argv)
    from engine.generation.tiny_models import ensure_tiny_model

    rows = []
    with tempfile.TemporaryDirectory() as models:
        models_dir = Path(models)
        ensure_tiny_model("tiny-sd", models_dir)
        databases = {"sqlite": None} | ({"postgresql": args.postgres_url} if args.postgres_url else {})
        for database, server_url in databases.items():
            for endpoint in ENDPOINTS:
                for clients in (int(c) for c in args.clients.split(",")):
                    url = fresh_database(server_url) if server_url else None
                    row = {"database": database, **one_run(args.repo, endpoint, clients, args.seconds, models_dir,
                                                            url)}
                    rows.append(row)
                    print(row, flush=True)
    print_table(rows, ["database", "endpoint", "clients", "throughput_rps", "p50_ms", "p99_ms", "errors"])
    out = RESULTS / f"data-layer-{args.label}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "data_layer", "label": args.label, "repo": str(args.repo),
                               "machine": machine(), "seconds": args.seconds, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
