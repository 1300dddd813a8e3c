"""`shell` / `exec -it` on Daytona: the SDK's PTY session, driven under a real pseudo-terminal (pexpect).

Against the stand-in the remote side is a real shell on a real pty (see standin.py, "PTY
sessions"), so prompts, echo, `stty size`, Ctrl-C and exit codes are the kernel's, not faked.
"""

from __future__ import annotations

import os
import secrets
import signal
import termios
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from ..conftest import SANDBOXCTL, Cli
from ..test_tty import (
    PROMPT,
    STTY_G,
    children_of,
    eventually,
    finish,
    shell_session,
    spawn,
    terminal_restored_after_exit,
    wrapped,
)
from .conftest import Target

pytestmark = pytest.mark.daytona


@pytest.fixture
def box(dcli: Cli, target: Target) -> Iterator[str]:
    """One Daytona sandbox for this test, labelled for it alone; deleted afterwards."""
    label = f"tty-test={secrets.token_hex(6)}"
    sandbox_id = dcli.ok("create", "--backend", "daytona", "--image", target.image, "--label", label).stdout.strip()
    yield sandbox_id
    dcli("delete", sandbox_id)


def pty_requests(target: Target) -> list[dict[str, object]]:
    assert target.standin is not None
    with target.standin.lock:
        return [r for r in target.standin.requests if "/process/pty" in str(r["path"])]


def assert_no_pty_left(target: Target) -> None:
    """Every PTY session was deleted, and nothing still runs on one."""
    if target.standin is None:
        return
    with target.standin.lock:
        left = list(target.standin.ptys.values())
    assert not left, [t.id for t in left]
    deletes = [r for r in pty_requests(target) if r["method"] == "DELETE"]
    assert deletes, "the PTY session was never deleted"


