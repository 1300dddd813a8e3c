"""`sandboxctl cleanup` through the installed CLI against the real Docker engine.

Every container carries `cleanup-test=<tag>` and every `--orphans` run selects on it,
so these tests never touch containers of other tests (or people) on the same engine.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import SANDBOXCTL, Cli, sandbox_containers

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_cleanup")]


def create(cli: Cli, image: str, tag: str, *args: str) -> str:
    result = cli.ok("create", "--backend", "docker", "--image", image, "--label", f"cleanup-test={tag}", *args)
    return result.stdout.strip()


def create_many(cli: Cli, image: str, tag: str, count: int, *args: str) -> list[str]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: create(cli, image, tag, *args), range(count)))


def tagged_containers(tag: str) -> list[str]:
    """`docker ps -a` for this test's containers: id, state and labels, sorted."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            f"label=cleanup-test={tag}",
            "--format",
            "{{.ID}} {{.State}} {{.Labels}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # `{{.Labels}}` lists them in Go's map order, a new one each call: sorted here (no label of ours has a comma).
    rows = [[*line.split(" ", 2), ""] for line in out.splitlines()]
    return sorted(f"{cid} {state} {','.join(sorted(labels.split(',')))}" for cid, state, labels, *_ in rows)


def file_digests(home: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.glob("registry.db*"))
        if not p.name.endswith("-shm")
    }  # -shm is SQLite's shared-memory index, rebuilt by any reader


def seconds_since(iso: str) -> float:
    return time.time() - datetime.fromisoformat(iso).timestamp()


def backdate(home: Path, sandbox: str, column: str, by: timedelta) -> None:
    """Move one of a record's times into the past in the real registry file: age without sleeping,
    so the test holds on a loaded machine (a slow `create` cannot make a young sandbox look old)."""
    with sqlite3.connect(home / "registry.db") as conn:
        (value,) = conn.execute(f"SELECT {column} FROM sandbox WHERE id = ?", (sandbox,)).fetchone()
        moved = (datetime.fromisoformat(value) - by).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.execute(f"UPDATE sandbox SET {column} = ? WHERE id = ?", (moved, sandbox))


def test_cleanup_dry_run_changes_nothing(cli: Cli, home: Path, docker_image: str, tag: str) -> None:
    expired = create_many(cli, docker_image, tag, 2, "--ttl", "1s")
    vanished = create(cli, docker_image, tag, "--ttl", "1h")
    subprocess.run(["docker", "rm", "-f", *sandbox_containers(vanished)], check=True, capture_output=True)
    time.sleep(1)
    files, records, containers = file_digests(home), cli.ok("status", "--all", "--json").json(), tagged_containers(tag)

    plan = cli.ok("cleanup", "--dry-run", "--orphans", "--label", f"cleanup-test={tag}", "--json").json()

    assert plan["dry_run"] is True and plan["sandboxes_cleaned"] == 0 and plan["sandboxes_processed"] == 3
    assert {(s["sandbox_id"], s["reason"], s["result"]) for s in plan["sandboxes"]} == {
        (expired[0], "expired", "planned"),
        (expired[1], "expired", "planned"),
        (vanished, "vanished", "planned"),
    }
    table = cli.ok("cleanup", "--dry-run", "--orphans", "--label", f"cleanup-test={tag}")
    assert all(sandbox in table.stdout for sandbox in [*expired, vanished]), str(table)
    assert file_digests(home) == files
    assert cli.ok("status", "--all", "--json").json() == records
    assert tagged_containers(tag) == containers
    assert not (home / "cleanup.lock").exists()


def test_older_than_takes_only_the_old_and_reports_freed_space(
    cli: Cli, home: Path, docker_image: str, tag: str
) -> None:
    old = create(cli, docker_image, tag)
    cli.ok("exec", old, "--", "dd", "if=/dev/zero", "of=/tmp/ballast", "bs=1024", "count=512")
    young = create(cli, docker_image, tag)
    backdate(home, old, "created_at", timedelta(hours=2))
    summary = cli.ok("cleanup", "--older-than", "1h", "--json").json()
    assert [(s["sandbox_id"], s["reason"]) for s in summary["sandboxes"]] == [(old, "older_than")]
    assert summary["disk_space_freed_mb"] >= 0.5, summary
    assert sandbox_containers(old) == [] and len(sandbox_containers(young)) == 1
    assert cli.ok("status", old, "--json").json()["reason"] == "older_than"


