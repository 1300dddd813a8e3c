"""Prometheus text-format metrics of a cleanup run, for node-exporter's textfile collector.

Each run is a fresh process, so counters are carried over: a run reads the totals of
the file it replaces and adds its own, which keeps `increase(sandbox_cleanup_total[1d])`
meaningful. prometheus_client is imported here only (~0.1 s), when --metrics-file is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from sandboxctl.services.cleanup.report import CleanupReport

DURATION = "sandbox_cleanup_duration_seconds"  # a histogram over runs: _bucket, _sum, _count
# Upper bounds (seconds) fit for runs of 1 s to 1 h: a cron cleanup is seconds; a backlog, minutes.
DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
CLEANED = "sandbox_cleanup"  # exposed as sandbox_cleanup_total
ERRORS = "sandbox_cleanup_errors"  # sandbox_cleanup_errors_total
FREED = "sandbox_cleanup_freed_bytes"  # sandbox_cleanup_freed_bytes_total


def previous_totals(path: Path) -> dict[str, float]:
    """Counter totals of an earlier file; {} when absent or unreadable (Prometheus copes with a reset)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text()
        return {
            sample.name: float(sample.value)
            for family in text_string_to_metric_families(text)
            if family.type == "counter"
            for sample in family.samples
            if sample.name.endswith("_total")
        }
    except (OSError, ValueError):
        return {}


def previous_duration(path: Path) -> dict[str, float]:
    """The duration histogram's samples of an earlier file (`le` -> cumulative count, `sum`, `count`);
    {} when absent, unreadable, or written before it was a histogram (a gauge then)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        families = list(text_string_to_metric_families(path.read_text()))
    except (OSError, ValueError):
        return {}
    found: dict[str, float] = {}
    for family in families:
        if family.name != DURATION or family.type != "histogram":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                found[sample.labels["le"]] = float(sample.value)
            elif sample.name.endswith("_sum"):
                found["sum"] = float(sample.value)
            elif sample.name.endswith("_count"):
                found["count"] = float(sample.value)
    return found


def duration_histogram(previous: dict[str, float], seconds: float) -> Metric:
    """The runs' duration histogram, carried over like the counters, with this run observed."""
    from prometheus_client.metrics_core import HistogramMetricFamily
    from prometheus_client.utils import floatToGoString

    bounds = [floatToGoString(b) for b in DURATION_BUCKETS] + ["+Inf"]
    buckets = [(label, previous.get(label, 0.0) + (1.0 if seconds <= float(label) else 0.0)) for label in bounds]
    return HistogramMetricFamily(
        DURATION,
        "Duration of cleanup runs, across runs.",
        buckets=buckets,
        sum_value=previous.get("sum", 0.0) + seconds,
    )


def write_cleanup_metrics(path: Path, report: CleanupReport) -> None:
    """Write the run's metrics atomically (temp file + rename, as `write_to_textfile` does)."""
    from prometheus_client import CollectorRegistry, write_to_textfile
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    totals = previous_totals(path)

    def counter(name: str, documentation: str, added: float) -> Metric:
        return CounterMetricFamily(name, documentation, value=totals.get(f"{name}_total", 0.0) + added)

    families = [
        counter(CLEANED, "Sandboxes deleted or closed by cleanup, across runs.", report.cleaned),
        counter(ERRORS, "Failed deletions and unreadable backends in cleanup, across runs.", len(report.all_errors)),
        counter(FREED, "Disk space freed by cleanup (container writable layers), across runs.", report.freed_bytes),
        duration_histogram(previous_duration(path), report.duration_seconds),
        GaugeMetricFamily(
            "sandbox_cleanup_last_duration_seconds", "Duration of the last cleanup run.", value=report.duration_seconds
        ),
        GaugeMetricFamily(
            "sandbox_cleanup_last_run_timestamp_seconds",
            "When the last cleanup run completed (Unix time).",
            value=report.completed_at.timestamp(),
        ),
        GaugeMetricFamily(
            "sandbox_active_count", "Live sandboxes in the registry after the last cleanup.", value=report.active_count
        ),
        GaugeMetricFamily(
            "sandbox_expired_count",
            "Live sandboxes past their expiry after the last cleanup: should stay near 0.",
            value=report.expired_count,
        ),
    ]

    class _RunCollector(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RunCollector())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
