"""One registry for a fleet (issue 13): cleanup throughput on PostgreSQL vs SQLite, and planning on PostgreSQL.

    python benchmarks/bench_fleet.py [--quick]

- 1, 2 and 4 concurrent `sandboxctl cleanup` processes (each its own SANDBOXCTL_HOME, as on
  separate hosts) over 1,000 expired `local` sandboxes (real directories, rows inserted directly),
  on one SQLite file and on one PostgreSQL database: wall time until all finished, sandboxes/s,
  and how the work was split.
- In-process planning over 100,000 rows (90,000 archived + 10,000 live, 100 due) on PostgreSQL,
  goal < 0.2 s.
Starts a throwaway PostgreSQL cluster (tests/pgcluster.py; Debian's `postgresql` binaries).
`--quick`: 200 sandboxes and 20,000 rows (a smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
_SCRIPT = Path(sysconfig.get_path("scripts")) / "sandboxctl"
SANDBOXCTL = str(_SCRIPT) if _SCRIPT.exists() else (shutil.which("sandboxctl") or "sandboxctl")


def _rows(count: int, *, due: int, now: Any, backend_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Live record values: the first `due` expired an hour ago, the rest expire within days."""
    from sandboxctl.registry.store import new_sandbox_id

    rng = random.Random(42)
    host = socket.gethostname()
    rows = []
    for i in range(count):
        sandbox_id = backend_ids[i].rsplit("/", 1)[-1] if backend_ids else new_sandbox_id()
        created = now - timedelta(hours=rng.uniform(2, 72))
        expires = now - timedelta(hours=1) if i < due else now + timedelta(hours=rng.uniform(1, 72))
        rows.append(
            dict(
                id=sandbox_id,
                name=f"fleet-{sandbox_id}",
                backend="local",
                backend_id=backend_ids[i] if backend_ids else sandbox_id,
                image=None,
                status="running",
                policy="default",
                labels={"bench": "fleet"},
                env_keys=[],
                created_at=created,
                last_accessed=created,
                expires_at=expires,
                idle_timeout_seconds=None,
                host=host,
                pid=1,
                delete_attempts=0,
                status_changed_at=created,
            )
        )
    return rows


def _insert(url: str, live: list[dict[str, Any]], archived: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
    from sqlalchemy import insert

    from sandboxctl.registry.models import ArchivedSandbox, SandboxRecord
    from sandboxctl.registry.store import Registry

    registry = Registry(url)
    with registry.writing() as session:
        for model, rows in ((ArchivedSandbox, archived), (SandboxRecord, live)):
            for start in range(0, len(rows), 10_000):
                session.execute(insert(model), rows[start : start + 10_000])
    registry.engine.dispose()


def seed_local(url: str, root: Path, count: int) -> None:
    """`count` expired local sandboxes: real directories (the backend's own create), rows inserted directly."""
    from sandboxctl.backends.base import CreateSpec
    from sandboxctl.backends.local import LocalBackend
    from sandboxctl.durations import utcnow
    from sandboxctl.registry.store import new_sandbox_id

    backend = LocalBackend(root)
    ids = [
        backend.create(CreateSpec(sandbox_id=(sid := new_sandbox_id()), name=f"fleet-{sid}", image=None, labels={}))
        for _ in range(count)
    ]
    _insert(url, _rows(count, due=count, now=utcnow(), backend_ids=[b.backend_id for b in ids]))


def run_cleanups(url: str, work: Path, processes: int) -> tuple[float, list[int]]:
    """Wall time of `processes` concurrent cleanups (own homes) until all exit, and how many each cleaned."""
    homes = [work / f"host{n}-{uuid.uuid4().hex[:6]}" for n in range(processes)]
    args = [SANDBOXCTL, "cleanup", "--limit", "1000", "--json"]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            args,
            env={**os.environ, "SANDBOXCTL_HOME": str(h), "SANDBOXCTL_DB": url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for h in homes
    ]
    outputs = [p.communicate() for p in procs]
    wall = time.perf_counter() - started
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"cleanup failed ({proc.returncode}): {err}")
    return wall, [json.loads(out)["sandboxes_cleaned"] for out, _err in outputs]


def bench_throughput(cluster: Any, work: Path, count: int) -> list[str]:
    lines = []
    for engine in ("sqlite", "postgresql"):
        for processes in (1, 2, 4):
            name = f"{engine}-{processes}"
            if engine == "sqlite":
                url = f"sqlite:///{work / name / 'registry.db'}"
            else:
                url = cluster.create_database(f"bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}")
            seed_local(url, work / name / "local", count)
            wall, split = run_cleanups(url, work / name, processes)
            if sum(split) != count:
                raise SystemExit(f"{name}: cleaned {sum(split)} of {count}")
            lines.append(
                f"| {engine} | {processes} | {count:,} | {wall:.2f} s | {count / wall:.0f}/s | "
                f"{' + '.join(map(str, split))} |"
            )
            print(lines[-1], file=sys.stderr)
    return lines


def bench_planning(cluster: Any, total: int) -> str:
    from sandboxctl.config import Settings
    from sandboxctl.durations import utcnow
    from sandboxctl.services.cleanup import BackendPool, CleanupRequest, plan_cleanup
    from sandboxctl.services.context import Context

    url = cluster.create_database(f"bench_plan_{uuid.uuid4().hex[:6]}")
    now = utcnow()
    archived = [
        {**row, "status": "deleted", "archived_at": now - timedelta(days=1), "reason": "expired", "deletion": {}}
        for row in _rows(total * 9 // 10, due=0, now=now)
    ]
    _insert(url, _rows(total // 10, due=100, now=now), archived)
    ctx = Context(settings=Settings.load(url))
    registry = ctx.registry
    samples, planned = [], 0
    for _ in range(16):
        started = time.perf_counter()
        planned = len(plan_cleanup(ctx, registry, BackendPool(ctx, 8), CleanupRequest(limit=100), now=utcnow()).items)
        samples.append(time.perf_counter() - started)
    first, warm = samples[0], statistics.median(samples[1:])
    verdict = "met" if max(first, warm) < 0.2 else "NOT met"
    return (
        f"| plan over {total:,} rows on PostgreSQL ({total * 9 // 10:,} archived + {total // 10:,} live, "
        f"{planned} due) in-process | {warm * 1000:.0f} ms (first {first * 1000:.0f} ms) | < 200 ms: {verdict} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 sandboxes, 20,000 rows: a smoke run")
    options = parser.parse_args()
    count, total = (200, 20_000) if options.quick else (1_000, 100_000)
    from pgcluster import remove_cluster, start_cluster

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    os.environ["SANDBOXCTL_HOME"] = str(work / "bench-home")
    cluster = start_cluster()
    try:
        throughput = bench_throughput(cluster, work, count)
        planning = bench_planning(cluster, total)
    finally:
        remove_cluster(cluster)
        shutil.rmtree(work, ignore_errors=True)
    print("| registry | cleanup processes | expired local sandboxes | wall | throughput | cleaned by each |")
    print("|---|---|---|---|---|---|")
    print("\n".join(throughput))
    print()
    print("| measurement | result | goal |")
    print("|---|---|---|")
    print(planning)


if __name__ == "__main__":
    main()
