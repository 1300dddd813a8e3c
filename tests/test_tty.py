"""`shell` and `exec -it` under a real pseudo-terminal (pexpect), on local and on the real Docker engine.

Each test drives the installed `sandboxctl` as a human would: a prompt, typed
commands, a resize, Ctrl-C, an exit code; and checks our own terminal comes
back exactly as it was, however the session ended.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

from .conftest import SANDBOXCTL, Cli, sandbox_containers

# Bounds against hangs only: every expectation is normally met in well under a second.
WAIT = 30
PROMPT = r"[$#] "
STTY_G = r"([0-9a-f]+(?::[0-9a-f]+){10,})"


@dataclass
class Sandbox:
    id: str
    backend: str
    cli: Cli


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox(request: pytest.FixtureRequest, cli: Cli) -> Iterator[Sandbox]:
    """One sandbox per test and backend, labelled for this test alone; deleted afterwards."""
    label = f"tty-test={secrets.token_hex(6)}"
    args = ["create", "--backend", request.param, "--label", label]
    if request.param == "docker":
        args += ["--image", request.getfixturevalue("docker_image")]
    # SHELL=/bin/sh: a local sandbox inherits our environment, and the host user's shell may print anything.
    sandbox_id = cli.ok(*args, env={"SHELL": "/bin/sh"}).stdout.strip()
    yield Sandbox(sandbox_id, request.param, Cli({**cli.env, "SHELL": "/bin/sh"}))
    cli("delete", sandbox_id)
    if request.param == "docker":
        leaked = sandbox_containers(sandbox_id)
        if leaked:
            subprocess.run(["docker", "rm", "-f", *leaked], capture_output=True)


def spawn(env: dict[str, str], *args: str, rows: int = 24, cols: int = 80) -> pexpect.spawn:
    child = pexpect.spawn(SANDBOXCTL, list(args), env=env, timeout=WAIT, dimensions=(rows, cols), encoding="utf-8")
    child.delaybeforesend = 0.05
    return child


def wrapped(env: dict[str, str], script: str) -> pexpect.spawn:
    """A host `sh` on the pty running `script`, so `stty -g` before and after reads the very terminal we used."""
    child = pexpect.spawn("/bin/sh", ["-c", script], env=env, timeout=WAIT, encoding="utf-8")
    child.delaybeforesend = 0.05
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    assert child.signalstatus is None, f"killed by signal {child.signalstatus}"
    return int(child.exitstatus)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def remote_processes(box: Sandbox) -> str:
    """Command lines of the processes the sandbox can see (docker: inside the container; local: the host)."""
    if box.backend == "docker":
        (container,) = sandbox_containers(box.id)
        out = subprocess.run(["docker", "exec", container, "ps", "-o", "args"], capture_output=True, text=True)
        return out.stdout
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return "\n".join(lines)


def eventually(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def shell_session(env: dict[str, str], sandbox_id: str) -> pexpect.spawn:
    """An operator's `shell` on any backend: prompt, a typed command, the size at start and after a resize, Ctrl-C
    interrupting a running job while the shell survives, `exit 3` -> 3. Returns the ended child."""
    child = spawn(env, "shell", sandbox_id, rows=30, cols=90)
    child.expect(PROMPT)
    child.sendline("echo $((6*7))-typed")  # the echo of the line itself holds no "42"
    child.expect("42-typed")
    child.sendline("stty size")
    child.expect(r"30 90\r\n")  # the size at start is ours
    child.setwinsize(40, 100)  # SIGWINCH to sandboxctl, which resizes the remote terminal
    child.sendline("stty size")
    child.expect(r"40 100\r\n")
    child.sendline("sh -c 'echo $((6*7))-running; exec sleep 100'")
    # Printed by the foreground job itself (the typed line holds no "42"): Ctrl-C now reaches it, however loaded
    # the machine; a fixed pause, or the echo of the typed line, could let it come before the job, which ran on.
    child.expect("42-running")
    child.sendintr()  # \x03 through our raw terminal to the remote line discipline
    child.sendline('echo "after-ctrl-c rc=$?"')
    child.expect(r"after-ctrl-c rc=130")  # sleep died of SIGINT; the shell survived (long before 100 s)
    child.sendline("exit 3")
    assert finish(child) == 3
    return child


def terminal_restored_after_exit(env: dict[str, str], sandbox_id: str) -> None:
    """Our terminal's settings (`stty -g`) are the same after `shell` as before, and the remote one was cooked."""
    child = wrapped(env, f'stty -g; "{SANDBOXCTL}" shell {sandbox_id}; echo "rc=$?"; stty -g')
    child.expect(STTY_G)
    before = child.match.group(1)
    child.expect(PROMPT)
    child.sendline("stty -a | grep -q -- '-icanon' || echo remote-cooked-ok")
    child.expect("remote-cooked-ok")  # the remote terminal is cooked; raw is only ours
    child.sendline("exit 4")
    child.expect(r"rc=4")
    child.expect(STTY_G)
    assert child.match.group(1) == before
    assert finish(child) == 0


