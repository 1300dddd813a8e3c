"""The Daytona adapter on the real SDK, against the stand-in (or real Daytona: see conftest.py)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from sandboxctl.backends.base import (
    Backend,
    BackendError,
    BackendState,
    CreateSpec,
    ExecRequest,
    ExecResult,
    NotFound,
    Transient,
    Unavailable,
)
from sandboxctl.backends.daytona import DaytonaBackend
from sandboxctl.config import Settings
from sandboxctl.errors import UsageError
from sandboxctl.labels import LABEL_ID
from sandboxctl.registry.store import new_sandbox_id
from sandboxctl.services.deletion import remove_backend_resource

from .conftest import STANDIN_IMAGE, Target, guarded, make_spec, run
from .standin import StandIn

pytestmark = pytest.mark.daytona


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def posts(standin: StandIn, path: str) -> list[dict[str, object]]:
    return [r["json"] for r in standin.requests if r["method"] == "POST" and r["path"] == path]


# -- shape and import cost -------------------------------------------------------------------------
def test_backend_satisfies_protocol(backend: DaytonaBackend) -> None:
    assert isinstance(backend, Backend)


def test_importing_the_adapter_imports_no_sdk() -> None:
    code = (
        "import sys, sandboxctl.backends.daytona\n"
        "heavy = {'daytona', 'daytona_api_client', 'daytona_toolbox_api_client', 'urllib3', 'httpx', 'pydantic'}\n"
        "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- lifecycle ---------------------------------------------------------------------------------------
def test_create_inspect_and_list_owned(backend: DaytonaBackend, sandbox: str, suite_label: dict[str, str]) -> None:
    seen = backend.inspect(sandbox)
    assert seen.state is BackendState.RUNNING
    assert seen.labels["sandboxctl-test"] == suite_label["sandboxctl-test"]
    assert seen.name == f"sandboxctl-{seen.labels[LABEL_ID]}"
    assert seen.created_at is not None and seen.created_at.tzinfo is not None
    assert [s.backend_id for s in backend.list_owned(suite_label)] == [sandbox]
    assert backend.list_owned({**suite_label, "other": "value"}) == []
    assert sandbox in {s.backend_id for s in backend.list_owned()}


def test_list_owned_skips_sandboxes_without_a_sandboxctl_id(
    backend: DaytonaBackend, target: Target, suite_label: dict[str, str]
) -> None:
    unowned = CreateSpec(sandbox_id=new_sandbox_id(), name="unowned", image=target.image, labels=dict(suite_label))
    created = backend.create(unowned)
    try:
        assert backend.inspect(created.backend_id).labels["sandboxctl-test"] == suite_label["sandboxctl-test"]
        assert backend.list_owned(suite_label) == []
    finally:
        backend.delete(created.backend_id)


def test_list_owned_follows_every_page(standin: StandIn, sb_backend: DaytonaBackend) -> None:
    """More sandboxes than one page (100) holds: the SDK follows `nextCursor`, nothing is lost."""
    for number in range(105):
        body = json.dumps({"name": f"many-{number}", "labels": {LABEL_ID: f"id-{number}", "batch": "many"}}).encode()
        request = urllib.request.Request(f"{standin.api_url}/sandbox", data=body, method="POST")
        request.add_header("Authorization", f"Bearer {standin.api_key}")
        request.add_header("Content-Type", "application/json")
        urllib.request.urlopen(request).close()
    owned = sb_backend.list_owned({"batch": "many"})
    assert sorted(s.labels[LABEL_ID] for s in owned) == sorted(f"id-{n}" for n in range(105))
    pages = [r for r in standin.requests if r["method"] == "GET" and r["path"] == "/api/sandbox"]
    assert [r["query"].get("cursor") for r in pages] == [None, ["100"]]


def test_create_maps_the_spec_onto_daytona_parameters(
    standin: StandIn, sb_backend: DaytonaBackend, suite_label: dict[str, str]
) -> None:
    spec = make_spec(
        STANDIN_IMAGE,
        suite_label,
        env={"TOKEN": "value"},
        cpus=1.5,
        memory_bytes=3 * 1024**3 + 1,
        ttl_seconds=3601,
        idle_timeout_seconds=600,
    )
    sb_backend.create(spec)
    [body] = posts(standin, "/api/sandbox")
    assert body["name"] == f"sandboxctl-{spec.sandbox_id}"
    assert body["labels"] == {**spec.labels, "code-toolbox-language": "python"}
    assert body["env"] == {"TOKEN": "value"}
    assert body["buildInfo"] == {"dockerfileContent": "FROM python:3.12-slim\n"}
    assert (body["cpu"], body["memory"]) == (2, 4)  # whole CPUs and GiB, rounded up
    # TTL: destroyed 61 minutes after creation whatever its state; idle: stop after 10 minutes, then delete.
    assert (body["ttlMinutes"], body["autoStopInterval"], body["autoDeleteInterval"]) == (61, 10, 0)


def test_create_from_a_snapshot_without_ttl_or_idle_timeout(
    standin: StandIn, sb_backend: DaytonaBackend, suite_label: dict[str, str]
) -> None:
    sb_backend.create(make_spec("snapshot:team-snapshot", suite_label))
    [body] = posts(standin, "/api/sandbox")
    assert body["snapshot"] == "team-snapshot" and "buildInfo" not in body
    assert body["autoStopInterval"] == 0  # never auto-stopped (Daytona's default would stop it after 15 minutes)
    assert "ttlMinutes" not in body and "autoDeleteInterval" not in body  # `permanent`: Daytona never expires it


def test_a_snapshot_refuses_cpus_and_memory_before_any_request(standin: StandIn, sb_backend: DaytonaBackend) -> None:
    with pytest.raises(UsageError, match="snapshot"):
        sb_backend.create(make_spec("snapshot:team-snapshot", {}, cpus=2.0))
    assert standin.requests == []


def test_create_waits_through_a_slow_start(
    standin: StandIn, sb_backend: DaytonaBackend, suite_label: dict[str, str]
) -> None:
    standin.start_states[:] = ["starting", "starting", "starting", "started"]
    created = sb_backend.create(make_spec(STANDIN_IMAGE, suite_label))
    assert created.state is BackendState.RUNNING
    polls = [r for r in standin.requests if r["method"] == "GET" and r["path"] == f"/api/sandbox/{created.backend_id}"]
    assert len(polls) >= 4


def test_a_failed_start_removes_the_half_created_sandbox(
    standin: StandIn, sb_backend: DaytonaBackend, suite_label: dict[str, str]
) -> None:
    standin.start_states[:] = ["starting", "error"]
    with pytest.raises(BackendError, match="error") as info:
        sb_backend.create(make_spec(STANDIN_IMAGE, suite_label))
    assert not isinstance(info.value, Unavailable)
    assert standin.sandboxes == {}
    assert [r["method"] for r in standin.requests].count("DELETE") == 1


def test_delete_then_not_found(backend: DaytonaBackend, sandbox: str) -> None:
    backend.delete(sandbox)
    with pytest.raises(NotFound):
        backend.inspect(sandbox)
    with pytest.raises(NotFound):
        backend.delete(sandbox)
    with pytest.raises(NotFound):
        run(backend, sandbox, "true")


def test_delete_retries_429_and_5xx_inside_the_adapter(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    for method, status in (("DELETE", 500), ("GET", 429), ("DELETE", 503)):
        standin.add_fault(method=method, path="^/api/sandbox/", status=status)
    sb_backend.delete(sb_sandbox)
    assert sb_sandbox not in standin.sandboxes
    assert [r["method"] for r in standin.requests if r["path"].startswith("/api/sandbox/")].count("DELETE") == 3


def test_a_transient_error_that_outlasts_the_window_is_transient(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    standin.add_fault(method="DELETE", path="^/api/sandbox/", status=503, times=-1)
    sb_backend.retry_budget = 1.0  # one second of retrying, then the error as it was
    with pytest.raises(Transient, match="503"):
        sb_backend.delete(sb_sandbox)
    assert [r["method"] for r in standin.requests].count("DELETE") >= 2
    standin.faults.clear()  # so the fixture can delete it


def test_delete_is_retried_through_two_transient_500s(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str
) -> None:
    """The one retry policy (sandboxctl.backends.retry, tenacity): deletion on top of the adapter's own retries."""
    standin.add_fault(method="DELETE", path="^/api/sandbox/", status=500, times=2)
    deletion = remove_backend_resource(sb_backend, "any-record", sb_sandbox)
    assert (deletion.success, deletion.error) == (True, None)
    assert sb_sandbox not in standin.sandboxes
    assert [r["method"] for r in standin.requests].count("DELETE") == 3