def host_processes() -> str:
    """The stand-in runs sandbox commands on this host: their command lines."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return "\n".join(lines)


def test_shell_prompt_typed_command_resize_ctrl_c_and_exit_code(dcli: Cli, target: Target, box: str) -> None:
    child = shell_session(dcli.env, box)  # the same session as on local and docker (tests/test_tty.py)
    assert "sbx" not in (child.before or "")  # the start line and its marker never reach us
    if target.standin is not None:
        (create,) = [r for r in pty_requests(target) if str(r["path"]).endswith("/create-connect")]
        assert (create["query"]["rows"], create["query"]["cols"]) == (["30"], ["90"])  # type: ignore[index]
        assert any(str(r["path"]).endswith("/resize") for r in pty_requests(target))
    assert_no_pty_left(target)


def test_exec_it_runs_the_command_and_shows_only_its_output(dcli: Cli, target: Target, box: str) -> None:
    script = 'test -t 0 && test -t 1 || exit 99; echo "size=$(stty size) term=$TERM g=$GREETING"; read l; exit "$l"'
    env = {**dcli.env, "TERM": "screen"}
    child = spawn(env, "exec", "-it", "-e", "GREETING=hi", box, "--", "sh", "-c", script, rows=33, cols=77)
    child.expect(r"size=33 77 term=screen g=hi\r\n")
    banner = child.before
    child.sendline("7")
    assert finish(child) == 7
    assert banner.strip() == "", repr(banner)  # nothing of the daemon's shell (prompt, the typed line) shows
    assert_no_pty_left(target)


def test_workdir_and_a_command_that_cannot_start(dcli: Cli, target: Target, box: str) -> None:
    child = spawn(dcli.env, "shell", box, "-w", "/", "--", "sh", "-c", 'echo "in $(pwd)"')
    child.expect(r"in /\r\n")
    assert finish(child) == 0
    child = spawn(dcli.env, "exec", "-it", box, "--", "no-such-program-3141")
    child.expect("no-such-program-3141")
    assert finish(child) == 127
    assert_no_pty_left(target)


def test_keys_typed_before_the_command_starts_reach_it(dcli: Cli, box: str) -> None:
    child = spawn(dcli.env, "exec", "-it", box, "--", "sh", "-c", 'read l; echo "got=$l"')
    child.send("early\r")  # at once: before the command runs, the keys wait; the daemon's shell never sees them
    child.expect(r"got=early")
    assert finish(child) == 0


def test_shell_restores_the_terminal_after_exit(dcli: Cli, box: str) -> None:
    terminal_restored_after_exit(dcli.env, box)


def test_sigterm_restores_the_terminal_and_kills_the_remote_command(dcli: Cli, target: Target, box: str) -> None:
    if target.standin is None:
        pytest.skip("reads the remote processes on this host")
    marker = str(secrets.randbelow(10**6) + 10**7)
    child = wrapped(dcli.env, f'stty -g; "{SANDBOXCTL}" shell {box}; echo "rc=$?"; stty -g')
    child.expect(STTY_G)
    before = child.match.group(1)
    child.expect(PROMPT)
    child.sendline(f"sleep {marker}")
    eventually(lambda: f"sleep {marker}" in host_processes(), "the remote sleep never started")
    (sandboxctl_pid,) = children_of(child.pid)
    os.kill(sandboxctl_pid, signal.SIGTERM)
    child.expect(r"rc=130")
    child.expect(STTY_G)
    assert child.match.group(1) == before
    assert finish(child) == 0
    eventually(lambda: f"sleep {marker}" not in host_processes(), "the remote sleep outlived the session")
    assert_no_pty_left(target)


def test_shell_on_an_unknown_sandbox_is_exit_3(dcli: Cli) -> None:
    child = pexpect.spawn(SANDBOXCTL, ["shell", "nosuch"], env=dcli.env, timeout=60, encoding="utf-8")
    child.expect("error: ")
    assert finish(child) == 3


# -- retries: each PTY call that is safe to repeat is repeated --------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        {"method": "GET", "path": r"/process/pty/create-connect$", "status": 503},  # refused: try again
        {"method": "GET", "path": r"/process/pty/create-connect$", "lose": True},  # made, answer lost: delete it
        {"method": "POST", "path": r"/process/pty/[^/]+/resize$", "status": 503},
        {"method": "DELETE", "path": r"/process/pty/[^/]+$", "status": 502},
    ],
    ids=["create-503", "create-lost", "resize-503", "delete-502"],
)
def test_transient_pty_failures_are_retried(dcli: Cli, target: Target, box: str, fault: dict[str, object]) -> None:
    if target.standin is None:
        pytest.skip("needs the stand-in's faults")
    injected = target.standin.add_fault(**fault)
    script = 'echo ready; read l; echo "size=$(stty size)"; exit 6'
    child = spawn(dcli.env, "shell", box, "--", "sh", "-c", script, rows=20, cols=80)
    child.expect("ready")
    child.setwinsize(21, 81)
    child.sendline("go")
    child.expect(r"size=21 81\r\n")
    assert finish(child) == 6
    assert injected.times == 0, "the fault never fired"
    assert_no_pty_left(target)  # a session made by a lost attempt is deleted too


def test_sandbox_deleted_mid_session_ends_it_and_restores_the_terminal(dcli: Cli, target: Target, box: str) -> None:
    child = wrapped(dcli.env, f'stty -g; "{SANDBOXCTL}" shell {box}; echo "rc=$?"; stty -g')
    child.expect(STTY_G)
    before = child.match.group(1)
    child.expect(PROMPT)
    dcli.ok("delete", box)
    child.expect(r"rc=(\d+)")
    assert child.match.group(1) != "0"
    child.expect(STTY_G)
    assert child.match.group(1) == before
    assert finish(child) == 0


# -- the stand-in's PTY endpoints, through the SDK itself ------------------------------------------
def test_standin_pty_endpoints_through_the_sdk(target: Target, sandbox: str) -> None:
    if target.standin is None:
        pytest.skip("checks the stand-in")
    from daytona import DaytonaConflictError
    from daytona.common.pty import PtySize

    process = target.backend().client.get(sandbox).process
    handle = process.create_pty_session("one", envs={"GREETING": "hi"}, pty_size=PtySize(rows=11, cols=55))
    with pytest.raises(DaytonaConflictError):
        process.create_pty_session("one")
    info = process.get_pty_session_info("one")
    assert (info.id, info.active, info.rows, info.cols, info.envs) == ("one", True, 11, 55, {"GREETING": "hi"})
    assert process.resize_pty_session("one", PtySize(rows=12, cols=56)).rows == 12
    assert [s.id for s in process.list_pty_sessions()] == ["one"]
    handle.send_input(b'stty size; echo "$GREETING-there"; exit 5\n')
    output = bytearray()
    result = handle.wait(on_data=output.extend, timeout=60)
    assert result.exit_code == 5, (result, bytes(output))
    assert b"12 56\r\n" in output and b"hi-there\r\n" in output
    assert process.get_pty_session_info("one").active is False
    process.kill_pty_session("one")
    assert process.list_pty_sessions() == []
    handle.disconnect()
    # A running session is killed by the delete: its shell dies of SIGKILL.
    second = process.create_pty_session("two")
    process.kill_pty_session("two")
    assert second.wait(timeout=60).exit_code == 128 + signal.SIGKILL
    second.disconnect()


@pytest.mark.slow
def test_a_pty_shell_that_never_runs_the_start_line_ends_the_session(
    dcli: Cli, target: Target, box: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys are held until the command starts, so without the bound no key (not even Ctrl-C) could end it."""
    if target.standin is None:
        pytest.skip("needs the stand-in's PTY shell")
    from . import standin as standin_module

    monkeypatch.setattr(standin_module, "PTY_SHELL", ["cat"])  # echoes the line back, never runs it
    child = wrapped(dcli.env, f'stty -g; "{SANDBOXCTL}" shell {box}; echo "rc=$?"; stty -g')
    child.expect(STTY_G)
    before = child.match.group(1)
    raw = lambda: not termios.tcgetattr(child.child_fd)[3] & termios.ICANON  # noqa: E731 - the slave's mode
    eventually(raw, "sandboxctl never put the terminal in raw mode")
    child.sendintr()  # held, like every key before the start
    child.expect(r"error: the command did not start on the Daytona terminal within \d+ s", timeout=60)
    child.expect(r"rc=1\r\n")
    child.expect(STTY_G)
    assert child.match.group(1) == before
    assert finish(child) == 0
    assert_no_pty_left(target)