def test_shell_prompt_resize_ctrl_c_and_exit_code(sandbox: Sandbox) -> None:
    shell_session(sandbox.cli.env, sandbox.id)


def test_shell_restores_the_terminal_after_exit(sandbox: Sandbox) -> None:
    terminal_restored_after_exit(sandbox.cli.env, sandbox.id)


def test_sigterm_restores_the_terminal_and_kills_the_remote_command(sandbox: Sandbox) -> None:
    marker = str(secrets.randbelow(10**6) + 10**7)
    child = wrapped(sandbox.cli.env, f'stty -g; "{SANDBOXCTL}" shell {sandbox.id}; echo "rc=$?"; stty -g')
    child.expect(STTY_G)
    before = child.match.group(1)
    child.expect(PROMPT)
    child.sendline(f"sleep {marker}")
    eventually(lambda: f"sleep {marker}" in remote_processes(sandbox), "the remote sleep never started")
    (sandboxctl_pid,) = children_of(child.pid)
    os.kill(sandboxctl_pid, signal.SIGTERM)
    child.expect(r"rc=130")
    child.expect(STTY_G)
    assert child.match.group(1) == before
    assert finish(child) == 0
    eventually(lambda: f"sleep {marker}" not in remote_processes(sandbox), "the remote sleep outlived the session")


@pytest.mark.parametrize("flags", [("-it",), ("-ti",), ("-i", "-t"), ("--interactive", "--tty")])
def test_exec_it_runs_the_command_on_a_terminal(sandbox: Sandbox, flags: tuple[str, ...]) -> None:
    # Docker before API 1.42 sizes an exec's terminal a moment after its start: wait for a size, then check it.
    script = (
        "test -t 0 && test -t 1 || exit 99; "
        'until s=$(stty size 2>/dev/null) && [ "${s% *}" -gt 0 ]; do sleep 0.05; done; echo "size=$s"; '
        'read l; exit "$l"'
    )
    child = spawn(sandbox.cli.env, "exec", *flags, sandbox.id, "--", "sh", "-c", script, rows=33, cols=77)
    child.expect(r"size=33 77\r\n")
    child.sendline("7")
    assert finish(child) == 7


def test_shell_runs_a_given_command_and_updates_last_accessed(sandbox: Sandbox) -> None:
    before = sandbox.cli.ok("status", sandbox.id, "--json").json()["last_accessed"]
    time.sleep(1.1)  # last_accessed has second resolution in the text
    env = {**sandbox.cli.env, "TERM": "screen"}
    command = ("sh", "-c", 'echo "$GREETING from $(pwd) on $TERM"')
    child = spawn(env, "shell", sandbox.id, "-w", "/", "-e", "GREETING=hi-there", "--", *command)
    child.expect("hi-there from / on screen")  # our TERM travels, so the remote programs draw for our terminal
    assert finish(child) == 0
    after = sandbox.cli.ok("status", sandbox.id, "--json").json()["last_accessed"]
    assert after > before


def test_a_command_that_cannot_start_returns_its_exit_code(sandbox: Sandbox) -> None:
    child = spawn(sandbox.cli.env, "exec", "-it", sandbox.id, "--", "no-such-program-3141")
    child.expect("no-such-program-3141")
    code = finish(child)
    assert code == 127 if sandbox.backend == "local" else code in (126, 127), code  # docker reports 126


@pytest.mark.parametrize(
    "args",
    [("shell", "{id}"), ("exec", "-it", "{id}", "--", "sh"), ("exec", "-t", "{id}", "--", "sh"), ("shell", "nosuch")],
)
def test_tty_without_a_terminal_on_stdin_is_exit_2(cli: Cli, args: tuple[str, ...]) -> None:
    sandbox_id = cli.ok("create", "--backend", "local").stdout.strip()
    result = cli(*(arg.format(id=sandbox_id) for arg in args))  # stdin is /dev/null
    assert result.returncode == 2, result
    assert result.stdout == "" and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result
    assert "needs a terminal" in result.stderr, result