def test_delete_404_is_not_found(standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str) -> None:
    with pytest.raises(NotFound):
        sb_backend.delete("00000000-0000-4000-8000-000000000000")
    standin.add_fault(method="DELETE", path="^/api/sandbox/", status=404)  # gone between our GET and DELETE
    with pytest.raises(NotFound):
        sb_backend.delete(sb_sandbox)


# -- exec --------------------------------------------------------------------------------------------
def test_exec_exit_code_output_env_and_workdir(backend: DaytonaBackend, sandbox: str) -> None:
    # Through a session: stdout and stderr arrive apart, the exit code passed through.
    assert run(backend, sandbox, "sh", "-c", "echo o; echo e >&2; exit 5") == (5, b"o\n", b"e\n")
    code, out, _ = run(backend, sandbox, "sh", "-c", 'echo "$CREATED_WITH $PER_EXEC"', env={"PER_EXEC": "x"})
    assert (code, out) == (0, b"yes x\n")
    code, out, _ = run(backend, sandbox, "printf", "%s|", "a b", "$HOME", "it's", '"q"', "*")
    assert (code, out) == (0, b'a b|$HOME|it\'s|"q"|*|')  # arguments arrive literally, never re-split or globbed
    workspace = backend.workspace_path(sandbox)
    assert run(backend, sandbox, "mkdir", "-p", f"{workspace}/sub")[0] == 0
    code, out, _ = run(backend, sandbox, "pwd", workdir=f"{workspace}/sub")
    assert (code, out.decode().strip()) == (0, f"{workspace}/sub")