def test_permanent_is_taken_only_with_force(cli: Cli, docker_image: str, tag: str) -> None:
    permanent = create(cli, docker_image, tag, "--policy", "permanent")
    ordinary = create(cli, docker_image, tag)
    summary = cli.ok("cleanup", "--older-than", "0s", "--json").json()
    assert [s["sandbox_id"] for s in summary["sandboxes"]] == [ordinary]
    assert len(sandbox_containers(permanent)) == 1
    summary = cli.ok("cleanup", "--older-than", "0s", "--force", "--json").json()
    assert [s["sandbox_id"] for s in summary["sandboxes"]] == [permanent]
    assert sandbox_containers(permanent) == []


def test_label_selectors_match_all_labels_and_limit_takes_the_oldest(cli: Cli, docker_image: str, tag: str) -> None:
    wanted = [
        create(cli, docker_image, tag, "--ttl", "1s", "--label", "team=ml", "--label", "env=ci") for _ in range(3)
    ]
    other_env = create(cli, docker_image, tag, "--ttl", "1s", "--label", "team=ml")
    other_team = create(cli, docker_image, tag, "--ttl", "1s", "--label", "team=web", "--label", "env=ci")
    time.sleep(1)
    selector = ("--label", "team=ml", "--label", "env=ci")
    first = cli.ok("cleanup", *selector, "--limit", "2", "--json").json()
    assert [s["sandbox_id"] for s in first["sandboxes"]] == wanted[:2]
    second = cli.ok("cleanup", *selector, "--json").json()
    assert [s["sandbox_id"] for s in second["sandboxes"]] == wanted[2:]
    live = {r["id"] for r in cli.ok("status", "--json").json()}
    assert live == {other_env, other_team}


