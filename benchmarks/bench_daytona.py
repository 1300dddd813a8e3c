"""Daytona backend costs against the loopback stand-in (issues 4 and 11), as ratios. Prints Markdown tables.

    python benchmarks/bench_daytona.py [--runs N]

Issue 11: exec through a session (what sandboxctl does: live, separate streams) against the
SDK's own one-shot `process.exec` for the same command in the same run, in one process
(no import or CLI start-up on either side): time to the first byte of output and total time.

Daytona's cloud is out of reach here, so the numbers are the client's own cost: the
SDK's import and sandboxctl's work around each call, over loopback HTTP to
`tests/daytona/standin.py`. The baseline is `python -c "from daytona import Daytona"`
(what any client of the SDK pays first; a bare `import daytona` is lazy and costs
nothing); `--backend local` is shown for comparison. Also timed: how fast an
unreachable API (connection refused) turns into exit 4.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compile_package, time_command

REPO = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sysconfig.get_path("scripts")) / "sandboxctl"
SANDBOXCTL = str(_SCRIPT) if _SCRIPT.exists() else (shutil.which("sandboxctl") or "sandboxctl")
IMAGE = "python:3.12-slim"  # the stand-in builds nothing: any image name is accepted


def timed(argv: list[str], env: dict[str, str], *, expect: int = 0) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - started
    if proc.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} -> {proc.returncode} (expected {expect}): {proc.stderr.strip()}")
    return took, proc.stdout.strip()


def lifecycle(env: dict[str, str], backend: str, runs: int) -> dict[str, float]:
    """Median create / exec / status / delete wall times over `runs` sandboxes."""
    samples: dict[str, list[float]] = {"create": [], "exec": [], "status": [], "delete": []}
    for _ in range(runs):
        took, sandbox = timed([SANDBOXCTL, "create", "--backend", backend, "--image", IMAGE], env)
        samples["create"].append(took)
        samples["exec"].append(timed([SANDBOXCTL, "exec", sandbox, "--", "true"], env)[0])
        samples["status"].append(timed([SANDBOXCTL, "status", sandbox, "--json"], env)[0])
        samples["delete"].append(timed([SANDBOXCTL, "delete", sandbox], env)[0])
    return {step: statistics.median(values) for step, values in samples.items()}


EXEC_COMMANDS = {
    "`echo hi`": "echo hi",
    "`echo first; sleep 0.5; echo last`": "echo first; sleep 0.5; echo last",
}


def exec_ratios(api_url: str, api_key: str, runs: int) -> list[str]:
    """Median time to first byte and total, sandboxctl's session exec over the SDK's `process.exec`."""
    from sandboxctl.backends.base import CreateSpec, ExecRequest
    from sandboxctl.backends.daytona import DaytonaBackend
    from sandboxctl.registry.store import new_sandbox_id

    backend = DaytonaBackend(api_key, api_url)
    sandbox_id = new_sandbox_id()
    spec = CreateSpec(sandbox_id, "bench", IMAGE, {"sandboxctl.id": sandbox_id})
    backend_id = backend.create(spec).backend_id
    sdk_sandbox = backend.client.get(backend_id)
    lines = [
        "",
        "exec: sandboxctl's session exec vs the SDK's `process.exec`, same command, same run, in-process (median)",
        "",
        "| command | first byte: ours / SDK | ratio | total: ours / SDK | ratio |",
        "|---|---|---|---|---|",
    ]
    try:
        for label, command in EXEC_COMMANDS.items():
            ours_first, ours_total, sdk_total = [], [], []
            for _ in range(runs + 1):  # the first round warms connections up and is dropped
                started = time.perf_counter()
                first: list[float] = []

                def sink(chunk: bytes, first: list[float] = first, started: float = started) -> None:
                    if not first:
                        first.append(time.perf_counter() - started)

                backend.exec(backend_id, ExecRequest(("sh", "-c", command), sink, sink))
                ours_total.append(time.perf_counter() - started)
                ours_first.append(first[0] if first else ours_total[-1])
                started = time.perf_counter()
                sdk_sandbox.process.exec(command)  # the whole output arrives with the answer: first byte = total
                sdk_total.append(time.perf_counter() - started)
            of, ot = statistics.median(ours_first[1:]), statistics.median(ours_total[1:])
            st = statistics.median(sdk_total[1:])
            lines.append(
                f"| {label} | {of * 1000:.0f} ms / {st * 1000:.0f} ms | {of / st:.2f}x | "
                f"{ot * 1000:.0f} ms / {st * 1000:.0f} ms | {ot / st:.2f}x |"
            )
    finally:
        backend.delete(backend_id)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    compile_package()
    work = Path(tempfile.mkdtemp(prefix="sandboxctl-bench-daytona-"))
    api_key = f"bench-{secrets.token_hex(8)}"
    standin = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "daytona" / "standin.py"),
            "--root",
            str(work / "standin"),
            "--api-key",
            api_key,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert standin.stdout is not None
        api_url = standin.stdout.readline().strip()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DAYTONA_", "SANDBOXCTL_"))}
        env = {**base, "SANDBOXCTL_HOME": str(work / "home"), "DAYTONA_API_KEY": api_key, "DAYTONA_API_URL": api_url}
        local_env = {**base, "SANDBOXCTL_HOME": str(work / "home-local")}
        sdk_import = time_command([sys.executable, "-c", "from daytona import Daytona"], env=env, runs=args.runs)
        daytona = lifecycle(env, "daytona", args.runs)
        local = lifecycle(local_env, "local", args.runs)
        dead_env = {**env, "DAYTONA_API_URL": "http://127.0.0.1:9/api"}  # discard port: connection refused
        refused = statistics.median(
            timed([SANDBOXCTL, "create", "--backend", "daytona", "--image", IMAGE], dead_env, expect=4)[0]
            for _ in range(args.runs)
        )
        streaming = exec_ratios(api_url, api_key, args.runs)
    finally:
        standin.terminate()
        standin.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        f"`from daytona import Daytona` alone: {sdk_import * 1000:.0f} ms (the baseline below)",
        "",
        "| command | `--backend daytona` (stand-in) | ratio to the SDK's import | `--backend local` |",
        "|---|---|---|---|",
    ]
    for step, label in (
        ("create", "create"),
        ("exec", "exec ID -- true"),
        ("status", "status ID --json"),
        ("delete", "delete ID"),
    ):
        lines.append(
            f"| `{label}` | {daytona[step] * 1000:.0f} ms | {daytona[step] / sdk_import:.2f}x | "
            f"{local[step] * 1000:.0f} ms |"
        )
    lines.append(
        f"| `create` with the API refused -> exit 4 | {refused * 1000:.0f} ms | {refused / sdk_import:.2f}x | - |"
    )
    print("\n".join(lines + streaming))


if __name__ == "__main__":
    main()