def test_exec_feeds_stdin_from_a_pipe_or_a_file(backend: DaytonaBackend, sandbox: str, tmp_path: Path) -> None:
    assert run(backend, sandbox, "cat", stdin=io.BytesIO(b"through stdin")) == (0, b"through stdin", b"")
    source = tmp_path / "input"
    source.write_bytes(b"12345")
    with source.open("rb") as handle:
        assert run(backend, sandbox, "wc", "-c", stdin=handle)[1].strip() == b"5"
    workspace = backend.workspace_path(sandbox)
    run(backend, sandbox, "mkdir", "-p", workspace)
    code, out, _ = run(backend, sandbox, "sh", "-c", "pwd; cat", stdin=io.BytesIO(b"x"), workdir=workspace)
    assert (code, out) == (0, f"{workspace}\nx".encode())


def test_exec_does_not_wait_for_a_pipe_nobody_writes_to(backend: DaytonaBackend, sandbox: str) -> None:
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(read_end, "rb", closefd=False) as stdin:
            assert guarded(lambda: run(backend, sandbox, "echo", "ok", stdin=stdin)) == (0, b"ok\n", b"")
    finally:
        os.close(read_end)
        os.close(write_end)


def test_exec_timeout_is_124_and_the_command_is_killed(backend: DaytonaBackend, sandbox: str) -> None:
    request = ExecRequest(
        command=("sh", "-c", 'sleep 4; touch "$HOME/late"'),
        on_stdout=lambda chunk: None,
        on_stderr=lambda chunk: None,
        timeout_seconds=1,
    )
    assert guarded(lambda: backend.exec(sandbox, request)) == ExecResult(exit_code=124, timed_out=True)
    time.sleep(4.5)
    assert run(backend, sandbox, "sh", "-c", 'test -e "$HOME/late"')[0] == 1


