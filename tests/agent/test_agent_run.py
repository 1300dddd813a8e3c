"""`sandboxctl agent-run` through the installed CLI, on the local backend and on the real Docker engine."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from ..conftest import Cli, sandbox_containers
from .conftest import checksum, git, read_events, start_agent_run, wait_for

EVENT_ORDER = [
    "run.started",
    "sandbox.created",
    "workspace.ready",
    "setup.finished",
    "agent.output",
    "agent.exited",
    "result.collected",
    "sandbox.deleted",
    "run.finished",
]


def sandbox_gone(cli: Cli, backend: list[str], sandbox_id: str) -> bool:
    record = cli.ok("status", sandbox_id, "--json").json()
    containers = sandbox_containers(sandbox_id) if "docker" in backend else []
    return record["status"] == "deleted" and not containers


def test_success_deletes_the_sandbox_and_writes_a_patch(
    cli: Cli, backend: list[str], repo: Path, tmp_path: Path
) -> None:
    before = checksum(repo)
    agent = (
        'test "$(cat "$SANDBOXCTL_TASK_FILE")" = "$SANDBOXCTL_TASK" || exit 41; '
        'test "$(cat src/app.txt)" = app || exit 42; '  # the committed content, not the uncommitted edit
        'echo "$SANDBOXCTL_TASK" >> README.md; rm data.bin; printf "x\\0y" > new.bin; echo agent-says-hi'
    )
    result = cli(
        "agent-run",
        *backend,
        "--repo",
        str(repo),
        "--task",
        "add a line",
        "--setup",
        "echo setup-says-hi",
        "--output",
        str(tmp_path / "out"),
        "--json",
        "--",
        "sh",
        "-c",
        agent,
    )
    assert result.returncode == 0, str(result)
    summary = result.json()  # stdout is the summary alone; the agent's output went to stderr
    assert "agent-says-hi" in result.stderr and "setup-says-hi" in result.stderr, str(result)
    assert summary["status"] == "succeeded" and summary["exit_code"] == 0
    assert summary["base_commit"] == git("rev-parse", "HEAD", cwd=repo)
    assert sorted((f["change"], f["path"]) for f in summary["changed_files"]) == [
        ("added", "new.bin"),
        ("deleted", "data.bin"),
        ("modified", "README.md"),
    ]
    deletion = summary["sandbox_deletion"]
    assert deletion["success"] is True and deletion["sandbox_id"] == summary["sandbox_id"], deletion
    assert {"sandbox_id", "success", "message", "retries_used", "error", "skipped", "skip_reason"} <= set(deletion)
    assert sandbox_gone(cli, backend, summary["sandbox_id"])
    out = tmp_path / "out"
    assert (out / "changed-files.txt").read_text().split() == ["README.md", "data.bin", "new.bin"]
    assert json.loads((out / "summary.json").read_text())["run_id"] == summary["run_id"]
    # The patch applies to a fresh clone (binary-safe) and reproduces the agent's work.
    clone = tmp_path / "verify"
    git("clone", "-q", str(repo), str(clone))
    git("apply", "--binary", str(out / "patch.diff"), cwd=clone)
    assert (clone / "README.md").read_text() == "hello\nadd a line\n"
    assert (clone / "new.bin").read_bytes() == b"x\0y" and not (clone / "data.bin").exists()
    assert checksum(repo) == before, "the user's checkout was written to"


def test_failure_keeps_the_sandbox_and_it_still_answers_exec(cli: Cli, backend: list[str], repo: Path) -> None:
    agent = "echo partial >> README.md; exit 3"
    result = cli("agent-run", *backend, "--repo", str(repo), "--json", "--", "sh", "-c", agent)
    assert result.returncode == 3, str(result)
    summary = result.json()
    assert summary["status"] == "failed" and summary["exit_code"] == 3
    deletion = summary["sandbox_deletion"]
    assert deletion["skipped"] is True and deletion["success"] is False and "on-failure" in deletion["skip_reason"]
    assert summary["changed_files"] == [{"path": "README.md", "change": "modified"}]
    inside = cli.ok("exec", summary["sandbox_id"], "--", "cat", "README.md")
    assert inside.stdout == "hello\npartial\n", str(inside)
    assert cli.ok("status", summary["sandbox_id"], "--json").json()["labels"]["agent-run.id"] == summary["run_id"]


def test_timeout_exits_124_and_keeps_the_sandbox(cli: Cli, backend: list[str]) -> None:
    result = cli("agent-run", *backend, "--timeout", "2s", "--json", "--", "sh", "-c", "echo waiting; sleep 60")
    assert result.returncode == 124, str(result)
    assert "timed out" in result.stderr, str(result)
    summary = result.json()
    assert summary["status"] == "timed_out"
    assert summary["steps"]["agent"]["timed_out"] is True
    assert summary["sandbox_deletion"]["skipped"] is True
    cli.ok("exec", summary["sandbox_id"], "--", "true")


def test_keep_never_deletes_a_failed_run(cli: Cli, backend: list[str]) -> None:
    result = cli("agent-run", *backend, "--keep", "never", "--json", "--", "sh", "-c", "exit 5")
    assert result.returncode == 5, str(result)
    summary = result.json()
    assert summary["sandbox_deletion"]["success"] is True, summary
    assert sandbox_gone(cli, backend, summary["sandbox_id"])


def test_events_have_the_listed_types_in_order(cli: Cli, backend: list[str], repo: Path, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    result = cli(
        "agent-run",
        *backend,
        "--repo",
        str(repo),
        "--setup",
        "true",
        "--events",
        str(events_file),
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; sleep 1.5",
        env={"SANDBOXCTL_HEARTBEAT_SECONDS": "0.4"},
    )
    assert result.returncode == 0, str(result)
    # Off a terminal the agent's output passes through, each stream to its own.
    assert result.stdout == "out\n" and "err\n" in result.stderr, str(result)
    events = read_events(events_file)
    assert all({"ts", "run_id", "type"} <= set(e) for e in events)
    assert len({e["run_id"] for e in events}) == 1
    types = [e["type"] for e in events]
    positions = [types.index(kind) for kind in EVENT_ORDER]
    assert positions == sorted(positions), types
    beats = [e for e in events if e["type"] == "heartbeat"]
    assert beats and all(b["elapsed_seconds"] > 0 for b in beats), types
    outputs = {(e["stream"], e["text"]) for e in events if e["type"] == "agent.output"}
    assert outputs == {("stdout", "out\n"), ("stderr", "err\n")}
    assert types[-1] == "run.finished" and events[-1]["exit_code"] == 0


def test_secret_is_found_nowhere(cli: Cli, backend: list[str], repo: Path, home: Path, tmp_path: Path) -> None:
    secret = "s3cret-agent-token-9f8e7d"
    events_file = tmp_path / "events.jsonl"
    agent = 'test "$API_TOKEN" = "$EXPECTED" && echo token-ok; echo "leak $API_TOKEN"; echo "$API_TOKEN" >&2'
    outputs = [
        cli(
            "agent-run",
            *backend,
            "--repo",
            str(repo),
            "--env",
            f"API_TOKEN={secret}",
            "--env",
            "EXPECTED=" + secret,
            "--setup",
            'echo "setup $API_TOKEN"',
            "--keep",
            "always",
            "--events",
            str(events_file),
            "--json",
            "--",
            "sh",
            "-c",
            agent,
        )
    ]
    assert outputs[0].returncode == 0, str(outputs[0])
    assert "token-ok" in outputs[0].stderr, str(outputs[0])
    summary = outputs[0].json()
    assert summary["env_keys"] == ["API_TOKEN", "EXPECTED"]
    # An error path with --debug (tracebacks on) must not show it either.
    debug = cli(
        "--debug",
        "agent-run",
        *backend,
        "--repo",
        str(repo),
        "--ref",
        "no-such-ref",
        "--env",
        f"API_TOKEN={secret}",
        "--",
        "true",
    )
    assert debug.returncode == 2, str(debug)
    outputs += [
        debug,
        cli.ok("agent", "show", summary["run_id"], "--json"),
        cli.ok("agent", "show", summary["run_id"]),
        cli.ok("agent", "list", "--json"),
        cli.ok("status", "--all", "--json"),
    ]
    for output in outputs:
        assert secret not in output.stdout + output.stderr, str(output)
    assert secret not in events_file.read_text() and "leak ***" in events_file.read_text()
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    if "docker" in backend:
        for container in sandbox_containers(summary["sandbox_id"]):
            inspect = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True)
            assert secret not in inspect.stdout


def test_agent_send_is_readable_inside_while_the_agent_runs(cli: Cli, backend: list[str], tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    poll = (
        "i=0; while [ $i -lt 150 ]; do "
        'if grep -q hello-agent "$SANDBOXCTL_INBOX"; then cat "$SANDBOXCTL_INBOX"; exit 0; fi; '
        "sleep 0.2; i=$((i+1)); done; exit 9"
    )
    proc = start_agent_run(cli, *backend, "--events", str(events_file), "--json", "--", "sh", "-c", poll)
    try:
        started = wait_for(
            lambda: [e for e in read_events(events_file) if e["type"] == "agent.started"], what="agent.started"
        )
        run_id = started[0]["run_id"]
        sent = cli("agent", "send", run_id, 'hello-agent: "quoted"\nsecond line', "--json")
        assert sent.returncode == 0, str(sent)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    [line] = [line for line in stderr.splitlines() if "hello-agent" in line]
    message = json.loads(line)
    assert message["text"] == 'hello-agent: "quoted"\nsecond line' and message["ts"], line
    assert json.loads(stdout)["status"] == "succeeded"
    late = cli("agent", "send", run_id, "too late")
    assert late.returncode == 1 and "succeeded" in late.stderr, str(late)


def test_sigterm_mid_run_leaves_a_finalized_record(cli: Cli, backend: list[str], tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    proc = start_agent_run(cli, *backend, "--events", str(events_file), "--", "sh", "-c", "echo started; sleep 67")
    try:
        wait_for(lambda: any(e["type"] == "agent.output" for e in read_events(events_file)), what="agent output")
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    run_id = read_events(events_file)[0]["run_id"]
    record = cli.ok("agent", "show", run_id, "--json").json()
    assert record["status"] == "interrupted" and record["step"] == "done" and record["exit_code"] == 143, record
    assert record["steps"]["agent"]["interrupted"] == "SIGTERM"
    assert record["sandbox_deletion"]["skipped"] is True and record["sandbox_status"] == "running", record
    assert read_events(events_file)[-1]["type"] == "run.finished"
    every_process = ["ps", "-o", "args"] if "docker" in backend else ["ps", "-e", "-o", "args"]
    processes = cli.ok("exec", record["sandbox_id"], "--", *every_process).stdout
    assert "sleep 67" not in processes, processes


def test_push_branch_to_a_local_bare_origin(cli: Cli, backend: list[str], repo: Path, origin: Path) -> None:
    before = checksum(repo)
    result = cli(
        "agent-run",
        *backend,
        "--repo",
        str(repo),
        "--task",
        "Fix the greeting",
        "--push-branch",
        "agent/fix",
        "--json",
        "--",
        "sh",
        "-c",
        "echo fixed > README.md",
    )
    assert result.returncode == 0, str(result)
    push = result.json()["push"]
    assert push["pushed"] is True and push["branch"] == "agent/fix", push
    pushed = git("--git-dir", str(origin), "rev-parse", "agent/fix")
    assert pushed == push["commit"]
    assert git("--git-dir", str(origin), "rev-parse", "agent/fix^") == git("rev-parse", "HEAD", cwd=repo)
    assert git("--git-dir", str(origin), "show", "agent/fix:README.md") == "fixed"
    assert "Fix the greeting" in git("--git-dir", str(origin), "log", "-1", "--format=%B", "agent/fix")
    assert git("--git-dir", str(origin), "rev-parse", "agent/fix:data.bin", "main:data.bin").split("\n")[0] == git(
        "--git-dir", str(origin), "rev-parse", "main:data.bin"
    )
    assert checksum(repo) == before, "the user's checkout was written to"
