"""Cleanup metrics: the run duration is a histogram over runs; the counters carry over as before."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Cli

EXPECTED_BOUNDS = ["1.0", "2.5", "5.0", "10.0", "30.0", "60.0", "120.0", "300.0", "600.0", "1200.0", "1800.0"]


def _families(path: Path) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(path.read_text())}


def test_cleanup_duration_is_a_histogram_carried_over_between_runs(cli: Cli, tmp_path: Path) -> None:
    metrics = tmp_path / "textfile" / "sandboxctl.prom"
    cli.ok("create", "--backend", "local", "--ttl", "0s")
    cli.ok("cleanup", "--metrics-file", str(metrics))
    cli.ok("cleanup", "--metrics-file", str(metrics))
    families = _families(metrics)
    duration = families["sandbox_cleanup_duration_seconds"]
    assert duration.type == "histogram"  # type: ignore[attr-defined]
    samples = duration.samples  # type: ignore[attr-defined]
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert list(buckets) == [*EXPECTED_BOUNDS, "3600.0", "+Inf"]
    counts = list(buckets.values())
    assert counts == sorted(counts) and buckets["+Inf"] == 2  # cumulative, both runs observed
    by_name = {s.name: s.value for s in samples}
    assert by_name["sandbox_cleanup_duration_seconds_count"] == 2
    assert by_name["sandbox_cleanup_duration_seconds_sum"] >= 0
    cleaned = families["sandbox_cleanup"].samples  # type: ignore[attr-defined]
    assert [(s.name, s.value) for s in cleaned] == [("sandbox_cleanup_total", 1.0)]
    assert families["sandbox_cleanup_last_duration_seconds"].type == "gauge"  # type: ignore[attr-defined]


def test_a_file_from_before_the_histogram_is_replaced_cleanly(cli: Cli, tmp_path: Path) -> None:
    metrics = tmp_path / "sandboxctl.prom"
    metrics.write_text(
        "# HELP sandbox_cleanup_total Sandboxes deleted or closed by cleanup, across runs.\n"
        "# TYPE sandbox_cleanup_total counter\n"
        "sandbox_cleanup_total 7.0\n"
        "# HELP sandbox_cleanup_duration_seconds Duration of the last cleanup run.\n"
        "# TYPE sandbox_cleanup_duration_seconds gauge\n"
        "sandbox_cleanup_duration_seconds 42.0\n"
    )
    cli.ok("cleanup", "--metrics-file", str(metrics))
    families = _families(metrics)
    samples = {s.name: s.value for s in families["sandbox_cleanup_duration_seconds"].samples}  # type: ignore[attr-defined]
    assert samples["sandbox_cleanup_duration_seconds_count"] == 1  # the old gauge is not mistaken for a run
    assert families["sandbox_cleanup"].samples[0].value == 7.0  # type: ignore[attr-defined]
