"""The installed `sandboxctl` with `--backend daytona`, as real subprocesses, against the stand-in."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sandboxctl.labels import LABEL_EXPIRES_AT
from sandboxctl.registry.store import new_sandbox_id

from ..conftest import SANDBOXCTL, Cli, Result
from .conftest import HANG_GUARD, STANDIN_IMAGE, Target, make_spec
from .standin import StandIn

pytestmark = pytest.mark.daytona


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def create(cli: Cli, target: Target, *args: str) -> str:
    result = cli.ok("create", "--backend", "daytona", "--image", target.image, *args)
    return result.stdout.strip()


@pytest.fixture
def standin_cli(cli: Cli, standin: StandIn) -> Cli:
    """The CLI on the stand-in even in real mode: for tests that turn the stand-in's knobs."""
    return Cli({**cli.env, "DAYTONA_API_URL": standin.api_url, "DAYTONA_API_KEY": standin.api_key})


def test_create_exec_status_delete(dcli: Cli, target: Target, suite_label: dict[str, str]) -> None:
    [(key, value)] = suite_label.items()
    sandbox_id = create(dcli, target, "--label", f"{key}={value}", "--env", "GREETING=hello")
    assert len(sandbox_id) >= 8 and "\n" not in sandbox_id
    result = dcli("exec", sandbox_id, "--", "sh", "-c", 'echo "$GREETING"; echo oops >&2; exit 7')
    assert result.returncode == 7, str(result)
    assert (result.stdout, result.stderr) == ("hello\n", "oops\n")  # streams apart, through a session
    status = dcli.ok("status", sandbox_id, "--json").json()
    assert (status["id"], status["backend"], status["status"]) == (sandbox_id, "daytona", "running")
    assert status["backend_state"] == "running" and status["labels"] == {key: value}
    assert status["env_keys"] == ["GREETING"]
    dcli.ok("delete", sandbox_id)
    assert dcli.ok("status", sandbox_id, "--json").json()["status"] == "deleted"
    dcli.ok("delete", sandbox_id)  # idempotent


def test_create_json_is_one_document(dcli: Cli, target: Target) -> None:
    record = dcli.ok("create", "--backend", "daytona", "--image", target.image, "--json").json()
    try:
        assert record["backend"] == "daytona" and record["backend_id"] and record["status"] == "running"
    finally:
        dcli.ok("delete", record["id"])


def test_exec_stdin_and_timeout(dcli: Cli, target: Target) -> None:
    sandbox_id = create(dcli, target)
    try:
        result = dcli("exec", sandbox_id, "--", "cat", input="through stdin\n")
        assert (result.returncode, result.stdout) == (0, "through stdin\n"), str(result)
        result = dcli("exec", sandbox_id, "--timeout", "1s", "--", "sleep", "20", timeout=HANG_GUARD)
        assert result.returncode == 124, str(result)
    finally:
        dcli.ok("delete", sandbox_id)


def test_a_missing_key_exits_2_naming_the_variable(cli: Cli) -> None:
    result = cli("create", "--backend", "daytona")  # the `cli` fixture drops every DAYTONA_* variable
    assert result.returncode == 2, str(result)
    assert result.stderr.startswith("error: ") and "DAYTONA_API_KEY" in result.stderr
    assert result.stdout == ""


def test_an_unreachable_api_exits_4_quickly(dcli: Cli, target: Target) -> None:
    sandbox_id = create(dcli, target)
    dead = {"DAYTONA_API_URL": closed_port_url()}
    try:
        for args in (("create", "--backend", "daytona"), ("exec", sandbox_id, "--", "true"), ("delete", sandbox_id)):
            result = dcli(*args, env=dead, timeout=HANG_GUARD)
            assert result.returncode == 4, str(result)
            assert "unreachable" in result.stderr and len(result.stderr.splitlines()) == 1
    finally:
        dcli("delete", sandbox_id)