def test_exec_starts_a_stopped_sandbox_first(standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str) -> None:
    standin.sandboxes[sb_sandbox].state = "stopped"  # auto-stopped, or stopped in the dashboard
    assert run(sb_backend, sb_sandbox, "echo", "up") == (0, b"up\n", b"")
    assert [r["path"] for r in standin.requests].count(f"/api/sandbox/{sb_sandbox}/start") == 1


# -- files ---------------------------------------------------------------------------------------------
def _repo_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        files = (("repo/notes.txt", b"hello archive\n", 0o644), ("repo/run.sh", b"#!/bin/sh\necho ran\n", 0o755))
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("repo/link")
        link.type, link.linkname = tarfile.SYMTYPE, "notes.txt"
        archive.addfile(link)
    return buffer.getvalue()


def test_archive_round_trip_keeps_modes_and_links(backend: DaytonaBackend, sandbox: str) -> None:
    workspace = backend.workspace_path(sandbox)
    assert workspace.endswith("/workspace")
    backend.upload_archive(sandbox, workspace, io.BytesIO(_repo_tar()))
    code, out, _ = run(backend, sandbox, "sh", "-c", f"cat {workspace}/repo/link && {workspace}/repo/run.sh")
    assert (code, out) == (0, b"hello archive\nran\n")
    for path in (f"{workspace}/repo", f"{workspace}/repo/"):
        with backend.download_archive(sandbox, path) as stream, tarfile.open(fileobj=stream) as archive:  # a file
            members = {m.name: m for m in archive.getmembers()}
            assert {"repo", "repo/notes.txt", "repo/run.sh", "repo/link"} <= set(members), sorted(members)
            assert members["repo/run.sh"].mode & 0o111 and members["repo/link"].linkname == "notes.txt"
            notes = archive.extractfile("repo/notes.txt")
            assert notes is not None and notes.read() == b"hello archive\n"
    with pytest.raises(NotFound), backend.download_archive(sandbox, f"{workspace}/no-such-dir"):
        pass


# -- failures: unreachable, silent, unauthorised, and the key kept secret -----------------------------
def test_an_unreachable_api_is_unavailable_at_once(api_key: str, suite_label: dict[str, str]) -> None:
    backend = DaytonaBackend(api_key, closed_port_url())
    for call in (lambda: backend.inspect("any"), backend.list_owned, lambda: backend.create(make_spec("img", {}))):
        with pytest.raises(Unavailable, match=r"unreachable .*connection refused") as info:
            guarded(call)
        assert api_key not in str(info.value)


def test_tls_failure_is_unavailable(standin: StandIn, api_key: str) -> None:
    backend = DaytonaBackend(api_key, standin.api_url.replace("http://", "https://"))  # TLS to a plain-HTTP port
    with pytest.raises(Unavailable, match=r"TLS to the Daytona API at https://.* failed"):
        backend.list_owned()


@pytest.mark.slow
def test_a_silent_api_is_unavailable_within_the_bound(
    standin: StandIn, api_key: str, suite_label: dict[str, str]
) -> None:
    """Default timeouts: the request is made once (no retry multiplies the wait) and gives up in time."""
    standin.add_fault(path="^/api/", silence=True, times=-1)
    backend = DaytonaBackend(api_key, standin.api_url)
    with pytest.raises(Unavailable, match="did not answer"):
        guarded(lambda: backend.create(make_spec(STANDIN_IMAGE, suite_label)))
    assert [r["method"] for r in standin.requests] == ["POST"]


def test_a_silent_api_is_asked_again_within_the_bound(standin: StandIn) -> None:
    """A read timeout is retried like any transient failure, but only while a whole attempt still fits."""
    standin.add_fault(path="^/api/", silence=True, times=-1)
    backend = DaytonaBackend(standin.api_key, standin.api_url, request_timeout=1)
    for call in (lambda: backend.inspect("any"), backend.list_owned):
        with pytest.raises(Unavailable, match="did not answer"):
            guarded(call)
    methods = [r["method"] for r in standin.requests]
    assert set(methods) == {"GET"} and len(methods) > 2, methods


