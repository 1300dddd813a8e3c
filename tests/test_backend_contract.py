"""Every backend satisfies the `Backend` Protocol the same way (docker on the real engine, local for real)."""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxctl.backends.base import Backend, BackendState, CreateSpec, ExecRequest, NotFound
from sandboxctl.registry.store import new_sandbox_id

from .conftest import TEST_IMAGE


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "docker":
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