@pytest.mark.slow
def test_a_silent_api_exits_4_within_the_bound(standin_cli: Cli, standin: StandIn) -> None:
    standin.add_fault(path="^/api/", silence=True, times=-1)
    result = standin_cli("create", "--backend", "daytona", "--image", STANDIN_IMAGE, timeout=HANG_GUARD)
    assert result.returncode == 4, str(result)
    assert "did not answer" in result.stderr


def test_a_rejected_key_exits_4(dcli: Cli, target: Target) -> None:
    result = dcli("create", "--backend", "daytona", env={"DAYTONA_API_KEY": "not-a-valid-key"})
    assert result.returncode == 4, str(result)
    assert "DAYTONA_API_KEY" in result.stderr and "not-a-valid-key" not in result.stderr


def test_delete_retries_transient_errors(standin_cli: Cli, standin: StandIn) -> None:
    sandbox_id = standin_cli.ok("create", "--backend", "daytona", "--image", STANDIN_IMAGE).stdout.strip()
    standin.add_fault(method="DELETE", path="^/api/sandbox/", status=500, times=2)
    deleted = standin_cli.ok("delete", sandbox_id, "--json").json()
    assert standin.sandboxes == {}
    assert [r["method"] for r in standin.requests].count("DELETE") == 3, deleted


def test_cleanup_deletes_an_expired_sandbox(dcli: Cli, target: Target) -> None:
    sandbox_id = create(dcli, target, "--ttl", "1s")
    time.sleep(1.5)
    report = dcli.ok("cleanup", "--backend", "daytona", "--json").json()
    assert (report["sandboxes_cleaned"], report["sandboxes_failed"]) == (1, 0), report
    assert dcli.ok("status", sandbox_id, "--json").json()["status"] == "deleted"
    if target.standin is not None:
        assert target.standin.sandboxes == {}


def test_cleanup_orphans_deletes_an_expired_labelled_resource(
    dcli: Cli, target: Target, suite_label: dict[str, str]
) -> None:
    """A resource no registry knows, judged by its own `sandboxctl.expires-at` label."""
    backend = target.backend()
    spec = make_spec(target.image, {**suite_label, LABEL_EXPIRES_AT: datetime(2020, 1, 1, tzinfo=UTC).isoformat()})
    backend.create(spec)
    [(key, value)] = suite_label.items()
    report = dcli.ok("cleanup", "--orphans", "--backend", "daytona", "--label", f"{key}={value}", "--json").json()
    assert report["sandboxes_failed"] == 0, report
    assert backend.list_owned(suite_label) == []


