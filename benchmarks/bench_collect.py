"""Peak host memory of `agent-run` collecting what an agent wrote (issue 9, point 4). Prints a Markdown table.

    python benchmarks/bench_collect.py [--backends local,docker]

Cases: a 2 GiB sparse file (free in the sandbox, left out by the 100 MiB per-file limit after being read
and discarded) and 200 MB of random data (4 x 50 MB, collected into the patch). Peak RSS is the
largest of the `sandboxctl` process and every child it waited for (git, the local backend's agent), read
with getrusage(RUSAGE_CHILDREN) in a fresh wrapper process per run. Goal: < 200 MiB.
Needs a running Docker engine for `docker`; builds the local busybox test image if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE = "sandboxctl-test/busybox:latest"
_SCRIPT = Path(sysconfig.get_path("scripts")) / "sandboxctl"
SANDBOXCTL = str(_SCRIPT) if _SCRIPT.exists() else (shutil.which("sandboxctl") or "sandboxctl")
GOAL_MIB = 200
CASES = {
    "2 GiB sparse file": "dd if=/dev/zero of=sparse.bin bs=1 count=0 seek=2147483648 2>/dev/null",
    "200 MB random data": "for i in 1 2 3 4; do head -c 50000000 /dev/urandom > random-$i.bin; done",
}
# Runs the command, then prints the peak RSS (KiB on Linux) of every child it waited for.
_MEASURE = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def measure(backend: str, agent: str, home: Path) -> tuple[float, float, dict]:
    """(peak RSS in MiB, seconds, summary) of one `agent-run` on `backend`."""
    output = home / f"out-{time.monotonic_ns()}"
    image = ["--image", IMAGE] if backend == "docker" else []
    command = [SANDBOXCTL, "agent-run", "--backend", backend, *image, "--keep", "never", "--output", str(output)]
    env = {**os.environ, "SANDBOXCTL_HOME": str(home)}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command, "--", "sh", "-c", agent],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    took = time.monotonic() - started
    code, peak_kib = proc.stdout.split()
    if code != "0":
        raise SystemExit(f"agent-run on {backend} exited {code}: {proc.stderr}")
    summary = json.loads((output / "summary.json").read_text())
    return int(peak_kib) / 1024, took, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="local,docker")
    backends = parser.parse_args().backends.split(",")
    if "docker" in backends:
        script = REPO / "tests" / "images" / "build-busybox-image.sh"
        subprocess.run([str(script), IMAGE], check=True, capture_output=True)
    print(f"| backend | case | peak RSS (MiB) | goal < {GOAL_MIB} MiB | took (s) | collected | left out |")
    print("|---|---|---:|---|---:|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
        for backend in backends:
            for case, agent in CASES.items():
                peak, took, summary = measure(backend, agent, Path(tmp) / backend)
                collected = ", ".join(item["path"] for item in summary["changed_files"]) or "-"
                left_out = ", ".join(f"{i['path']} ({i['reason']})" for i in summary.get("skipped_files", [])) or "-"
                verdict = "ok" if peak < GOAL_MIB else "OVER"
                print(f"| {backend} | {case} | {peak:.0f} | {verdict} | {took:.1f} | {collected} | {left_out} |")


if __name__ == "__main__":
    main()