def test_exec_i_without_t_forwards_stdin_as_before(cli: Cli) -> None:
    sandbox_id = cli.ok("create", "--backend", "local").stdout.strip()
    result = cli("exec", "-i", sandbox_id, "--", "sh", "-c", "test -t 0 || cat; exit 5", input="piped\n")
    assert (result.returncode, result.stdout) == (5, "piped\n"), result


def test_timeout_with_tty_is_refused(cli: Cli) -> None:
    sandbox_id = cli.ok("create", "--backend", "local").stdout.strip()
    child = spawn(cli.env, "exec", "-it", "--timeout", "5s", sandbox_id, "--", "sh")
    child.expect("error: --timeout does not apply with -t")
    assert finish(child) == 2


def test_unknown_sandbox_on_a_terminal_is_exit_3(cli: Cli) -> None:
    child = spawn(cli.env, "shell", "nosuch")
    child.expect("error: ")
    assert finish(child) == 3


def test_shell_prefers_sandbox_shell_then_bash(cli: Cli, tmp_path: Path) -> None:
    custom = tmp_path / "custom-shell"
    custom.write_text('#!/bin/sh\necho "custom shell got $*"\nexit 9\n')
    custom.chmod(0o755)
    with_shell = cli.ok("create", "--backend", "local", "--env", f"SHELL={custom}").stdout.strip()
    child = spawn(cli.env, "shell", with_shell)
    child.expect("custom shell got -l")
    assert finish(child) == 9
    # No $SHELL: bash (the host has it; the busybox image has none, and its `sh` is what the docker tests use).
    env = {k: v for k, v in cli.env.items() if k != "SHELL"}
    plain = Cli(env).ok("create", "--backend", "local").stdout.strip()
    child = spawn(env, "shell", plain)
    child.expect(PROMPT)
    child.sendline('echo "bash=${BASH_VERSION:+yes}"')
    child.expect("bash=yes")
    child.sendline("exit 0")
    assert finish(child) == 0


@pytest.mark.docker
def test_container_removed_mid_session_restores_terminal(cli: Cli, docker_image: str, docker_cleanup: None) -> None:
    sandbox_id = cli.ok("create", "--backend", "docker", "--image", docker_image).stdout.strip()
    child = wrapped(cli.env, f'stty -g; "{SANDBOXCTL}" shell {sandbox_id}; echo "rc=$?"; stty -g')
    child.expect(STTY_G)
    before = child.match.group(1)
    child.expect(PROMPT)
    subprocess.run(["docker", "rm", "-f", *sandbox_containers(sandbox_id)], capture_output=True, check=True)
    child.expect(r"rc=(\d+)")
    assert child.match.group(1) != "0"
    child.expect(STTY_G)
    assert child.match.group(1) == before
    assert finish(child) == 0


@pytest.mark.parametrize(
    "argv", [["exec", "-it", "sb", "--", "sh"], ["exec", "sb", "-t", "--", "sh"], ["exec", "sb", "-i", "--", "cat"]]
)
def test_exec_fast_path_leaves_terminal_flags_to_typer(argv: list[str]) -> None:
    from sandboxctl.cli.exec_fast import parse_fast

    assert parse_fast(argv) is None  # `-t` is --tty now, never a timeout's short form


def _running(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_delete_kills_what_a_local_shell_left_running(cli: Cli, tmp_path: Path) -> None:
    """A process started from `shell` on `local` carries the sandbox's tag as exec's do, so `delete` kills it even
    after it escaped with setsid (the terminal's environment was built apart from exec's, without the tag)."""
    env = {**cli.env, "SHELL": "/bin/sh"}
    sandbox = cli.ok("create", "--backend", "local", "--label", f"tty-test={secrets.token_hex(6)}", env=env)
    sandbox_id = sandbox.stdout.strip()
    pidfile = tmp_path / "escapee"
    child = spawn(env, "shell", sandbox_id)
    child.expect(PROMPT)
    child.sendline(f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 600' </dev/null >/dev/null 2>&1 &")
    eventually(lambda: pidfile.exists() and pidfile.read_text().strip(), "the escapee never started")
    child.sendline("exit 0")
    assert finish(child) == 0
    pid = int(pidfile.read_text())
    try:
        assert _running(pid), "the escapee should outlive the shell"
        cli.ok("delete", sandbox_id)
        eventually(lambda: not _running(pid), "a process left by the shell outlived delete")
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
