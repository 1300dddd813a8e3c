"""Cleanup speed goals (issue 3), as ratios against raw baselines. Prints a Markdown table.

    python benchmarks/bench_cleanup.py [--quick] [--rounds N]

- `sandboxctl cleanup` of 100 expired Docker sandboxes (whole process: start-up, planning,
  claims, deletions, archive) vs one `docker rm -f $(docker ps -aq --filter label=...)` of
  100 containers (goal <= 0.8x per the issue; <= 1.0x per research/perf-baseline.md).
- Planning over 100,000 registry rows (90,000 archived, 10,000 live of which ~100 due;
  then 100,000 live) in-process, goal < 0.2 s; whole `cleanup --dry-run --json` for reference.
Needs a running Docker engine; builds the local busybox test image if missing. `--quick`
uses 20 containers, 1 round and 20,000 rows (a smoke run, not a measurement).
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
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compile_package

REPO = Path(__file__).resolve().parent.parent
IMAGE = "sandboxctl-test/busybox:latest"
# The console script itself: a pyenv shim in front of it would add ~0.1 s of bash to every call.
_SCRIPT = Path(sysconfig.get_path("scripts")) / "sandboxctl"
SANDBOXCTL = str(_SCRIPT) if _SCRIPT.exists() else (shutil.which("sandboxctl") or "sandboxctl")
RUN = uuid.uuid4().hex[:12]  # every container of this run carries bench-cleanup-run=RUN


def _context(home: Path) -> Any:  # imports stay inside: --help needs none of them
    os.environ["SANDBOXCTL_HOME"] = str(home)
    from sandboxctl.config import Settings
    from sandboxctl.services.context import Context

    return Context(settings=Settings.load())


def create_expired_sandboxes(home: Path, count: int, tag: str) -> None:
    """`count` sandboxes through the real create path (record first, labelled container), TTL 1s, 8 at a time."""
    from sandboxctl.services.lifecycle import CreateOptions, create_sandbox

    _context(home).registry  # noqa: B018 - open (and migrate) once, before the threads
    labels = {"bench-cleanup-run": RUN, "bench-cleanup": tag}
    options = CreateOptions(backend="docker", image=IMAGE, ttl=timedelta(seconds=1), labels=labels)
    local = threading.local()  # a Context per thread, as per process: its reader holds one connection

    def create(_: int) -> None:
        if not hasattr(local, "ctx"):
            local.ctx = _context(home)
        create_sandbox(local.ctx, options)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))


def create_plain_containers(count: int, tag: str) -> None:
    """The baseline's containers: same image, init and keep-alive, labelled, 8 at a time."""
    import docker

    client = docker.from_env(max_pool_size=8)

    def one(_: int) -> None:
        labels = {"bench-cleanup-run": RUN, "bench-cleanup": tag}
        client.containers.run(IMAGE, ["sleep", "infinity"], init=True, detach=True, labels=labels)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def time_sandboxctl_cleanup(home: Path, extra: list[str]) -> tuple[float, dict]:
    env = {**os.environ, "SANDBOXCTL_HOME": str(home)}
    started = time.perf_counter()
    out = subprocess.run([SANDBOXCTL, "cleanup", "--json", *extra], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"cleanup failed ({out.returncode}): {out.stderr}")
    return wall, json.loads(out.stdout)


def time_docker_rm(tag: str) -> float:
    started = time.perf_counter()
    script = f"docker rm -f $(docker ps -aq --filter label=bench-cleanup={tag}) >/dev/null"
    subprocess.run(["sh", "-c", script], check=True)
    return time.perf_counter() - started


