"""Whole-process timing helpers shared by the benchmark scripts (median of repeated runs)."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence


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
