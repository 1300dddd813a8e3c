"""Every backend satisfies the `Backend` Protocol the same way (docker on the real engine, local for real,
daytona through the real SDK against the loopback stand-in)."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import signal
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxctl.backends.base import Backend, BackendState, CreateSpec, ExecRequest, ExecResult, NotFound
from sandboxctl.registry.store import new_sandbox_id

from .conftest import TEST_IMAGE


@pytest.fixture(
    params=[
        "local",
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("daytona", marks=pytest.mark.daytona),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "daytona":
        from sandboxctl.backends.daytona import DaytonaBackend

        from .daytona.standin import StandIn

        key = f"contract-{secrets.token_hex(8)}"
        with StandIn(tmp_path / "standin", key) as standin:
            yield DaytonaBackend(key, standin.api_url, request_timeout=10)
    elif request.param == "docker":
        request.getfixturevalue("docker_image")
        from sandboxctl.backends.docker import DockerBackend

        yield DockerBackend()
    else:
        from sandboxctl.backends.local import LocalBackend

        yield LocalBackend(tmp_path / "local")


@pytest.fixture
def sandbox(backend: Backend) -> Iterator[str]:
    sandbox_id = new_sandbox_id()
    spec = CreateSpec(
        sandbox_id=sandbox_id,
        name=f"contract-{sandbox_id}",
        image=TEST_IMAGE,
        labels={"sandboxctl.id": sandbox_id, "suite": "contract"},
        env={"CREATED_WITH": "yes"},
    )
    created = backend.create(spec)
    assert created.state is BackendState.RUNNING
    yield created.backend_id
    with contextlib.suppress(NotFound):
        backend.delete(created.backend_id)


def run(backend: Backend, backend_id: str, *command: str, **kwargs: object) -> tuple[int, bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    result = backend.exec(backend_id, ExecRequest(command=command, on_stdout=out.write, on_stderr=err.write, **kwargs))
    return result.exit_code, out.getvalue(), err.getvalue()


def test_backend_satisfies_protocol(backend: Backend) -> None:
    assert isinstance(backend, Backend)


def test_inspect_and_list_owned_by_label(backend: Backend, sandbox: str) -> None:
    seen = backend.inspect(sandbox)
    assert seen.labels["suite"] == "contract" and seen.created_at is not None
    owned = backend.list_owned({"suite": "contract"})
    assert sandbox in {s.backend_id for s in owned}
    assert backend.list_owned({"suite": "no-such-value"}) == []


def test_exec_exit_code_streams_env_stdin_timeout(backend: Backend, sandbox: str) -> None:
    assert run(backend, sandbox, "sh", "-c", "echo o; echo e >&2; exit 5") == (5, b"o\n", b"e\n")
    code, out, _ = run(backend, sandbox, "sh", "-c", 'echo "$CREATED_WITH $PER_EXEC"', env={"PER_EXEC": "x"})
    assert (code, out) == (0, b"yes x\n")
    code, out, _ = run(backend, sandbox, "cat", stdin=io.BytesIO(b"through stdin"))
    assert (code, out) == (0, b"through stdin")
    result = backend.exec(
        sandbox,
        ExecRequest(command=("sleep", "30"), on_stdout=lambda b: None, on_stderr=lambda b: None, timeout_seconds=1),
    )
    assert result.timed_out and result.exit_code == 124


def test_archive_round_trip_into_workspace(backend: Backend, sandbox: str) -> None:
    workspace = backend.workspace_path(sandbox)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"hello archive\n"
        info = tarfile.TarInfo("repo/notes.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    backend.upload_archive(sandbox, workspace, buffer)
    code, out, _ = run(backend, sandbox, "cat", f"{workspace}/repo/notes.txt")
    assert (code, out) == (0, b"hello archive\n")
    with (
        backend.download_archive(sandbox, f"{workspace}/repo") as stream,
        tarfile.open(fileobj=stream, mode="r|") as archive,
    ):
        contents = {m.name: (archive.extractfile(m) or io.BytesIO()).read() for m in archive if m.isfile()}
    assert contents == {"repo/notes.txt": b"hello archive\n"}


def test_delete_then_not_found(backend: Backend, sandbox: str) -> None:
    backend.delete(sandbox)
    with pytest.raises(NotFound):
        backend.inspect(sandbox)
    with pytest.raises(NotFound):
        backend.delete(sandbox)
    with pytest.raises(NotFound):
        run(backend, sandbox, "true")


def _wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_exec_contract_live_apart_stdin_and_exit_code(backend: Backend, sandbox: str) -> None:
    """Both streams arrive, apart, while the command still waits for the line only we can send; then EOF."""
    read_end, write_end = os.pipe()
    out, err = bytearray(), bytearray()
    script = 'echo "ready on stdout"; echo "ready on stderr" >&2; read -r reply; echo "got $reply"; cat; exit 7'
    request = ExecRequest(("sh", "-c", script), out.extend, err.extend, stdin=os.fdopen(read_end, "rb"))
    results: list[ExecResult] = []
    worker = threading.Thread(target=lambda: results.append(backend.exec(sandbox, request)))
    worker.start()
    try:
        _wait_for(lambda: b"ready on stdout\n" in out and b"ready on stderr\n" in err, "both streams, live")
        os.write(write_end, b"go\nrest of stdin")
    finally:
        os.close(write_end)  # EOF: `cat` ends, then the command
        worker.join(30)
    assert results == [ExecResult(exit_code=7)]
    assert (bytes(out), bytes(err)) == (b"ready on stdout\ngot go\nrest of stdin", b"ready on stderr\n")


def test_exec_contract_timeout_and_interrupt_kill_the_command(backend: Backend, sandbox: str) -> None:
    """`timeout_seconds` -> 124 and an interrupt (Ctrl-C; the CLI turns SIGTERM into one) -> raised: in both
    cases the command is killed, so what it would have done later never happens."""
    marker = f"/tmp/contract-{secrets.token_hex(6)}"
    late = f'echo started; sleep 3; touch "{marker}"'
    result = backend.exec(sandbox, ExecRequest(("sh", "-c", late), lambda b: None, lambda b: None, timeout_seconds=1))
    assert result == ExecResult(exit_code=124, timed_out=True)
    started = threading.Event()
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    # Half a second after the first output, as a user's Ctrl-C comes: the command is surely running by then.
    interrupter = threading.Thread(
        target=lambda: started.wait(30) and not time.sleep(0.5) and signal.pthread_kill(main, signal.SIGINT)
    )
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        backend.exec(
            sandbox, ExecRequest(("sh", "-c", late + "-2"), lambda b: started.set(), lambda b: None, timeout_seconds=30)
        )
    interrupter.join()
    time.sleep(3.5)
    assert run(backend, sandbox, "test", "-e", marker)[0] == 1, "the timed-out command ran on"
    assert run(backend, sandbox, "test", "-e", f"{marker}-2")[0] == 1, "the interrupted command ran on"
