"""Fixtures for the Daytona tests: a loopback stand-in per test, the adapter on it, the CLI pointed at it.

By default everything runs against the stand-in (`standin.py`). With
SANDBOXCTL_TEST_DAYTONA_REAL=1 and DAYTONA_API_KEY (optionally DAYTONA_API_URL,
DAYTONA_TARGET and SANDBOXCTL_TEST_DAYTONA_IMAGE) the tests that use `target`
run against real Daytona instead; tests that need a stand-in knob (faults, slow
start) keep the stand-in. See the README, "Daytona".
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sandboxctl.backends.base import Backend, CreateSpec, ExecRequest, NotFound
from sandboxctl.backends.daytona import DEFAULT_API_URL, DaytonaBackend
from sandboxctl.labels import LABEL_ID
from sandboxctl.registry.store import new_sandbox_id

from ..conftest import Cli
from .standin import StandIn, model_problems

REAL = os.environ.get("SANDBOXCTL_TEST_DAYTONA_REAL") == "1"
STANDIN_IMAGE = "python:3.12-slim"
# Against real Daytona `snapshot:` (Daytona's default snapshot) starts in seconds; an image is built first.
REAL_IMAGE = os.environ.get("SANDBOXCTL_TEST_DAYTONA_IMAGE") or "snapshot:"


@dataclass(frozen=True)
class Target:
    """Where the tests talk to: the stand-in (with `standin` set) or real Daytona."""

    api_url: str
    api_key: str
    image: str
    target: str | None = None
    standin: StandIn | None = None

    def backend(self) -> DaytonaBackend:
        return DaytonaBackend(self.api_key, self.api_url, self.target)


@pytest.fixture
def api_key() -> str:
    """A distinctive key, so any leak of it into output or files can be searched for."""
    return f"dtn-test-{secrets.token_hex(16)}"


@pytest.fixture
def standin(tmp_path: Path, api_key: str) -> Iterator[StandIn]:
    """A stand-in for this test. Afterwards: every JSON it served parses as the SDK's own model with no
    unknown field, and the adapter called no endpoint the stand-in does not implement."""
    with StandIn(tmp_path / "standin", api_key) as server:
        yield server
        with server.lock:
            served, unhandled = list(server.served), list(server.unhandled)
    problems = [problem for name, body in served for problem in model_problems(name, body)]
    assert not problems, problems
    assert not unhandled, f"endpoints the stand-in does not implement were called: {unhandled}"


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    if REAL:
        key = os.environ.get("DAYTONA_API_KEY")
        if not key:
            pytest.fail("SANDBOXCTL_TEST_DAYTONA_REAL=1 needs DAYTONA_API_KEY")
        url = os.environ.get("DAYTONA_API_URL") or DEFAULT_API_URL
        return Target(url, key, REAL_IMAGE, os.environ.get("DAYTONA_TARGET"))
    server: StandIn = request.getfixturevalue("standin")
    return Target(server.api_url, server.api_key, STANDIN_IMAGE, standin=server)


@pytest.fixture
def backend(target: Target) -> DaytonaBackend:
    return target.backend()


@pytest.fixture
def suite_label() -> dict[str, str]:
    """A label unique to this test, so listing never sees anyone else's sandboxes on a shared account."""
    return {"sandboxctl-test": secrets.token_hex(6)}


def make_spec(image: str, labels: dict[str, str], **fields: object) -> CreateSpec:
    sandbox_id = new_sandbox_id()
    return CreateSpec(
        sandbox_id=sandbox_id,
        name=f"test-{sandbox_id}",
        image=image,
        labels={LABEL_ID: sandbox_id, **labels},
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def sandbox(backend: DaytonaBackend, target: Target, suite_label: dict[str, str]) -> Iterator[str]:
    """One running sandbox (its backend id), deleted afterwards."""
    spec = make_spec(target.image, suite_label, env={"CREATED_WITH": "yes"}, ttl_seconds=3600)
    created = backend.create(spec)
    yield created.backend_id
    with contextlib.suppress(NotFound):
        backend.delete(created.backend_id)


@pytest.fixture
def sb_backend(standin: StandIn) -> DaytonaBackend:
    """The adapter on the stand-in even in real mode: for tests that turn the stand-in's knobs."""
    return DaytonaBackend(standin.api_key, standin.api_url, request_timeout=5)


@pytest.fixture
def sb_sandbox(sb_backend: DaytonaBackend, suite_label: dict[str, str]) -> Iterator[str]:
    """One sandbox on the stand-in (its backend id), deleted afterwards."""
    created = sb_backend.create(make_spec(STANDIN_IMAGE, suite_label))
    yield created.backend_id
    with contextlib.suppress(NotFound):
        sb_backend.delete(created.backend_id)


def run(backend: Backend, backend_id: str, *command: str, **kwargs: object) -> tuple[int, bytes, bytes]:
    """A command's exit code, stdout and stderr, through the backend's exec."""
    out, err = io.BytesIO(), io.BytesIO()
    result = backend.exec(backend_id, ExecRequest(command=command, on_stdout=out.write, on_stderr=err.write, **kwargs))
    return result.exit_code, out.getvalue(), err.getvalue()


@pytest.fixture
def dcli(cli: Cli, target: Target) -> Cli:
    """The installed `sandboxctl` with SANDBOXCTL_HOME set (by `cli`) and Daytona's URL and key."""
    env = {**cli.env, "DAYTONA_API_URL": target.api_url, "DAYTONA_API_KEY": target.api_key}
    if target.target:
        env["DAYTONA_TARGET"] = target.target
    return Cli(env)


T = TypeVar("T")
HANG_GUARD = 120  # seconds; only a hang reaches it. The bounds themselves (20 s, 30 s) are benchmarked, not asserted.


def guarded(call: Callable[[], T]) -> T:
    """`call()` in a daemon thread: its result or exception, or a test failure (not a hung suite) after HANG_GUARD."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    if thread.is_alive():
        pytest.fail(f"still running after {HANG_GUARD}s: a hang")
    if "error" in box:
        raise box["error"]
    return box["value"]
