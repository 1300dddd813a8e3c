"""The operator's side of agent runs: states shown while running, kept sandboxes' lifetime, logs, cancel, filters."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sandboxctl.registry.store import Registry

from ..conftest import SANDBOXCTL, Cli
from .conftest import read_events, start_agent_run, wait_for

LOCAL = ("--backend", "local")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def agent_output_seen(events_file: Path) -> str:
    started = wait_for(lambda: [e for e in read_events(events_file) if e["type"] == "agent.output"], what="output")
    return str(started[0]["run_id"])


def finish(proc: subprocess.Popen[str], *, timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        proc.kill()


# -- state -------------------------------------------------------------------------
def test_the_state_is_persisted_while_the_run_moves(cli: Cli, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    gate = tmp_path / "gate"
    agent = f"echo waiting; while [ ! -e {gate} ]; do sleep 0.1; done"
    proc = start_agent_run(cli, *LOCAL, "--events", str(events_file), "--json", "--", "sh", "-c", agent)
    try:
        run_id = agent_output_seen(events_file)
        shown = cli.ok("agent", "show", run_id, "--json").json()
        assert (shown["status"], shown["state"], shown["step"]) == ("running", "running", "agent"), shown
        table = cli.ok("agent", "list").stdout
        assert "STATE" in table and run_id in table
        gate.touch()
        stdout, stderr = finish(proc)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["state"] == "succeeded"
    assert cli.ok("agent", "show", run_id, "--json").json()["state"] == "succeeded"


def test_an_old_registry_gains_the_state_columns(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    Registry(f"sqlite:///{path}").engine.dispose()
    with sqlite3.connect(path) as conn:
        for column in ("state", "kept_until", "cancel_requested_at"):
            conn.execute(f"ALTER TABLE agent_runs DROP COLUMN {column}")
        conn.execute("DELETE FROM schema_migrations WHERE name = 'm006_agent_run_states'")
        conn.execute("PRAGMA user_version=3")
    Registry(f"sqlite:///{path}").engine.dispose()
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(agent_runs)")}
    assert {"state", "kept_until", "cancel_requested_at"} <= columns


# -- keep-for, and the sandbox's own lifetime ------------------------------------------
def test_a_sandbox_kept_after_a_failure_expires_keep_for_after_the_run(cli: Cli) -> None:
    result = cli("agent-run", *LOCAL, "--keep-for", "2h", "--", "sh", "-c", "exit 3")
    assert result.returncode == 3, str(result)
    run = cli.ok("agent", "list", "--json").json()[0]
    kept_until = when(run["kept_until"])
    assert kept_until - when(run["finished_at"]) == timedelta(hours=2), run
    sandbox = cli.ok("status", run["sandbox_id"], "--json").json()
    assert when(sandbox["expires_at"]) == kept_until, sandbox
    hint = f"sandboxctl extend {run['sandbox_id']} --ttl DUR"
    assert hint in result.stderr.splitlines()[-1], str(result)  # the final progress line
    assert hint in cli.ok("agent", "show", run["run_id"]).stdout


def test_keep_for_comes_from_config_and_spares_successes(cli: Cli) -> None:
    failed = cli("agent-run", *LOCAL, "--json", "--", "false", env={"SANDBOXCTL_AGENT_KEEP_FOR": "3h"})
    assert failed.returncode == 1, str(failed)
    summary = failed.json()
    assert when(summary["kept_until"]) - when(summary["finished_at"]) == timedelta(hours=3), summary
    kept = cli("agent-run", *LOCAL, "--json", "--keep", "always", "--ttl", "10m", "--keep-for", "1m", "--", "true")
    assert kept.returncode == 0, str(kept)
    assert kept.json()["kept_until"] is None
    sandbox = cli.ok("status", kept.json()["sandbox_id"], "--json").json()
    assert when(sandbox["expires_at"]) - when(sandbox["created_at"]) == timedelta(minutes=10), sandbox


def test_agent_run_takes_the_sandbox_lifetime_options(cli: Cli) -> None:
    result = cli(
        "agent-run",
        *LOCAL,
        "--json",
        "--keep",
        "always",
        "--idle-timeout",
        "5m",
        "--policy",
        "permanent",
        "--",
        "false",
    )
    assert result.returncode == 1, str(result)
    summary = result.json()
    sandbox = cli.ok("status", summary["sandbox_id"], "--json").json()
    assert sandbox["policy"] == "permanent" and sandbox["expires_at"] is None, sandbox  # keep-for spares permanent
    assert sandbox["idle_timeout_seconds"] == 300, sandbox
    assert summary["kept_until"] is None
    for bad in (("--ttl", "soon"), ("--idle-timeout", "-1m"), ("--policy", "forever"), ("--keep-for", "5")):
        refused = cli("agent-run", *LOCAL, *bad, "--", "true")
        assert refused.returncode == 2 and refused.stderr.startswith("error: "), str(refused)
    assert len(cli.ok("agent", "list", "--json").json()) == 1


# -- logs --------------------------------------------------------------------------
FORGED = '{"ts": "x", "run_id": "000000000000", "type": "agent.output", "stream": "stdout", "text": "forged"}'


def test_agent_logs_split_streams_after_the_run(cli: Cli) -> None:
    # The agent prints something that looks like an event line: it stays text.
    agent = f"echo out-one; echo err-one >&2; printf '%s\\n' '{FORGED}'; printf 'no newline'"
    result = cli("agent-run", *LOCAL, "--json", "--", "sh", "-c", agent)
    assert result.returncode == 0, str(result)
    run_id = result.json()["run_id"]
    logs = cli.ok("agent", "logs", run_id[:6])
    assert logs.stdout == f"out-one\n{FORGED}\nno newline", str(logs)
    assert logs.stderr == "err-one\n", str(logs)
    events = [json.loads(line) for line in cli.ok("agent", "logs", run_id, "--events").stdout.splitlines()]
    assert events[0]["type"] == "run.started" and events[-1]["type"] == "run.finished"
    assert {e["run_id"] for e in events} == {run_id}
    missing = cli("agent", "logs", "ffffffffffff")
    assert missing.returncode == 3 and missing.stderr.startswith("error: "), str(missing)


def test_agent_logs_follow_a_running_agent_and_exit_with_its_code(cli: Cli, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    gate = tmp_path / "gate"
    agent = f"echo first; while [ ! -e {gate} ]; do sleep 0.1; done; echo last; exit 5"
    proc = start_agent_run(cli, *LOCAL, "--timeout", "2m", "--events", str(events_file), "--", "sh", "-c", agent)
    try:
        run_id = agent_output_seen(events_file)
        follower = subprocess.Popen(
            [SANDBOXCTL, "agent", "logs", run_id, "--follow"],
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert follower.stdout is not None
            assert follower.stdout.readline() == "first\n"  # printed while the run is still going
            gate.touch()
            rest, errors = follower.communicate(timeout=60)
        finally:
            follower.kill()
        finish(proc)
    finally:
        proc.kill()
    assert proc.returncode == 5
    assert follower.returncode == 5, errors
    assert rest == "last\n"


def test_agent_logs_survive_a_hostile_events_file(cli: Cli) -> None:
    result = cli("agent-run", *LOCAL, "--json", "--", "echo", "real")
    assert result.returncode == 0, str(result)
    summary = result.json()
    run_id = summary["run_id"]
    events = Path(summary["events_path"])
    good = {"ts": "t", "run_id": run_id, "type": "agent.output"}
    hostile = [
        b"not json at all",
        b"[1, 2, 3]",
        b"\xff\xfe binary \x00",
        b"[" * 100_000,  # nesting deep enough to exhaust a recursive parser
        json.dumps({**good, "stream": "stdout", "text": ["not", "text"]}).encode(),
        json.dumps({**good, "stream": "/etc/passwd", "text": "bad stream"}).encode(),
        json.dumps({**good, "run_id": "000000000000", "stream": "stdout", "text": "other run"}).encode(),
        json.dumps({**good, "stream": "stdout", "text": "x" * (9 * 1024 * 1024)}).encode(),  # over the line limit
        json.dumps({**good, "stream": "stdout", "text": "still read\n"}).encode(),
        json.dumps({**good, "stream": "stdout", "text": "no newline at the end"}).encode(),
    ]
    with events.open("ab") as handle:
        handle.write(b"\n".join(hostile))
    logs = cli("agent", "logs", run_id)
    assert logs.returncode == 0, str(logs)[:2000]
    assert logs.stdout == "real\nstill read\n", logs.stdout[:2000]
    assert "Traceback" not in logs.stderr
    raw = cli.ok("agent", "logs", run_id, "--events").stdout.splitlines()
    assert all(json.loads(line)["run_id"] == run_id for line in raw)


# -- cancel ------------------------------------------------------------------------
def test_agent_cancel_finalizes_by_the_keep_policy(cli: Cli, backend: list[str], tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    agent = "echo started; sleep 71"
    proc = start_agent_run(cli, *backend, "--keep-for", "1h", "--events", str(events_file), "--", "sh", "-c", agent)
    try:
        run_id = agent_output_seen(events_file)
        cancelled = cli("agent", "cancel", run_id, "--json")
        _stdout, stderr = finish(proc)
    finally:
        proc.kill()
    assert cancelled.returncode == 0, str(cancelled)
    assert proc.returncode == 130, stderr
    record = cli.ok("agent", "show", run_id, "--json").json()
    assert cancelled.json()["status"] == record["status"] == record["state"] == "cancelled", record
    assert record["exit_code"] == 130 and record["cancel_requested_at"], record
    assert record["sandbox_deletion"]["skipped"] is True and record["sandbox_status"] == "running", record
    assert when(record["kept_until"]) - when(record["finished_at"]) == timedelta(hours=1)
    every_process = ["ps", "-o", "args"] if "docker" in backend else ["ps", "-e", "-o", "args"]
    assert "sleep 71" not in cli.ok("exec", record["sandbox_id"], "--", *every_process).stdout  # the agent is gone
    interrupted = [e for e in read_events(events_file) if e["type"] == "run.interrupted"]
    assert interrupted and interrupted[0]["cancelled"] is True
    assert "cancel requested" in stderr
    again = cli("agent", "cancel", run_id)
    assert again.returncode == 1 and "already finished" in again.stderr, str(again)
    assert cli.ok("agent", "list", "--state", "cancelled", "-q").stdout == f"{run_id}\n"


def test_agent_cancel_refuses_a_run_of_another_host(cli: Cli, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [SANDBOXCTL, "agent-run", *LOCAL, "--events", str(events_file), "--", "sh", "-c", "echo started; sleep 73"],
        env={**cli.env, "SANDBOXCTL_HOSTNAME": "elsewhere.example"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = agent_output_seen(events_file)
        refused = cli("agent", "cancel", run_id)
        assert refused.returncode == 1, str(refused)
        assert refused.stderr.startswith("error: ") and "elsewhere.example" in refused.stderr, str(refused)
        shown = cli.ok("agent", "show", run_id, "--json").json()
        assert shown["status"] == "running" and shown["cancel_requested_at"] is None, shown
        proc.send_signal(signal.SIGTERM)  # the test's own cleanup: a plain SIGTERM is an interruption
        finish(proc)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert cli.ok("agent", "show", run_id, "--json").json()["status"] == "interrupted"
    unknown = cli("agent", "cancel", "ffffffffffff")
    assert unknown.returncode == 3, str(unknown)


# -- list filters ------------------------------------------------------------------
def test_agent_list_filters_by_state_and_age(cli: Cli, home: Path) -> None:
    ok = cli.ok("agent-run", *LOCAL, "--json", "--", "true").json()["run_id"]
    failed = cli("agent-run", *LOCAL, "--json", "--", "false").json()["run_id"]
    old = cli("agent-run", *LOCAL, "--json", "--", "sh", "-c", "exit 2").json()["run_id"]
    with sqlite3.connect(home / "registry.db") as conn:
        conn.execute("UPDATE agent_runs SET started_at = '2020-01-01 00:00:00.000000' WHERE id = ?", (old,))
    assert cli.ok("agent", "list", "-q").stdout.split() == [failed, ok, old]  # newest first
    assert cli.ok("agent", "list", "--state", "failed", "-q").stdout.split() == [failed, old]
    both = cli.ok("agent", "list", "--state", "failed", "--state", "succeeded", "--since", "1d", "--json").json()
    assert [run["run_id"] for run in both] == [failed, ok]
    assert cli.ok("agent", "list", "--state", "running", "-q").stdout == ""
    for bad in (("--state", "done"), ("--since", "yesterday")):
        refused = cli("agent", "list", *bad)
        assert refused.returncode == 2 and refused.stderr.startswith("error: "), str(refused)


@pytest.mark.parametrize("command", ["logs", "cancel", "list"])
def test_new_agent_commands_end_their_help_with_examples(cli: Cli, command: str) -> None:
    text = cli.ok("agent", command, "--help").stdout
    tail = text[text.index("Examples:") :]
    assert tail.count("sandboxctl agent") >= 2, text


def test_agent_logs_of_a_run_elsewhere_say_where_its_events_are(cli: Cli) -> None:
    result = cli("agent-run", *LOCAL, "--json", "--", "true", env={"SANDBOXCTL_HOSTNAME": "elsewhere.example"})
    assert result.returncode == 0, str(result)
    Path(result.json()["events_path"]).unlink()  # as seen from another machine sharing the registry
    logs = cli("agent", "logs", result.json()["run_id"], "--follow")
    assert logs.returncode == 1 and "elsewhere.example" in logs.stderr, str(logs)
    assert logs.stderr.startswith("error: ") and len(logs.stderr.splitlines()) == 1, str(logs)