def bench_docker(work: Path, count: int, rounds: int, extra: list[str]) -> list[str]:
    ours: list[float] = []
    service: list[float] = []
    baseline: list[float] = []
    freed: list[float] = []
    for i in range(rounds):
        order = ("ours", "baseline") if i % 2 == 0 else ("baseline", "ours")
        for which in order:
            tag = uuid.uuid4().hex[:12]
            if which == "ours":
                home = work / f"docker-{tag}"
                create_expired_sandboxes(home, count, tag)
                time.sleep(1.5)
                wall, summary = time_sandboxctl_cleanup(home, extra)
                if summary["sandboxes_cleaned"] != count:  # e.g. another process removed some meanwhile
                    print(f"warning: cleaned {summary['sandboxes_cleaned']} of {count}", file=sys.stderr)
                ours.append(wall)
                service.append(summary["duration_seconds"])
                freed.append(summary["disk_space_freed_mb"])
            else:
                create_plain_containers(count, tag)
                baseline.append(time_docker_rm(tag))
    o, s, b = statistics.median(ours), statistics.median(service), statistics.median(baseline)
    command = " ".join(["sandboxctl cleanup", *extra])
    print(
        f"docker: ours {[round(x, 2) for x in ours]} (in-service {[round(x, 2) for x in service]}), "
        f"docker rm -f {[round(x, 2) for x in baseline]}",
        file=sys.stderr,
    )
    return [
        f"| `{command}` of {count} expired Docker sandboxes | {o:.2f} s | `docker rm -f` x{count} "
        f"{b:.2f} s | {o / b:.2f}x | <= 0.8x (issue) / <= 1.0x (research): {'met' if o / b <= 0.8 else 'NOT met'}"
        f" / {'met' if o / b <= 1.0 else 'NOT met'} |",
        f"| same, in-service part only (plan, claims, deletions, archive) | {s:.2f} s | {b:.2f} s | {s / b:.2f}x | "
        f"(reference) |",
    ]


def seed_rows(home: Path, archived: int, live: int, due: int) -> None:
    """Core bulk insert: `archived` archive rows, `live` live rows of which `due` are expired or idle."""
    from sqlalchemy import insert

    from sandboxctl.durations import utcnow
    from sandboxctl.registry.models import ArchivedSandbox, SandboxRecord
    from sandboxctl.registry.store import Registry, new_sandbox_id

    registry = Registry(f"sqlite:///{home / 'registry.db'}")
    now = utcnow()
    rng = random.Random(42)
    host = socket.gethostname()

    def row(i: int, status: str, expires_in: timedelta, idle: int | None = None) -> dict:
        created = now - timedelta(hours=rng.uniform(1, 72))
        sandbox_id = new_sandbox_id()
        return dict(
            id=sandbox_id,
            name=f"bench-{i}-{sandbox_id}",
            backend="local",
            backend_id=sandbox_id,
            image=None,
            status=status,
            policy="default",
            labels={"bench": "1", "team": rng.choice("abc")},
            env_keys=[],
            created_at=created,
            last_accessed=now - timedelta(minutes=rng.uniform(0, 30)),
            expires_at=now + expires_in,
            idle_timeout_seconds=idle,
            host=host,
            pid=1,
            delete_attempts=0,
            status_changed_at=created,
        )

    archive_rows = [
        {
            **row(i, "deleted", -timedelta(days=rng.uniform(0, 29))),
            "archived_at": now - timedelta(days=rng.uniform(0, 29)),
            "reason": "expired",
            "deletion": {"success": True},
        }
        for i in range(archived)
    ]
    live_rows = []
    for i in range(live):
        if i < due // 2:
            live_rows.append(row(i, "running", -timedelta(minutes=rng.uniform(1, 60))))  # expired
        elif i < due:
            live_rows.append(row(i, "running", timedelta(hours=12), idle=60))  # idle for minutes
        else:
            status = "stopped" if rng.random() < 0.8 else "running"
            idle = rng.choice([None, None, 3600, 7200])
            live_rows.append(row(i, status, timedelta(hours=rng.uniform(1, 72)), idle=idle))
    for i, r in enumerate(live_rows):  # the busy ones were used a moment ago: not idle
        if r["idle_timeout_seconds"] and i >= due:
            r["last_accessed"] = now
    with registry.writing() as session:
        for start in range(0, len(archive_rows), 20_000):
            session.execute(insert(ArchivedSandbox), archive_rows[start : start + 20_000])
        for start in range(0, len(live_rows), 20_000):
            session.execute(insert(SandboxRecord), live_rows[start : start + 20_000])


