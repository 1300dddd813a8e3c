"""The installed `sandboxctl` on Daytona (the stand-in, through the real SDK): exec streams and stdin, signals,
agent-run's live events and inbox, the target in use, and many creates at once against a failing API."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ..conftest import SANDBOXCTL, Cli
from .conftest import STANDIN_IMAGE
from .standin import StandIn

pytestmark = pytest.mark.daytona
NO_HANG_SECONDS = 120  # only a hang reaches it (a loaded machine is slow, not hung)
AGENT_RUN = (SANDBOXCTL, "agent-run", "--backend", "daytona", "--image", STANDIN_IMAGE)


@pytest.fixture
def scli(cli: Cli, standin: StandIn) -> Cli:
    return Cli({**cli.env, "DAYTONA_API_URL": standin.api_url, "DAYTONA_API_KEY": standin.api_key})


def wait_for(predicate: Any, what: str, timeout: float = NO_HANG_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def events_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def create(scli: Cli) -> str:
    return scli.ok("create", "--backend", "daytona", "--image", STANDIN_IMAGE).stdout.strip()


# -- exec through the CLI -----------------------------------------------------------------------------
def test_exec_keeps_streams_apart_and_feeds_a_pipe_to_eof(scli: Cli) -> None:
    sandbox_id = create(scli)
    result = scli("exec", sandbox_id, "--", "sh", "-c", "tr a-z A-Z; echo done >&2; exit 3", input="piped in\n")
    assert (result.returncode, result.stdout, result.stderr) == (3, "PIPED IN\n", "done\n"), str(result)


def test_exec_timeout_is_124_and_kills(scli: Cli, standin: StandIn) -> None:
    sandbox_id = create(scli)
    [sandbox] = standin.sandboxes.values()
    result = scli("exec", sandbox_id, "--timeout", "1s", "--", "sh", "-c", 'sleep 3; touch "$HOME/late"')
    assert result.returncode == 124, str(result)
    time.sleep(3.5)
    assert not (sandbox.home / "late").exists()
    assert standin.sessions == {}


def test_exec_forwards_a_terminal_line_by_line_and_ctrl_d_is_eof(scli: Cli) -> None:
    """stdin a terminal (a pty): each line reaches the command as it is typed; Ctrl-D ends its input."""
    sandbox_id = create(scli)
    controller, terminal = pty.openpty()
    script = 'while read -r line; do echo "got $line" >&2; done; echo "eof" >&2'
    process = subprocess.Popen(
        [SANDBOXCTL, "exec", sandbox_id, "--", "sh", "-c", script],
        env=scli.env,
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), False)
    seen = bytearray()

    def read_err() -> bytes:
        with contextlib.suppress(BlockingIOError):
            seen.extend(os.read(process.stderr.fileno(), 4096))  # type: ignore[union-attr]
        return bytes(seen)

    try:
        os.write(controller, b"first\n")
        wait_for(lambda: b"got first\n" in read_err(), "the first line")
        os.write(controller, b"second\n")
        wait_for(lambda: b"got second\n" in read_err(), "the second line")
        os.write(controller, b"\x04")  # Ctrl-D
        assert process.wait(timeout=NO_HANG_SECONDS) == 0
        wait_for(lambda: b"eof\n" in read_err(), "eof")
    finally:
        process.kill()
        process.wait()
        os.close(controller)
    assert bytes(seen) == b"got first\ngot second\neof\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_exec_kills_the_remote_command(scli: Cli, standin: StandIn, sig: signal.Signals) -> None:
    sandbox_id = create(scli)
    [sandbox] = standin.sandboxes.values()
    script = 'touch "$HOME/started"; sleep 4; touch "$HOME/finished"'
    process = subprocess.Popen(
        [SANDBOXCTL, "exec", sandbox_id, "--", "sh", "-c", script],
        env=scli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: (sandbox.home / "started").exists(), "the command to start")
        process.send_signal(sig)
        assert process.wait(timeout=NO_HANG_SECONDS) == 130
    finally:
        process.kill()
        process.communicate()
    wait_for(lambda: standin.sessions == {}, "the session to be deleted")
    time.sleep(4.5)
    assert not (sandbox.home / "finished").exists()


# -- 3. agent-run streams on Daytona -------------------------------------------------------------------
def test_agent_output_and_heartbeats_arrive_while_the_agent_runs(scli: Cli, standin: StandIn, tmp_path: Path) -> None:
    """The agent prints, then waits for a gate only the test opens once the output event has been seen."""
    events_file = tmp_path / "events.jsonl"
    agent = 'echo "first output line"; while [ ! -e "$HOME/gate" ]; do sleep 0.1; done; echo "second output line"'
    process = subprocess.Popen(
        [*AGENT_RUN, "--events", str(events_file), "--keep", "never", "--json", "--", "sh", "-c", agent],
        env={**scli.env, "SANDBOXCTL_HEARTBEAT_SECONDS": "0.3"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = wait_for(
            lambda: [e for e in events_of(events_file) if e["type"] == "agent.output" and "first" in e["text"]],
            "the first agent.output event",
        )
        wait_for(
            lambda: [e for e in events_of(events_file) if e["type"] == "heartbeat" and e["ts"] > first[0]["ts"]],
            "a heartbeat while the agent runs",
        )
        [sandbox] = standin.sandboxes.values()
        assert not [e for e in events_of(events_file) if e["type"] == "agent.exited"]
        (sandbox.home / "gate").touch()
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    events = events_of(events_file)
    [exited] = [e for e in events if e["type"] == "agent.exited"]
    outputs = [e for e in events if e["type"] == "agent.output"]
    assert [e["text"] for e in outputs] == ["first output line\n", "second output line\n"]
    assert outputs[0]["ts"] < exited["ts"] and json.loads(stdout)["status"] == "succeeded"


def test_agent_send_reaches_the_inbox_of_a_daytona_run(scli: Cli, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    poll = (
        "i=0; while [ $i -lt 150 ]; do "
        'if grep -q hello-agent "$SANDBOXCTL_INBOX" 2>/dev/null; then cat "$SANDBOXCTL_INBOX"; exit 0; fi; '
        "sleep 0.2; i=$((i+1)); done; exit 9"
    )
    process = subprocess.Popen(
        [*AGENT_RUN, "--events", str(events_file), "--keep", "never", "--json", "--", "sh", "-c", poll],
        env=scli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = wait_for(lambda: [e for e in events_of(events_file) if e["type"] == "agent.started"], "agent.started")
        sent = scli("agent", "send", started[0]["run_id"], 'hello-agent: "quoted"', "--json")
        assert sent.returncode == 0, str(sent)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    [line] = [e["text"] for e in events_of(events_file) if e["type"] == "agent.output" and "hello-agent" in e["text"]]
    assert json.loads(line)["text"] == 'hello-agent: "quoted"'


# -- 5. the target ---------------------------------------------------------------------------------------
def test_no_target_means_the_organization_default_and_config_show_says_so(
    scli: Cli, standin: StandIn, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("DAYTONA_TARGET=eu\n")  # the SDK would read this from the working directory

    def in_dir(*args: str) -> str:
        done = subprocess.run([SANDBOXCTL, *args], env=scli.env, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    shown = in_dir("config", "show")
    [row] = [line for line in shown.splitlines() if line.startswith("daytona.target")]
    assert "organization default" in row, shown
    in_dir("create", "--backend", "daytona", "--image", STANDIN_IMAGE)
    [body] = [r["json"] for r in standin.requests if (r["method"], r["path"]) == ("POST", "/api/sandbox")]
    assert "target" not in body, body


def test_daytona_target_is_sent_and_shown(scli: Cli, standin: StandIn) -> None:
    env = {"DAYTONA_TARGET": "eu"}
    shown = scli.ok("config", "show", env=env).stdout
    [row] = [line for line in shown.splitlines() if line.startswith("daytona.target")]
    assert " eu " in f" {row} " and "env" in row, shown
    scli.ok("create", "--backend", "daytona", "--image", STANDIN_IMAGE, env=env)
    [body] = [r["json"] for r in standin.requests if (r["method"], r["path"]) == ("POST", "/api/sandbox")]
    assert body["target"] == "eu"
    assert [s.target for s in standin.sandboxes.values()] == ["eu"]


# -- 7. load -------------------------------------------------------------------------------------------
def test_ten_concurrent_creates_with_a_fifth_of_requests_failing(scli: Cli, standin: StandIn) -> None:
    """20% of all API requests answered 500 or 429: 10 sandboxes, 10 records, no duplicate, none lost."""
    standin.add_fault(path="^/(api|toolbox)/", status=500, every=10, times=-1)  # 10% of all requests
    standin.add_fault(path="^/(api|toolbox)/", status=429, retry_after=0.2, every=9, times=-1)  # 10% more
    label = f"load={os.getpid()}-{time.monotonic_ns()}"
    results: list[Any] = [None] * 10

    def one(index: int) -> None:
        results[index] = scli("create", "--backend", "daytona", "--image", STANDIN_IMAGE, "--label", label, "--json")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(r is not None and r.returncode == 0 for r in results), [str(r) for r in results if r.returncode]
    created = [r.json() for r in results]
    ids = {c["id"] for c in created}
    standin.faults.clear()
    records = scli.ok("status", "--json").json()
    assert len(ids) == 10 and {r["id"] for r in records} == ids
    assert sorted(s.labels["sandboxctl.id"] for s in standin.sandboxes.values()) == sorted(ids)
    assert sorted(c["backend_id"] for c in created) == sorted(standin.sandboxes)
    faulted = [r for r in standin.requests if r.get("fault")]
    assert len(faulted) >= 2 and len(faulted) * 5 >= len(standin.requests) - 10, (len(faulted), len(standin.requests))