def test_a_wrong_api_url_is_unavailable_never_an_already_deleted_sandbox(
    standin: StandIn, sb_sandbox: str, api_key: str, suite_label: dict[str, str]
) -> None:
    """A URL without `/api` answers 404 to everything: that must not make a delete look done."""
    wrong = DaytonaBackend(api_key, standin.url + "/not-the-api")
    calls = (
        lambda: wrong.delete(sb_sandbox),
        lambda: wrong.inspect(sb_sandbox),
        wrong.list_owned,
        lambda: wrong.create(make_spec(STANDIN_IMAGE, suite_label)),
    )
    for call in calls:
        with pytest.raises(Unavailable, match=r"no Daytona API at .*/not-the-api \(HTTP 404\): check DAYTONA_API_URL"):
            call()
    assert sb_sandbox in standin.sandboxes
    assert standin.unhandled  # the stand-in saw the wrong paths...
    standin.unhandled.clear()  # ...which is this test's point, not a gap in the stand-in


def test_a_rejected_key_is_unavailable_naming_the_variable(standin: StandIn, api_key: str) -> None:
    wrong = DaytonaBackend(f"{api_key}-wrong", standin.api_url)
    with pytest.raises(Unavailable, match=r"rejected the API key \(HTTP 401\): check DAYTONA_API_KEY") as info:
        wrong.list_owned()
    assert api_key not in str(info.value)
    standin.add_fault(path="^/api/", status=403)
    with pytest.raises(Unavailable, match=r"HTTP 403.*DAYTONA_API_KEY"):
        DaytonaBackend(api_key, standin.api_url).list_owned()


def test_the_key_is_scrubbed_from_every_message(
    standin: StandIn, sb_backend: DaytonaBackend, sb_sandbox: str, api_key: str
) -> None:
    # A server that echoes our Authorization header in its error: the key must still never surface.
    standin.add_fault(path="^/toolbox/", status=400, message="bad header {authorization}")
    with pytest.raises(BackendError) as info:
        run(sb_backend, sb_sandbox, "true")
    errors = [info.value]
    standin.add_fault(path="^/api/sandbox", status=400, message="bad header {authorization}", times=-1)
    for call in (lambda: sb_backend.inspect(sb_sandbox), sb_backend.list_owned, lambda: sb_backend.delete(sb_sandbox)):
        with pytest.raises(BackendError) as info:
            call()
        errors.append(info.value)
    standin.faults.clear()
    for error in errors:
        assert "Bearer ***" in str(error) and api_key not in str(error), str(error)
        assert error.__cause__ is None and error.__suppress_context__  # no SDK message in a --debug traceback
    assert api_key not in repr(sb_backend)


def test_a_missing_key_is_a_usage_error_naming_the_variable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DAYTONA_API_KEY", "DAYTONA_API_URL", "DAYTONA_TARGET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UsageError, match="DAYTONA_API_KEY") as info:
        DaytonaBackend.from_settings(Settings.load())
    assert info.value.exit_code == 2


def test_settings_come_from_config_toml_when_the_environment_is_silent(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DAYTONA_API_KEY", "DAYTONA_API_URL", "DAYTONA_TARGET"):
        monkeypatch.delenv(name, raising=False)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[daytona]\napi_key = "from-file-key"\napi_url = "http://127.0.0.1:1/api"\ntarget = "eu"\n'
    )
    backend = DaytonaBackend.from_settings(Settings.load())
    assert (backend.api_url, backend.target) == ("http://127.0.0.1:1/api", "eu")
    assert "from-file-key" not in repr(backend)


def test_polling_mode_no_socketio_no_thread_no_warning(standin: StandIn, sb_backend: DaytonaBackend) -> None:
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb_backend.list_owned()
    time.sleep(0.5)  # the SDK's default mode would have connected from a background thread by now
    assert not [r["path"] for r in standin.requests if "socket.io" in r["path"]]
    new_threads = [t.name for t in set(threading.enumerate()) - before if "process_request" not in t.name]
    assert new_threads == [] and [str(w.message) for w in caught] == []