def test_sigterm_during_exec_kills_the_remote_command(standin_cli: Cli, standin: StandIn) -> None:
    sandbox_id = standin_cli.ok("create", "--backend", "daytona", "--image", STANDIN_IMAGE).stdout.strip()
    [sandbox] = standin.sandboxes.values()
    sleeper = f"sleep {time.time() % 1000 + 100:.3f}"  # unique on this machine
    script = f'touch "$HOME/started"; {sleeper}; touch "$HOME/finished"'
    process = subprocess.Popen(
        [SANDBOXCTL, "exec", sandbox_id, "--", "sh", "-c", script],
        env=standin_cli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + HANG_GUARD
        while not (sandbox.home / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (sandbox.home / "started").exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=HANG_GUARD) == 130
    finally:
        process.kill()
        process.communicate()
    while subprocess.run(["pgrep", "-f", sleeper], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, f"{sleeper!r} still runs"
        time.sleep(0.1)
    assert not (sandbox.home / "finished").exists()


def test_the_key_and_env_values_are_never_printed_or_stored(
    standin_cli: Cli, standin: StandIn, home: Path, api_key: str
) -> None:
    """Every stdout and stderr, `--debug` tracebacks included, and every file under SANDBOXCTL_HOME."""
    secret = f"env-secret-{new_sandbox_id()}"
    image = ("--image", STANDIN_IMAGE)
    results: list[Result] = []

    def run(*args: str, **kwargs: object) -> Result:
        results.append(standin_cli(*args, **kwargs))  # type: ignore[arg-type]
        return results[-1]

    sandbox_id = run("--debug", "create", "--backend", "daytona", *image, "--env", f"SECRET={secret}").stdout.strip()
    assert results[-1].returncode == 0, str(results[-1])
    assert run("exec", sandbox_id, "--", "true").returncode == 0
    assert run("--debug", "status", sandbox_id, "--json").returncode == 0
    # A server echoing our Authorization header in its errors, on every path we use.
    standin.add_fault(path="^/api/sandbox", status=400, message="you sent {authorization}", times=-1)
    assert run("--debug", "exec", sandbox_id, "--", "true").returncode == 1
    assert "Bearer ***" in results[-1].stderr, str(results[-1])
    run("--debug", "status", sandbox_id, "--json")
    run("status", "--json", env={"SANDBOXCTL_DEBUG": "1"})
    assert run("--debug", "create", "--backend", "daytona", *image, "--env", f"SECRET={secret}").returncode == 1
    assert run("--debug", "delete", sandbox_id).returncode == 1
    run("--debug", "cleanup", "--orphans", "--label", f"sandboxctl-test={uuid.uuid4().hex}", "--json")  # ours only
    standin.faults.clear()
    assert run("--debug", "create", "--backend", "daytona", env={"DAYTONA_API_KEY": f"x{api_key}x"}).returncode == 4
    run("config", "show")
    run("--debug", "delete", sandbox_id)

    for result in results:
        assert api_key not in result.stdout + result.stderr, str(result)
        assert secret not in result.stdout + result.stderr, str(result)
    files = [path for path in home.rglob("*") if path.is_file()]
    assert any(path.name == "registry.db" for path in files)
    for path in files:
        data = path.read_bytes()
        assert api_key.encode() not in data and secret.encode() not in data, path


def test_agent_run_on_daytona(dcli: Cli, target: Target, tmp_path: Path) -> None:
    """Workspace upload, the agent's exec in it, and the result downloaded as a patch."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("hi\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    agent = 'test "$(cat "$SANDBOXCTL_TASK_FILE")" = "edit it" && echo more >> a.txt && echo new > b.txt'
    output = tmp_path / "out"
    result = dcli(
        "agent-run",
        "--backend",
        "daytona",
        "--image",
        target.image,
        "--repo",
        str(repo),
        "--task",
        "edit it",
        "--output",
        str(output),
        "--keep",
        "never",
        "--json",
        "--",
        "sh",
        "-c",
        agent,
    )
    assert result.returncode == 0, str(result)
    summary = result.json()
    assert summary["changed_files"] == [{"path": "a.txt", "change": "modified"}, {"path": "b.txt", "change": "added"}]
    assert summary["sandbox_deletion"]["success"] is True
    assert "+more" in (output / "patch.diff").read_text()
    if target.standin is not None:
        assert target.standin.sandboxes == {}


def test_agent_run_on_daytona_leaves_oversized_files_out_in_the_sandbox(dcli: Cli, target: Target) -> None:
    """The sandbox builds the tar: a file over agent.max_file never leaves it, and the summary lists it."""
    agent = "dd if=/dev/zero of=big.bin bs=1024 count=300 2>/dev/null && echo small > small.txt"
    result = dcli(
        "agent-run", "--backend", "daytona", "--image", target.image, "--keep", "never", "--json",
        "--", "sh", "-c", agent,
        env={"SANDBOXCTL_AGENT_MAX_FILE": "256K"},
    )  # fmt: skip
    assert result.returncode == 0, str(result)
    summary = result.json()
    assert summary["changed_files"] == [{"path": "small.txt", "change": "added"}]
    assert summary["skipped_files"] == [{"path": "big.bin", "size": 300 * 1024, "reason": "file too large"}]
    assert "warning:" in result.stderr and "big.bin" in result.stderr
