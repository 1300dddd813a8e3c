"""Everyday commands against the Docker CLI they wrap (issue 10's table). Prints a Markdown table.

    python benchmarks/bench_everyday.py [--runs N]

Each row times sandboxctl and its baseline in interleaved pairs (ours, then the baseline, N times),
so both see the same machine load; the ratio is the median of the pairs' ratios.

- `status` (8 live)            vs `docker ps --filter label=...`          goal <= 8x
- `create` (Docker)            vs `docker run -d IMAGE sleep infinity`    goal <= 1.5x
- `exec ID -- true`            vs `docker exec C true`                    goal <= 1.5x
- `delete ID`                  vs `docker rm -f C`                        goal <= 1.5x
- `--help`                     vs `python -c "import typer"`              goal <= 1.5x
- `status` over 10,000 records vs over 10 records                         goal <= 1.5x
- `status --json` over 20,000 records: wall <= 1.5 s and peak RSS <= 100 MB
Needs a running Docker engine; builds the local busybox test image if missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compile_package

REPO = Path(__file__).resolve().parent.parent
IMAGE = "sandboxctl-test/busybox:latest"
_SCRIPT = Path(sysconfig.get_path("scripts")) / "sandboxctl"  # not a pyenv shim (+0.1 s of bash per call)
SANDBOXCTL = str(_SCRIPT) if _SCRIPT.exists() else (shutil.which("sandboxctl") or "sandboxctl")
RUN = uuid.uuid4().hex[:12]  # every container of this run carries bench-everyday=RUN


def timed(argv: Sequence[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and stdout of one whole process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_maxrss, out.decode()


def pairs(
    ours: Callable[[int], Sequence[str]],
    base: Callable[[int], Sequence[str]],
    runs: int,
    env: dict[str, str],
    base_env: dict[str, str] | None = None,
) -> tuple[float, float, float]:
    """Interleaved runs: (median ours, median baseline, median of the pairs' ratios). One warm-up pair first
    (index -1), then indices 0..runs-1."""
    timed(ours(-1), env)
    timed(base(-1), base_env or env)
    mine, theirs = [], []
    for i in range(runs):
        mine.append(timed(ours(i), env)[0])
        theirs.append(timed(base(i), base_env or env)[0])
    ratio = statistics.median(a / b for a, b in zip(mine, theirs, strict=True))
    return statistics.median(mine), statistics.median(theirs), ratio


def line(name: str, ours: float, base: float, base_name: str, ratio: float, goal: float) -> str:
    verdict = "met" if ratio <= goal else "**not met**"
    return (
        f"| {name} | {ours * 1000:.0f} ms | {base_name} {base * 1000:.0f} ms | {ratio:.2f}x | <= {goal}x: {verdict} |"
    )


def seed(home: Path, count: int) -> None:
    """`count` live local records in one bulk insert (as the CLI leaves them)."""
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
            status="running",
            policy="default",
            labels={"bench": "1", "team": f"t{i % 7}"},
            env_keys=["TOKEN"],
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


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", nargs=2, metavar=("HOME", "COUNT"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.seed:
        seed(Path(options.seed[0]), int(options.seed[1]))
        return
    runs = options.runs
    compile_package()
    subprocess.run([str(REPO / "tests" / "images" / "build-busybox-image.sh"), IMAGE], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="sandboxctl-bench-everyday-"))
    env = {**os.environ, "SANDBOXCTL_HOME": str(work / "docker"), "NO_COLOR": "1"}
    label = f"bench-everyday={RUN}"
    lines = ["| command | sandboxctl | raw baseline | ratio | goal |", "|---|---|---|---|---|"]
    try:
        subprocess.run([SANDBOXCTL, "status"], env=env, check=True, capture_output=True)  # makes the registry
        ours, base, ratio = pairs(
            lambda _: [SANDBOXCTL, "create", "--image", IMAGE, "--label", label],
            lambda _: ["docker", "run", "-d", "--label", label, IMAGE, "sleep", "infinity"],
            runs,
            env,
        )
        lines.append(line("`create` (Docker)", ours, base, "`docker run -d IMAGE sleep infinity`", ratio, 1.5))
        listed = docker("ps", "--no-trunc", "--filter", f"label={label}", "--format", FORMAT).splitlines()
        raw = [entry.split()[0] for entry in listed if len(entry.split()) == 1]
        sandboxes = [entry.split()[1] for entry in listed if len(entry.split()) == 2]

        ours, base, ratio = pairs(
            lambda _: [SANDBOXCTL, "status"], lambda _: ["docker", "ps", "--filter", f"label={label}"], runs, env
        )
        lines.append(line(f"`status` ({len(sandboxes)} live)", ours, base, "`docker ps --filter label=...`", ratio, 8))
        ours, base, ratio = pairs(
            lambda _: [SANDBOXCTL, "exec", sandboxes[0], "--", "true"],
            lambda _: ["docker", "exec", raw[0], "true"],
            runs,
            env,
        )
        lines.append(line("`exec ID -- true`", ours, base, "`docker exec C true`", ratio, 1.5))
        ours, base, ratio = pairs(  # indices 1.. (the warm-up pair takes 1): 0 stays for exec
            lambda i: [SANDBOXCTL, "delete", sandboxes[i + 2]],
            lambda i: ["docker", "rm", "-f", raw[i + 2]],
            min(len(sandboxes), len(raw)) - 2,
            env,
        )
        lines.append(line("`delete ID`", ours, base, "`docker rm -f C`", ratio, 1.5))
        ours, base, ratio = pairs(
            lambda _: [SANDBOXCTL, "--help"], lambda _: [sys.executable, "-c", "import typer"], runs, env
        )
        lines.append(line("`--help`", ours, base, '`python -c "import typer"`', ratio, 1.5))

        homes = {count: work / f"records-{count}" for count in (10, 10_000, 20_000)}
        for count, home in homes.items():
            home.mkdir(mode=0o700)
            # In a child: Linux keeps a process's peak RSS across fork+exec, so a parent that had
            # imported SQLModel would pass its peak on to every command measured after it.
            subprocess.run([sys.executable, __file__, "--seed", str(home), str(count)], check=True)
        ours, base, ratio = pairs(
            lambda _: [SANDBOXCTL, "status"],
            lambda _: [SANDBOXCTL, "status"],
            runs,
            {**env, "SANDBOXCTL_HOME": str(homes[10_000])},
            {**env, "SANDBOXCTL_HOME": str(homes[10])},
        )
        lines.append(line("`status`, 10,000 records", ours, base, "same over 10 records", ratio, 1.5))
        walls, peaks = [], []
        for _ in range(max(3, runs // 2)):
            wall, peak, out = timed([SANDBOXCTL, "status", "--json"], {**env, "SANDBOXCTL_HOME": str(homes[20_000])})
            assert out.count('"id"') == 20_000
            walls.append(wall)
            peaks.append(peak)
        wall, peak_mb = statistics.median(walls), max(peaks) / 1024
        verdict = "met" if wall <= 1.5 and peak_mb <= 100 else "**not met**"
        lines.append(
            f"| `status --json`, 20,000 records | {wall * 1000:.0f} ms, {peak_mb:.0f} MB peak RSS | - | - | "
            f"<= 1.5 s and <= 100 MB: {verdict} |"
        )
    finally:
        leftover = docker("ps", "-aq", "--filter", f"label={label}").split()
        if leftover:
            subprocess.run(["docker", "rm", "-f", *leftover], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))


FORMAT = '{{.ID}} {{.Label "sandboxctl.id"}}'


if __name__ == "__main__":
    main()