def time_planning(home: Path, runs: int = 15, older_than: timedelta | None = None) -> tuple[float, float, int]:
    """(first call, median of warm calls, items planned) of the in-process planner, registry already open."""
    from sandboxctl.durations import utcnow
    from sandboxctl.services.cleanup import BackendPool, CleanupRequest, plan_cleanup

    ctx = _context(home)
    registry = ctx.registry
    request = CleanupRequest(limit=100, older_than=older_than)
    samples = []
    planned = 0
    for _ in range(runs + 1):
        started = time.perf_counter()
        plan = plan_cleanup(ctx, registry, BackendPool(ctx, 8), request, now=utcnow())
        samples.append(time.perf_counter() - started)
        planned = len(plan.items)
    return samples[0], statistics.median(samples[1:]), planned


def time_dry_run_process(home: Path, runs: int = 5) -> float:
    env = {**os.environ, "SANDBOXCTL_HOME": str(home)}
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([SANDBOXCTL, "cleanup", "--dry-run", "--json"], env=env, capture_output=True, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench_planning(work: Path, total: int) -> list[str]:
    lines = []
    scenarios = [
        ("archived", total * 9 // 10, total // 10, 100),
        ("live", 0, total, 100),
    ]
    empty = work / "plan-empty"
    seed_rows(empty, 0, 0, 0)
    empty_wall = time_dry_run_process(empty)
    for name, archived, live, due in scenarios:
        home = work / f"plan-{name}"
        started = time.perf_counter()
        seed_rows(home, archived, live, due)
        seeded = time.perf_counter() - started
        first, warm, planned = time_planning(home)
        wall = time_dry_run_process(home)
        shape = f"{archived:,} archived + {live:,} live" if archived else f"{live:,} live"
        print(f"planning {shape}: seeded in {seeded:.1f}s, planned {planned} items", file=sys.stderr)
        lines.append(
            f"| plan over {total:,} rows ({shape}, {due} due) in-process | {warm * 1000:.0f} ms "
            f"(first {first * 1000:.0f} ms) | - | - | < 200 ms: {'met' if max(first, warm) < 0.2 else 'NOT met'} |"
        )
        lines.append(
            f"| `sandboxctl cleanup --dry-run --json` over the same | {wall * 1000:.0f} ms | same over an empty "
            f"registry {empty_wall * 1000:.0f} ms | {wall / empty_wall:.2f}x | (reference) |"
        )
        if not archived:  # every live row is due: --older-than 0s must still read only --limit rows
            first, warm, planned = time_planning(home, older_than=timedelta(0))
            lines.append(
                f"| plan `--older-than 0s --limit 100` over {live:,} live rows ({planned} planned) in-process | "
                f"{warm * 1000:.0f} ms (first {first * 1000:.0f} ms) | - | - | "
                f"< 200 ms: {'met' if max(first, warm) < 0.2 else 'NOT met'} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 containers, 1 round, 20,000 rows")
    parser.add_argument("--rounds", type=int, default=None, help="Docker rounds (default 3, quick 1)")
    parser.add_argument("--concurrency", type=int, default=None, help="cleanup --concurrency (default: config)")
    parser.add_argument("--skip-planning", action="store_true", help="only the Docker comparison")
    args = parser.parse_args()
    count, rounds, rows = (20, 1, 20_000) if args.quick else (100, 3, 100_000)
    rounds = args.rounds or rounds
    compile_package()
    subprocess.run([str(REPO / "tests" / "images" / "build-busybox-image.sh"), IMAGE], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="sandboxctl-bench-cleanup-"))
    lines = ["| measure | sandboxctl | baseline | ratio | goal |", "|---|---|---|---|---|"]
    try:
        if not args.skip_planning:
            lines += bench_planning(work, rows)
        extra = ["--concurrency", str(args.concurrency)] if args.concurrency else []
        lines += bench_docker(work, count, rounds, extra)
    finally:
        run_filter = f"label=bench-cleanup-run={RUN}"
        leftover = subprocess.run(["docker", "ps", "-aq", "--filter", run_filter], capture_output=True, text=True)
        if leftover.stdout.split():
            subprocess.run(["docker", "rm", "-f", *leftover.stdout.split()], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