def test_three_concurrent_cleanups_clean_each_sandbox_exactly_once(
    cli: Cli, home: Path, tmp_path: Path, docker_image: str, tag: str
) -> None:
    """Three cleanups over one shared registry (as three machines would run them: one lock each),
    racing for 12 expired sandboxes: the claims hand each sandbox to exactly one of them."""
    sandboxes = create_many(cli, docker_image, tag, 12, "--ttl", "1s")
    time.sleep(1)
    registry = str(home / "registry.db")
    procs = []
    for i in range(3):
        env = {**cli.env, "SANDBOXCTL_HOME": str(tmp_path / f"machine-{i}"), "SANDBOXCTL_DB": registry}
        procs.append(
            subprocess.Popen(
                [SANDBOXCTL, "cleanup", "--json", "--concurrency", "4"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    cleaned = [s["sandbox_id"] for out, _ in outputs for s in json.loads(out)["sandboxes"] if s["result"] == "cleaned"]
    assert sorted(cleaned) == sorted(sandboxes), outputs  # each once, none twice
    archived = cli.ok("status", "--all", "--json").json()
    assert sorted(r["id"] for r in archived) == sorted(sandboxes)
    assert {r["status"] for r in archived} == {"deleted"}
    assert tagged_containers(tag) == []


def test_orphans_are_cleaned_after_the_registry_file_is_deleted(
    cli: Cli, home: Path, docker_image: str, tag: str
) -> None:
    expired = create_many(cli, docker_image, tag, 2, "--ttl", "1s")
    unexpired = create(cli, docker_image, tag, "--ttl", "1h")
    for path in home.glob("registry.db*"):
        path.unlink()
    time.sleep(1)
    summary = cli.ok("cleanup", "--orphans", "--label", f"cleanup-test={tag}", "--json").json()
    assert sorted((s["sandbox_id"], s["reason"], s["result"]) for s in summary["sandboxes"]) == sorted(
        (sandbox, "orphan_expired", "cleaned") for sandbox in expired
    ), summary
    assert all(sandbox_containers(sandbox) == [] for sandbox in expired)
    # Unexpired and made by another (here: the lost) registry: its own registry decides, not us.
    assert len(sandbox_containers(unexpired)) == 1
    assert sorted(r["id"] for r in cli.ok("status", "--all", "--json").json()) == sorted(expired)


def test_container_removed_behind_our_back_closes_the_record_as_vanished(cli: Cli, docker_image: str, tag: str) -> None:
    sandbox = create(cli, docker_image, tag)
    kept = create(cli, docker_image, tag)
    subprocess.run(["docker", "rm", "-f", *sandbox_containers(sandbox)], check=True, capture_output=True)
    result = cli("cleanup", "--orphans", "--label", f"cleanup-test={tag}", "--json")
    assert result.returncode == 0, str(result)
    summary = result.json()
    assert summary["sandboxes_failed"] == 0 and summary["errors"] == []
    assert [(s["sandbox_id"], s["reason"], s["result"]) for s in summary["sandboxes"]] == [
        (sandbox, "vanished", "cleaned")
    ]
    record = cli.ok("status", sandbox, "--json").json()
    assert record["status"] == "deleted" and record["reason"] == "vanished" and record["delete_attempts"] == 0
    assert cli.ok("status", kept, "--json").json()["status"] == "running"


@pytest.mark.parametrize("delay", [0.6, 1.0])
def test_sigkill_during_create_then_orphans_leaves_no_container_without_a_live_record(
    cli: Cli, docker_image: str, tag: str, delay: float
) -> None:
    proc = subprocess.Popen(
        [SANDBOXCTL, "create", "--image", docker_image, "--label", f"cleanup-test={tag}"],
        env=cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = cli("cleanup", "--orphans", "--label", f"cleanup-test={tag}", "--json")
    assert result.returncode == 0, str(result)
    live = {r["id"]: r for r in cli.ok("status", "--json").json()}
    assert all(r["status"] == "running" for r in live.values()), live  # no `creating` left behind
    labelled = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=cleanup-test={tag}", "--format", '{{.Label "sandboxctl.id"}}'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(labelled) <= set(live), (labelled, live, result.stdout)


def test_metrics_file_parses_and_counts_across_runs(cli: Cli, tmp_path: Path, docker_image: str, tag: str) -> None:
    create(cli, docker_image, tag, "--ttl", "1s")
    create(cli, docker_image, tag, "--ttl", "1h")
    time.sleep(1)
    metrics = tmp_path / "textfile" / "sandboxctl.prom"
    cli.ok("cleanup", "--metrics-file", str(metrics))
    cli.ok("cleanup", "--metrics-file", str(metrics))
    samples = {s.name: s.value for f in text_string_to_metric_families(metrics.read_text()) for s in f.samples}
    for name in (
        "sandbox_cleanup_total",
        "sandbox_cleanup_duration_seconds_count",
        "sandbox_cleanup_errors_total",
        "sandbox_active_count",
        "sandbox_expired_count",
    ):
        assert name in samples, samples
    assert samples["sandbox_cleanup_total"] == 1 and samples["sandbox_cleanup_errors_total"] == 0
    assert samples["sandbox_active_count"] == 1 and samples["sandbox_expired_count"] == 0
    assert samples["sandbox_cleanup_duration_seconds_count"] == 2  # a histogram over both runs
    assert [p.name for p in metrics.parent.iterdir()] == ["sandboxctl.prom"]  # no temp file left behind


def test_idle_timeout_counts_from_the_last_exec(cli: Cli, home: Path, docker_image: str, tag: str) -> None:
    """Times are moved back in the registry file instead of slept through, so load cannot flip the outcome."""
    sandbox = create(cli, docker_image, tag, "--idle-timeout", "1h")
    backdate(home, sandbox, "created_at", timedelta(hours=2))
    backdate(home, sandbox, "last_accessed", timedelta(hours=2))  # idle since creation: due
    cli.ok("exec", sandbox, "--", "true")  # ... but used just now
    kept = cli.ok("cleanup", "--json").json()
    assert kept["sandboxes"] == [], kept
    backdate(home, sandbox, "last_accessed", timedelta(hours=1, minutes=1))  # that exec was 61 minutes ago
    taken = cli.ok("cleanup", "--json").json()
    assert [(s["sandbox_id"], s["reason"]) for s in taken["sandboxes"]] == [(sandbox, "idle")]
    assert sandbox_containers(sandbox) == []


def test_failed_deletion_exits_1_is_kept_retried_and_flagged_stuck(
    cli: Cli, tmp_path: Path, docker_image: str, tag: str
) -> None:
    sandbox = create(cli, docker_image, tag, "--ttl", "1s")
    time.sleep(1)
    dead_engine = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    for attempt in (1, 2, 3):
        result = cli("cleanup", "--json", env=dead_engine)
        assert result.returncode == 1, str(result)
        summary = result.json()
        assert summary["sandboxes_failed"] == 1 and summary["sandboxes_cleaned"] == 0
        [error] = summary["errors"]
        assert error["sandbox_id"] == sandbox and "unreachable" in error["error"], error
        assert error["attempts"] == attempt and error["stuck"] is (attempt >= 3)
        record = cli.ok("status", sandbox, "--json").json()
        assert record["status"] == "failed" and record["delete_attempts"] == attempt and record["last_error"]
    plain = cli("cleanup", env=dead_engine)
    assert plain.returncode == 1 and f"error: could not delete {sandbox}" in plain.stderr, str(plain)
    assert "stuck" in plain.stderr
    assert len(sandbox_containers(sandbox)) == 1
    summary = cli.ok("cleanup", "--json").json()
    assert [(s["sandbox_id"], s["result"]) for s in summary["sandboxes"]] == [(sandbox, "cleaned")]
    assert sandbox_containers(sandbox) == []
