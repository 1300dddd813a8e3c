"""Foundation speed goals, as ratios against raw baselines (issue 2). Prints a Markdown table.

    python benchmarks/bench_foundation.py [--runs N]

- `sandboxctl --help`            vs `python -c "import typer"`   (goal <= 2x)
- `sandboxctl exec ID -- true`   vs `docker exec C true`         (goal <= 3x)
- `sandboxctl status` over 10,000 records vs over 10             (goal <= 2x), table and --json
Needs a running Docker engine; builds the local busybox test image if missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compile_package, row, time_command

REPO = Path(__file__).resolve().parent.parent
IMAGE = "sandboxctl-test/busybox:latest"
# The console script itself: a pyenv shim in front of it would add ~0.1 s of bash to every call.
_SCRIPT = Path(sysconfig.get_path("scripts")) / "sandboxctl"
SANDBOXCTL = str(_SCRIPT) if _SCRIPT.exists() else (shutil.which("sandboxctl") or "sandboxctl")


def seed(home: Path, count: int) -> None:
    """Insert `count` live local-backend records in one Core bulk insert (the registry as the CLI leaves it)."""
    from sqlalchemy import insert

    from sandboxctl.durations import utcnow
    from sandboxctl.registry.models import SandboxRecord
    from sandboxctl.registry.store import Registry, new_sandbox_id

    registry = Registry(f"sqlite:///{home / 'registry.db'}")
    now = utcnow()
    rows = [
        dict(
            id=new_sandbox_id(),
            name=f"bench-{i}",
            backend="local",
            backend_id=None,
            image=None,
            status="running",
            policy="default",
            labels={"bench": "1"},
            env_keys=[],
            created_at=now - timedelta(seconds=i),
            last_accessed=now,
            expires_at=now + timedelta(hours=24),
            host=socket.gethostname(),
            pid=1,
            delete_attempts=0,
            status_changed_at=now,
        )
        for i in range(count)
    ]
    with registry.writing() as session:
        session.execute(insert(SandboxRecord), rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    runs = args.runs
    compile_package()
    subprocess.run([str(REPO / "tests" / "images" / "build-busybox-image.sh"), IMAGE], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="sandboxctl-bench-"))
    env = {**os.environ, "SANDBOXCTL_HOME": str(work / "home"), "NO_COLOR": "1"}
    lines = ["| measure | sandboxctl | baseline | ratio | goal |", "|---|---|---|---|---|"]

    help_time = time_command([SANDBOXCTL, "--help"], env=env, runs=runs)
    typer_time = time_command([sys.executable, "-c", "import typer"], env=env, runs=runs)
    lines.append(row("`sandboxctl --help`", help_time, typer_time, "`import typer`", 2))

    sandbox = subprocess.run(
        [SANDBOXCTL, "create", "--image", IMAGE], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        exec_time = time_command([SANDBOXCTL, "exec", sandbox, "--", "true"], env=env, runs=runs)
        docker_time = time_command(["docker", "exec", f"sandboxctl-{sandbox}", "true"], runs=runs)
        lines.append(row("`sandboxctl exec ID -- true`", exec_time, docker_time, "`docker exec`", 3))
    finally:
        subprocess.run([SANDBOXCTL, "delete", sandbox], env=env, capture_output=True)

    for count in (10, 10_000):
        seed(work / f"status-{count}", count)
    for fmt in ([], ["--json"]):
        timings = {}
        for count in (10, 10_000):
            status_env = {**env, "SANDBOXCTL_HOME": str(work / f"status-{count}")}
            timings[count] = time_command([SANDBOXCTL, "status", *fmt], env=status_env, runs=max(3, runs // 2))
        label = "`sandboxctl status" + (" --json" if fmt else "") + "` 10,000 rows"
        lines.append(row(label, timings[10_000], timings[10], "same over 10 rows", 2))
    shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
