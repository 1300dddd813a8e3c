"""exec on Daytona through sessions, against the stand-in and the real SDK: live separate streams, stdin with
EOF, the session always deleted, retries on every call, and what a hostile command can and cannot do."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from sandboxctl.backends.base import CreateSpec, ExecRequest, ExecResult, Unavailable
from sandboxctl.backends.daytona import DaytonaBackend
from sandboxctl.labels import LABEL_ID
from sandboxctl.registry.store import new_sandbox_id

from .conftest import STANDIN_IMAGE, guarded, make_spec, run
from .standin import StandIn

pytestmark = pytest.mark.daytona
NO_HANG_SECONDS = 120  # only a hang reaches it (a loaded machine is slow, not hung)


def session_paths(standin: StandIn, method: str) -> list[str]:
    return [r["path"] for r in standin.requests if r["method"] == method and "/process/session" in r["path"]]


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + NO_HANG_SECONDS
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- 1. streams apart and live, exit code, session deleted -------------------------------------------------
def test_output_streams_live_while_the_command_runs(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    """The first lines arrive, apart, while the command still waits for a gate only the test opens."""
    home = standin.sandboxes[sb_sandbox].home
    gate = home / "gate"
    chunks: list[tuple[str, bytes, bool]] = []
    script = 'echo "first line out"; echo "first line err" >&2; while [ ! -e gate ]; do sleep 0.05; done; exit 9'
    request = ExecRequest(
        command=("sh", "-c", script),
        on_stdout=lambda b: chunks.append(("out", b, gate.exists())),
        on_stderr=lambda b: chunks.append(("err", b, gate.exists())),
        workdir=str(home),
    )
    result: list[ExecResult] = []
    worker = threading.Thread(target=lambda: result.append(sb_backend.exec(sb_sandbox, request)))
    worker.start()
    try:
        wait_for(lambda: {c[0] for c in chunks} == {"out", "err"}, "both streams")
    finally:
        gate.touch()
        worker.join(NO_HANG_SECONDS)
    assert result == [ExecResult(exit_code=9)]
    assert [(s, b) for s, b, _ in chunks] in (
        [("out", b"first line out\n"), ("err", b"first line err\n")],
        [("err", b"first line err\n"), ("out", b"first line out\n")],
    )
    assert not any(opened for _, _, opened in chunks)  # every chunk arrived before the command could end


def test_each_exec_uses_its_own_session_and_deletes_it(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    assert run(sb_backend, sb_sandbox, "true")[0] == 0
    assert run(sb_backend, sb_sandbox, "sh", "-c", "exit 3")[0] == 3
    created = [p for p in session_paths(standin, "POST") if p.endswith("/process/session")]
    deleted = session_paths(standin, "DELETE")
    assert len(created) == 2 and len(deleted) == 2 and len(set(deleted)) == 2
    assert standin.sessions == {}
    # exec went through sessions only: never the one-shot, combined-output endpoint
    assert not [r for r in standin.requests if r["path"].endswith("/process/execute") and "SANDBOXCTL" not in str(r)]


def test_an_interrupt_kills_the_command_and_deletes_the_session(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    """Ctrl-C (KeyboardInterrupt in the main thread) while the command runs."""
    home = standin.sandboxes[sb_sandbox].home
    script = "touch started; sleep 3; touch finished"
    request = ExecRequest(("sh", "-c", script), lambda b: None, lambda b: None, workdir=str(home))
    interrupter = threading.Thread(
        target=lambda: (wait_for(lambda: (home / "started").exists(), "start"), os.kill(os.getpid(), 2))
    )
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        sb_backend.exec(sb_sandbox, request)
    interrupter.join()
    assert standin.sessions == {}
    time.sleep(3.5)
    assert not (home / "finished").exists()


def test_the_session_is_deleted_when_streaming_fails(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    standin.add_fault(method="GET", path="/logs$", status=400, times=-1)  # not transient: fails at once
    with pytest.raises(Exception, match="stream"):
        run(sb_backend, sb_sandbox, "echo", "x")
    assert standin.sessions == {}


# -- hostile output ----------------------------------------------------------------------------------
def test_hostile_output_is_passed_on_not_acted_on(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    """Invalid UTF-8, terminal escapes and a megabyte: all arrive (bytes Daytona cannot carry become U+FFFD),
    in order, and the exit code still comes from the session command, not from anything printed."""
    script = "printf 'bad \\377\\376 bytes\\n'; printf '\\033]0;title\\007\\n'; "
    script += "head -c 1048576 /dev/zero | tr '\\0' x; exit 4"
    code, out, err = run(sb_backend, sb_sandbox, "sh", "-c", script)
    assert code == 4 and err == b""
    assert out.startswith("bad \ufffd\ufffd bytes\n\x1b]0;title\x07\n".encode())
    assert out.endswith(b"x" * 1000) and out.count(b"x") == 1048576


# -- 2. stdin -------------------------------------------------------------------------------------------
def test_stdin_from_a_pipe_arrives_whole_with_eof(sb_backend: DaytonaBackend, sb_sandbox: str) -> None:
    payload = os.urandom(100_000)  # binary, several input lines
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_end, payload), os.close(write_end)))
    writer.start()
    with os.fdopen(read_end, "rb") as stdin:
        code, out, _ = run(sb_backend, sb_sandbox, "sh", "-c", "od -An -tx1 -v | tr -d ' \\n'", stdin=stdin)
    writer.join()
    assert code == 0 and out.decode() == payload.hex()


def test_stdin_from_a_file_and_an_empty_one(sb_backend: DaytonaBackend, sb_sandbox: str, tmp_path: Path) -> None:
    source = tmp_path / "input"
    source.write_bytes(b"line one\nline two without newline")
    with source.open("rb") as handle:
        assert run(sb_backend, sb_sandbox, "cat", stdin=handle) == (0, b"line one\nline two without newline", b"")
    assert run(sb_backend, sb_sandbox, "wc", "-c", stdin=io.BytesIO(b""))[1].strip() == b"0"


def test_stdin_reaches_a_command_interactively(standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str) -> None:
    """Like a terminal: a line is sent only after the command has answered the previous one; then EOF."""
    read_end, write_end = os.pipe()
    out = bytearray()
    script = 'while read -r line; do echo "got $line"; done; echo "eof"'
    request = ExecRequest(("sh", "-c", script), out.extend, lambda b: None, stdin=os.fdopen(read_end, "rb"))
    result: list[ExecResult] = []
    worker = threading.Thread(target=lambda: result.append(sb_backend.exec(sb_sandbox, request)))
    worker.start()
    os.write(write_end, b"one\n")
    wait_for(lambda: b"got one\n" in out, "the first answer")
    os.write(write_end, b"two\n")
    wait_for(lambda: b"got two\n" in out, "the second answer")
    os.close(write_end)
    worker.join(NO_HANG_SECONDS)
    assert result == [ExecResult(exit_code=0)] and bytes(out) == b"got one\ngot two\neof\n"  # no echo of the input


def test_a_resent_stdin_line_is_not_delivered_twice(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    """The daemon took the input but its answer was lost: the retry repeats the line, the command sees it once."""
    standin.add_fault(method="POST", path="/input$", lose=True, times=1)
    assert run(sb_backend, sb_sandbox, "cat", stdin=io.BytesIO(b"exactly once")) == (0, b"exactly once", b"")
    assert len([r for r in standin.requests if r["path"].endswith("/input")]) == 3  # data (twice), then EOF


def test_a_command_that_ignores_stdin_does_not_wait_for_it(sb_backend: DaytonaBackend, sb_sandbox: str) -> None:
    read_end, write_end = os.pipe()  # nobody ever writes or closes it
    try:
        with os.fdopen(read_end, "rb", closefd=False) as stdin:
            assert run(sb_backend, sb_sandbox, "echo", "done", stdin=stdin) == (0, b"done\n", b"")
    finally:
        os.close(read_end)
        os.close(write_end)


# -- 4. retries on every call ---------------------------------------------------------------------------
def _tar(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/process/session$"),  # session calls
        ("POST", "/exec$"),
        ("GET", "/logs$"),
        ("GET", "/command/[^/]+$"),
        ("DELETE", "/process/session/[^/]+$"),
        ("POST", "/process/execute$"),  # helpers: archives, kill
        ("POST", "/files/bulk-upload$"),  # upload, download
        ("POST", "/files/bulk-download$"),
        ("GET", "^/api/sandbox/[^/]+$"),  # status
        ("GET", "^/api/sandbox$"),  # list
        ("POST", "^/api/sandbox/[^/]+/start$"),  # start
    ],
)
@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 429, "retry_after": 0}, {"drop": True}, {"status": 503}])
def test_a_transient_failure_on_any_call_is_retried(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str, method: str, path: str, fault: dict[str, object]
) -> None:
    workspace = sb_backend.workspace_path(sb_sandbox)
    standin.sandboxes[sb_sandbox].state = "stopped"  # so the next call starts it first
    standin.add_fault(method=method, path=path, times=1, **fault)
    if "files" in path or "execute" in path:
        sb_backend.upload_archive(sb_sandbox, workspace, io.BytesIO(_tar("notes.txt", b"kept")))
        with (
            sb_backend.download_archive(sb_sandbox, f"{workspace}/notes.txt") as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            member = next(iter(tar))
            extracted = tar.extractfile(member)
            assert member.name == "notes.txt" and extracted is not None and extracted.read() == b"kept"
    elif path == "^/api/sandbox$":
        assert [s.backend_id for s in sb_backend.list_owned()] == [sb_sandbox]
    else:
        script = "echo out-line; echo err-line >&2; exit 6"
        assert run(sb_backend, sb_sandbox, "sh", "-c", script) == (6, b"out-line\n", b"err-line\n")
    assert not [f for f in standin.faults if f.times != 0], "the fault never fired"
    assert standin.sessions == {}


def test_exec_survives_a_lost_answer_to_the_command_start(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    """The daemon started the command but its answer was lost: the command is found, not started twice."""
    home = standin.sandboxes[sb_sandbox].home
    standin.add_fault(method="POST", path="/exec$", lose=True, times=1)
    assert run(sb_backend, sb_sandbox, "sh", "-c", "echo ran >> runs; cat runs", workdir=str(home))[:2] == (0, b"ran\n")


def test_retry_after_is_honoured(standin: StandIn, sb_backend: DaytonaBackend, suite_label: dict[str, str]) -> None:
    standin.add_fault(method="POST", path="^/api/sandbox$", status=429, retry_after=1.5, times=1)
    times: list[float] = []
    original = standin.take_fault

    def stamped(method: str, path: str) -> object:
        if (method, path) == ("POST", "/api/sandbox"):
            times.append(time.monotonic())
        return original(method, path)

    standin.take_fault = stamped  # type: ignore[method-assign]
    sb_backend.create(make_spec(STANDIN_IMAGE, suite_label))
    assert len(times) == 2 and times[1] - times[0] >= 1.5  # the server's wait, longer than our first backoff


@pytest.mark.parametrize("fault", [{"lose": True}, {"drop": True}, {"status": 502}])
def test_a_create_whose_answer_is_lost_makes_one_sandbox(
    standin: StandIn, sb_backend: DaytonaBackend, suite_label: dict[str, str], fault: dict[str, object]
) -> None:
    standin.add_fault(method="POST", path="^/api/sandbox$", times=1, **fault)
    spec = make_spec(STANDIN_IMAGE, suite_label)
    created = sb_backend.create(spec)
    assert [s.id for s in standin.sandboxes.values()] == [created.backend_id]
    assert created.labels[LABEL_ID] == spec.sandbox_id


def test_a_failure_while_waiting_for_started_does_not_create_twice(
    standin: StandIn, sb_backend: DaytonaBackend, suite_label: dict[str, str]
) -> None:
    standin.start_states[:] = ["starting", "starting", "started"]
    standin.add_fault(method="GET", path="^/api/sandbox/[^/]+$", status=500, times=1)
    created = sb_backend.create(make_spec(STANDIN_IMAGE, suite_label))
    assert [s.id for s in standin.sandboxes.values()] == [created.backend_id]
    assert standin.sandboxes[created.backend_id].state == "started"


def test_slow_answers_past_the_read_timeout_are_retried(standin: StandIn, suite_label: dict[str, str]) -> None:
    backend = DaytonaBackend(standin.api_key, standin.api_url, request_timeout=1)
    standin.add_fault(method="GET", path="^/api/sandbox$", delay=2.5, times=1)
    assert backend.list_owned(suite_label) == []
    assert [r["method"] for r in standin.requests if r["path"] == "/api/sandbox"] == ["GET", "GET"]


def test_a_dead_api_still_gives_up_as_unavailable(api_key: str, suite_label: dict[str, str]) -> None:
    backend = DaytonaBackend(api_key, "http://127.0.0.1:9/api")
    with pytest.raises(Unavailable):
        guarded(
            lambda: backend.create(CreateSpec(new_sandbox_id(), "x", STANDIN_IMAGE, {LABEL_ID: "x", **suite_label}))
        )
