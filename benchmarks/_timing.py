"""Whole-process timing helpers shared by the benchmark scripts (median of repeated runs)."""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence


def compile_package() -> None:
    """Write sandboxctl's bytecode before timing anything, as `pip install` does for a regular install.

    An editable install writes it on the first run, unless PYTHONDONTWRITEBYTECODE is set (it is on some
    CI machines, this project's included): then every run would compile every module again (~30 ms).
    """
    spec = importlib.util.find_spec("sandboxctl")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("sandboxctl is not importable from this interpreter: run with the venv's python")
    package = next(iter(spec.submodule_search_locations))
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True, stdout=subprocess.DEVNULL)


def time_command(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, runs: int = 10, warmup: int = 2
) -> float:
    """Median wall time in seconds of running `argv` to completion (stdout/stderr discarded)."""
    samples = []
    for i in range(warmup + runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        if i >= warmup:
            samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def row(name: str, ours: float, baseline: float, baseline_name: str, goal: float) -> str:
    ratio = ours / baseline
    verdict = "met" if ratio <= goal else "NOT met"
    ours_ms, base_ms = ours * 1000, baseline * 1000
    return f"| {name} | {ours_ms:.0f} ms | {baseline_name} {base_ms:.0f} ms | {ratio:.2f}x | <= {goal}x {verdict} |"
