"""agent-run details that do not depend on the backend, on the fast `local` backend."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from pathlib import Path

import pytest

from ..conftest import SANDBOXCTL, Cli
from .conftest import checksum, git, read_events

LOCAL = ("--backend", "local")


def run_json(cli: Cli, *args: str, code: int = 0, **kwargs: object) -> dict:
    result = cli("agent-run", *LOCAL, "--json", *args, **kwargs)  # type: ignore[arg-type]
    assert result.returncode == code, str(result)
    return result.json()


def test_git_url_at_a_ref_is_cloned_on_the_host(cli: Cli, origin: Path) -> None:
    url = f"file://{origin}"
    agent = "test -f FEATURE.md && echo more >> FEATURE.md"
    summary = run_json(cli, "--repo", url, "--ref", "feature", "--", "sh", "-c", agent)
    assert summary["base_commit"] == git("--git-dir", str(origin), "rev-parse", "feature")
    assert summary["repo"] == url and summary["ref"] == "feature"
    assert summary["changed_files"] == [{"path": "FEATURE.md", "change": "modified"}]


def test_url_credentials_are_never_recorded_or_printed(cli: Cli, db: str | None, home: Path) -> None:
    token = "tok3n-in-the-url-5150"
    result = cli("agent-run", *LOCAL, "--repo", f"https://user:{token}@127.0.0.1:9/repo.git", "--", "true")
    assert result.returncode == 1, str(result)
    assert result.stderr.splitlines()[-1].startswith("error: git clone failed"), str(result)
    assert token not in result.stdout + result.stderr
    for path in home.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    [run] = cli.ok("agent", "list", "--json").json()
    assert run["status"] == "error" and run["repo"] == "https://***@127.0.0.1:9/repo.git" and run["sandbox_id"] is None


def test_plain_directory_is_copied_and_left_untouched(cli: Cli, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "docs").mkdir(parents=True)
    (plain / "docs" / "notes.txt").write_text("one\n")
    before = checksum(plain)
    summary = run_json(cli, "--repo", str(plain), "--", "sh", "-c", "echo two >> docs/notes.txt")
    assert summary["base_commit"] is None
    assert summary["changed_files"] == [{"path": "docs/notes.txt", "change": "modified"}]
    assert "+two" in Path(summary["patch_path"]).read_text()
    assert checksum(plain) == before


def test_without_repo_the_workspace_starts_empty(cli: Cli) -> None:
    summary = run_json(cli, "--", "sh", "-c", 'test -z "$(ls)" && echo made > made.txt')
    assert summary["changed_files"] == [{"path": "made.txt", "change": "added"}]


def test_task_file_reaches_the_agent(cli: Cli, tmp_path: Path) -> None:
    task = tmp_path / "task.md"
    task.write_text("# Fix it\n\nline two ✓\n")
    check = 'printf %s "$SANDBOXCTL_TASK" > seen.md && cmp seen.md "$SANDBOXCTL_TASK_FILE"'
    summary = run_json(cli, "--task-file", str(task), "--keep", "always", "--", "sh", "-c", check)
    assert summary["task"] == task.read_text()
    seen = cli.ok("exec", summary["sandbox_id"], "--", "cat", "seen.md").stdout
    assert seen == task.read_text()


def test_setup_failure_skips_the_agent_and_keeps_the_sandbox(cli: Cli, db: str | None, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    summary = run_json(cli, "--setup", "exit 7", "--events", str(events_file), "--", "true", code=7)
    assert summary["status"] == "failed" and summary["steps"]["setup"]["status"] == "failed"
    assert "agent" not in summary["steps"] and summary["sandbox_deletion"]["skipped"] is True
    types = [e["type"] for e in read_events(events_file)]
    assert "setup.finished" in types and "agent.started" not in types


def test_push_is_skipped_when_the_agent_fails(cli: Cli, repo: Path, origin: Path) -> None:
    summary = run_json(cli, "--repo", str(repo), "--push-branch", "agent/x", "--", "sh", "-c", "exit 4", code=4)
    assert summary["push"]["pushed"] is False and summary["push"]["skip_reason"]
    assert "agent/x" not in git("--git-dir", str(origin), "branch", "--list")


def test_failed_deletion_is_reported_and_does_not_fail_the_run(cli: Cli, db: str | None) -> None:
    # A non-empty `.deleting-<id>` beside the sandbox makes the local backend's rename-then-remove fail.
    block = 'd=$(dirname "$SANDBOXCTL_WORKSPACE"); mkdir -p "$(dirname "$d")/.deleting-$(basename "$d")/x"'
    result = cli("agent-run", *LOCAL, "--keep", "never", "--json", "--", "sh", "-c", block)
    assert result.returncode == 0, str(result)
    deletion = result.json()["sandbox_deletion"]
    assert deletion["success"] is False and deletion["error"] and deletion["skipped"] is False, deletion
    assert "warning:" in result.stderr and "deletion failed" in result.stderr, str(result)
    record = cli.ok("agent", "show", result.json()["run_id"], "--json").json()
    assert record["status"] == "succeeded" and record["sandbox_deletion"] == deletion
    assert record["sandbox_status"] == "failed"


def test_events_dash_is_stdout_or_stderr_with_json(cli: Cli) -> None:
    plain = cli("agent-run", *LOCAL, "--events", "-", "--", "sh", "-c", "echo hi")
    assert plain.returncode == 0, str(plain)
    events = [json.loads(line) for line in plain.stdout.splitlines()]  # stdout: JSON lines only
    assert events[0]["type"] == "run.started" and events[-1]["type"] == "run.finished"
    assert any(e["type"] == "agent.output" and e["text"] == "hi\n" for e in events), events
    with_json = cli("agent-run", *LOCAL, "--events", "-", "--json", "--", "sh", "-c", "echo hi")
    assert with_json.returncode == 0, str(with_json)
    assert with_json.json()["status"] == "succeeded"
    assert any(json.loads(line)["type"] == "run.finished" for line in with_json.stderr.splitlines() if line[:1] == "{")


def test_usage_errors_exit_2_and_create_no_sandbox(cli: Cli, repo: Path, tmp_path: Path) -> None:
    task = tmp_path / "t.md"
    task.write_text("x")
    plain = tmp_path / "plain"
    plain.mkdir()
    cases = [
        ("--task", "a", "--task-file", str(task), "--", "true"),
        ("--task-file", str(tmp_path / "missing.md"), "--", "true"),
        ("--",),
        (),
        ("--bogus", "--", "true"),
        ("--keep", "sometimes", "--", "true"),
        ("--timeout", "5", "--", "true"),
        ("--env", "1BAD=x", "--", "true"),
        ("--label", "sandboxctl.id=x", "--", "true"),
        ("--repo", str(tmp_path / "nowhere"), "--", "true"),
        ("--repo", str(repo), "--ref", "no-such-ref", "--", "true"),
        ("--repo", str(plain), "--ref", "main", "--", "true"),
        ("--repo", str(plain), "--push-branch", "x", "--", "true"),
        ("--repo", str(repo), "--push-branch", "bad..name", "--", "true"),
        ("--repo", str(repo), "--output", str(repo / "out"), "--", "true"),
        ("--backend", "nope", "--", "true"),
    ]
    for args in cases:
        result = cli("agent-run", *LOCAL, *args)
        assert result.returncode == 2, str(result)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, str(result)
    bad_heartbeat = cli("agent-run", *LOCAL, "--", "true", env={"SANDBOXCTL_HEARTBEAT_SECONDS": "soon"})
    assert bad_heartbeat.returncode == 2, str(bad_heartbeat)
    assert cli.ok("status", "--all", "--json").json() == []
    assert not (repo / "out").exists()


def test_agent_list_and_show(cli: Cli, db: str | None) -> None:
    first = run_json(cli, "--task", "first task", "--", "true")
    second = run_json(cli, "--", "sh", "-c", "exit 2", code=2)
    listed = cli.ok("agent", "list", "--json").json()
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    table = cli.ok("agent", "list").stdout
    assert "RUN" in table and first["run_id"] in table and "first task" in table
    shown = cli.ok("agent", "show", first["run_id"][:6], "--json").json()
    assert shown["run_id"] == first["run_id"] and shown["status"] == "succeeded"
    assert shown["sandbox_status"] == "deleted"
    text = cli.ok("agent", "show", second["run_id"]).stdout
    assert "failed" in text and "kept:" in text
    missing = cli("agent", "show", "ffffffffffff")
    assert missing.returncode == 3 and missing.stderr.startswith("error: "), str(missing)
    assert cli("agent", "send", "ffffffffffff", "hi").returncode == 3


@pytest.mark.skipif(not hasattr(pty, "openpty"), reason="needs a pseudo-terminal")
def test_live_view_on_a_terminal(cli: Cli) -> None:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [SANDBOXCTL, "agent-run", *LOCAL, "--", "sh", "-c", "echo line-one; echo line-two"],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.PIPE,
        env={**cli.env, "TERM": "xterm"},
    )
    os.close(secondary)
    screen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    os.close(primary)
    text = screen.decode(errors="replace")
    assert "agent-run" in text and "line-two" in text and "succeeded" in text, text


def test_the_agent_command_after_dashes_is_passed_as_given(cli: Cli) -> None:
    """After `--` nothing is an option, even a word starting with `-`; with no command at all: exit 2."""
    summary = run_json(cli, "--", "-no-such-agent", code=127)
    assert summary["command"] == ["-no-such-agent"] and summary["exit_code"] == 127
    missing = cli("agent-run", *LOCAL)
    assert missing.returncode == 2 and "no agent command given" in missing.stderr, str(missing)


def test_an_agent_leaving_thousands_of_entries_is_collected_up_to_the_entry_limit(cli: Cli, home: Path) -> None:
    """The agent leaves 3000 fifos (refused) and 3000 empty files: collection stops at agent.max_entries, the
    run still succeeds with the patch of what was collected, and the listing of what was left out is bounded."""
    agent = (
        "echo kept > keep.txt && mkdir many && cd many && "
        "seq 3000 | sed 's/^/a/' | xargs mkfifo && seq 3000 | sed 's/^/z/' | xargs touch"
    )
    events = home / "events.jsonl"
    summary = run_json(
        cli, "--events", str(events), "--", "sh", "-c", agent, env={"SANDBOXCTL_AGENT_MAX_ENTRIES": "1500"}
    )
    assert summary["status"] == "succeeded" and summary["exit_code"] == 0
    assert summary["changed_files"] == [{"path": "keep.txt", "change": "added"}]  # every fifo sorts before a file
    assert "+kept" in Path(summary["patch_path"]).read_text()
    skipped = summary["skipped_files"]
    assert len(skipped) == 1000 + 2, len(skipped)  # 1000 listed, the rest counted, then the limit
    assert {item["reason"] for item in skipped[:1000]} == {"special file"}
    assert skipped[-2]["path"] == "…" and skipped[-2]["reason"].endswith("more not listed")
    assert skipped[-1] == {
        "path": "…",
        "size": None,
        "reason": "entry limit reached (1500): the rest of the archive was not extracted",
    }
    [collected] = [event for event in read_events(events) if event["type"] == "result.collected"]
    assert collected["skipped_files"] == skipped
    result = cli("agent-run", *LOCAL, "--", "sh", "-c", agent, env={"SANDBOXCTL_AGENT_MAX_ENTRIES": "1500"})
    assert result.returncode == 0, str(result)
    assert "warning:" in result.stderr and "entry limit reached (1500)" in result.stderr, str(result)


def test_a_bad_collection_limit_is_exit_2_before_anything_exists(cli: Cli) -> None:
    for name, value in (("SANDBOXCTL_AGENT_MAX_ENTRIES", "0"), ("SANDBOXCTL_AGENT_MAX_ENTRIES", "many")):
        result = cli("agent-run", *LOCAL, "--", "true", env={name: value})
        assert result.returncode == 2, str(result)
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, str(result)
    assert cli.ok("status", "--all", "--json").json() == []
    assert cli.ok("agent", "list", "--json").json() == []
