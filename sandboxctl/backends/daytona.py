"""Daytona backend on the `daytona` SDK (pinned 0.226.1; see the README, "Daytona").

A sandbox is one Daytona sandbox named `sandboxctl-<id>` and labelled with
`CreateSpec.labels`, so `cleanup --orphans` can judge it without the registry.

The SDK costs ~2 s to import, so it is imported on first use, never by importing
this module. Three of its habits are tamed here, because a CLI must not hang:

- urllib3 retries every control-plane GET 3 times and waits forever when no
  timeout is given (the SDK's own wait loop gives none). The control-plane HTTP
  client is rebuilt so that every request has a connect and read timeout and only
  failed connects are retried: a dead API costs at most one read timeout.
- The default mode opens a Socket.IO WebSocket from a background thread; we use
  `use_deprecated_polling=True` instead (its DeprecationWarning is silenced).
- `create`/`delete` arm the SDK's own SIGALRM timer on the main thread; this
  module never calls `signal.alarm` itself, so the two cannot collide.

Retries: every SDK call goes through `_call`, which retries transient failures
(429 honouring Retry-After, 5xx, a dropped or reset connection, a read timeout)
with the one tenacity policy of `sandboxctl.backends.retry` that deletion also uses: each
call within `RETRY_WITHIN_SECONDS`, and one backend object (one CLI command) spends
at most `RETRY_BUDGET_SECONDS` retrying in all. Calls that are not idempotent are
made safe to repeat: a create is looked up by its `sandboxctl.id` label before it is
sent again, a session command by the session's command list, and stdin lines carry
sequence numbers the remote side deduplicates.

exec runs in a Daytona session (one per exec, deleted afterwards): stdout and
stderr stream apart and live over the session's log WebSocket, the exit code comes
from the session command, and stdin is forwarded with `send_session_command_input`
(see `_WRAPPER` for how EOF gets through an API that has none).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import os
import posixpath
import re
import secrets
import shlex
import shutil
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

from sandboxctl.backends.base import (
    EXEC_TOKEN_VAR,
    TIMED_OUT,
    BackendError,
    BackendSandbox,
    BackendState,
    CreateSpec,
    DeleteResult,
    ExecRequest,
    ExecResult,
    NotFound,
    Transient,
    Unavailable,
    Unresponsive,
    kill_by_token_script,
)
from sandboxctl.backends.retry import transient_retrying
from sandboxctl.errors import SandboxctlError, UsageError
from sandboxctl.labels import LABEL_ID, matches

if TYPE_CHECKING:
    from daytona import CreateSandboxFromImageParams, CreateSandboxFromSnapshotParams, Daytona, Sandbox

    from sandboxctl.config import Settings

T = TypeVar("T")

DEFAULT_API_URL = "https://app.daytona.io/api"
SNAPSHOT_PREFIX = "snapshot:"
CONNECT_TIMEOUT = 5.0  # seconds to open a TCP connection to the API or the toolbox
REQUEST_TIMEOUT = 20.0  # seconds one control-plane request may take; a dead API fails after this
CREATE_TIMEOUT = 300.0  # building an image into a snapshot on first use takes minutes
TRANSFER_TIMEOUT = 600  # seconds for one archive upload or download
HELPER_TIMEOUT = 120  # seconds for our own helper commands (tar, rm, kill)
RETRY_WITHIN_SECONDS = 20.0  # one call's retries; well under the contract's 30 s "a dead API gives up"
RETRY_BUDGET_SECONDS = 60.0  # all retrying of one backend object (one CLI command)
STDIN_CHUNK = 12 * 1024  # bytes of stdin per input line (16 KiB of base64): small enough to stay live
EXIT_CODE_WAIT = 10.0  # seconds to wait for the exit code once the output stream has ended
STREAM_DRAIN = 5.0  # seconds to wait for the rest of the output after a kill
_GIB = 1024**3
_MISSING_EXIT = 44  # our download helper's "no such path"
# Extract an uploaded tar into $1 and always remove it.
_EXTRACT = 'mkdir -p -- "$1" && tar -xf "$2" -C "$1"; status=$?; rm -f -- "$2"; exit $status'
# Archive $2 (a name inside directory $1) into $3; exit 44 when it does not exist. Regular files over $4
# bytes (when given) are left out, and listed as `SIZE PATH` lines in $2/.sandboxctl/left-out for the report.
_ARCHIVE = (
    'cd -- "$1" 2>/dev/null && [ -e "$2" ] || exit 44; x="$3.exclude"; : > "$x" || exit 1; '
    'if [ -n "$4" ] && [ -d "$2" ]; then find "$2" -type f -size +"$4"c > "$x" 2>/dev/null; '
    '{ mkdir -p "$2/.sandboxctl" && while IFS= read -r f; do printf "%s %s\\n" "$(wc -c < "$f")" "${f#"$2"/}"; '
    'done < "$x" > "$2/.sandboxctl/left-out"; } 2>/dev/null; fi; '
    'tar -cf "$3" -X "$x" -- "$2"; status=$?; rm -f -- "$x"; exit $status'
)

# How a session command runs: `sh -c _WRAPPER sh WORKDIR FIFO CMD...`. Daytona's input API appends a
# newline to every message and has no EOF, so stdin travels as numbered base64 lines `SEQ DATA` and ends
# with `SEQ .`; a feeder decodes them into a FIFO the command reads, skipping any line it has already seen
# (a retried send), and closes it at `.` so the command sees EOF. The command never waits for the feeder:
# one that does not read stdin ends at once, and the feeder is killed. With no FIFO stdin is /dev/null.
_WRAPPER = """d=$1 f=$2; shift 2
if [ -n "$d" ]; then cd -- "$d" || exit 126; fi
if [ -z "$f" ]; then exec "$@" </dev/null; fi
mkfifo -m 600 "$f" || exit 126
exec 3<&0
( n=0
  while IFS=' ' read -r seq data; do
    [ "$seq" = "$n" ] || continue
    n=$((n + 1))
    [ "$data" = . ] && break
    printf '%s' "$data" | base64 -d || break
  done ) <&3 >"$f" 2>/dev/null &
feeder=$!
exec 3<&-
"$@" <"$f"; status=$?
rm -f -- "$f"
kill "$feeder" 2>/dev/null
exit $status"""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_STATES: dict[str, BackendState] = {
    "creating": BackendState.CREATING,
    "restoring": BackendState.CREATING,
    "starting": BackendState.CREATING,
    "pending_build": BackendState.CREATING,
    "building_snapshot": BackendState.CREATING,
    "pulling_snapshot": BackendState.CREATING,
    "resuming": BackendState.CREATING,
    "started": BackendState.RUNNING,
    "resizing": BackendState.RUNNING,
    "snapshotting": BackendState.RUNNING,
    "forking": BackendState.RUNNING,
    "stopped": BackendState.STOPPED,
    "stopping": BackendState.STOPPED,
    "archived": BackendState.STOPPED,
    "archiving": BackendState.STOPPED,
    "pausing": BackendState.STOPPED,
    "paused": BackendState.STOPPED,
    "error": BackendState.FAILED,
    "build_failed": BackendState.FAILED,
    "destroying": BackendState.DELETING,
}
_GONE = "destroyed"
_DEAD = (_GONE, "destroying", "error", "build_failed")
_STARTABLE = ("stopped", "archived")


def _state_name(sandbox: Any) -> str:
    state = getattr(sandbox, "state", None)
    return str(getattr(state, "value", state) or "unknown")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text)
    return None


def _minutes(seconds: int) -> int:
    """Daytona's intervals are whole minutes; round up so nothing expires early, and never to 0 (= disabled)."""
    return max(1, math.ceil(seconds / 60))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _display_url(url: str) -> str:
    """The URL without any user:password part, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _bound_http(api_client: Any, *, read_timeout: float, cap_reads: bool) -> None:
    """Give one generated API client bounded timeouts and retries (see the module docstring).

    Control plane (`cap_reads`): every request gets at most `read_timeout` to answer, and
    only failed connects are retried (twice, 0.1 s apart). Toolbox: requests without a
    timeout get the same default; a command's own longer timeout is kept.
    """
    from daytona.internal.urllib3_retry import RemoteDisconnectedRetry

    rest_type = type(api_client.rest_client)

    class BoundedRestClient(rest_type):  # type: ignore[misc, valid-type]
        def request(
            self,
            method: str,
            url: str,
            headers: Any = None,
            body: Any = None,
            post_params: Any = None,
            _request_timeout: Any = None,
        ) -> Any:
            read = _request_timeout[1] if isinstance(_request_timeout, tuple) else _request_timeout
            if not read:
                read = read_timeout
            elif cap_reads:
                read = min(float(read), read_timeout)
            return super().request(method, url, headers, body, post_params, _request_timeout=(CONNECT_TIMEOUT, read))

    configuration = api_client.configuration
    # Only failed connects (nothing was sent) are retried down here; everything else reaches `_call`,
    # which knows which calls are safe to repeat (a POST resent blindly could create twice).
    configuration.retries = RemoteDisconnectedRetry(
        total=2,
        connect=2,
        read=0,
        status=0,
        other=0,
        backoff_factor=0.1,
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    api_client.rest_client = BoundedRestClient(configuration)


class DaytonaBackend:
    """The `Backend` Protocol on Daytona. Build it with `from_settings`; the SDK client is made on first use."""

    name: ClassVar[str] = "daytona"

    def __init__(
        self,
        api_key: str,
        api_url: str = DEFAULT_API_URL,
        target: str | None = None,
        *,
        create_timeout: float = CREATE_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not api_key:
            raise UsageError("no Daytona API key: set DAYTONA_API_KEY (or `sandboxctl config set daytona.api_key KEY`)")
        if urlsplit(api_url).scheme not in ("http", "https"):
            raise UsageError(
                f"invalid Daytona API URL {_display_url(api_url)!r}: set DAYTONA_API_URL to an http(s) URL"
            )
        self.__api_key = api_key
        self.api_url = api_url
        self.target = target
        self.create_timeout = create_timeout
        self.request_timeout = request_timeout
        self._client: Daytona | None = None
        self._client_lock = threading.Lock()  # cleanup deletes from several threads
        self._homes: dict[str, str] = {}
        self._api_verified = False  # a control-plane call succeeded: this URL is a Daytona API
        self.retry_budget = RETRY_BUDGET_SECONDS
        self._retried_seconds = 0.0  # spent retrying so far, against `retry_budget`

    @classmethod
    def from_settings(cls, settings: Settings) -> DaytonaBackend:
        """Credentials from DAYTONA_API_KEY / DAYTONA_API_URL / DAYTONA_TARGET, else config.toml `[daytona]`.

        No target (unset or empty): Daytona's documented default, the organization's default region.
        """
        return cls(
            api_key=settings.get("daytona.api_key") or "",
            api_url=settings.get("daytona.api_url") or DEFAULT_API_URL,
            target=settings.get("daytona.target") or None,
        )

    def __repr__(self) -> str:  # never the key
        return f"DaytonaBackend(api_url={_display_url(self.api_url)!r}, target={self.target!r})"

    # -- the SDK client and error translation ------------------------------
    @property
    def client(self) -> Daytona:
        with self._client_lock:
            return self._client or self._connect()

    def _connect(self) -> Daytona:
        """The SDK client in polling mode, its HTTP clients bounded (see the module docstring)."""
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Polling-only mode", category=DeprecationWarning)
                from daytona import Daytona, DaytonaConfig

                client = Daytona(
                    DaytonaConfig(
                        api_key=self.__api_key,
                        api_url=self.api_url,
                        target=self.target,
                        use_deprecated_polling=True,
                        otel_enabled=False,
                    )
                )
            # The SDK fills a missing target from ./.env in the working directory; ours is already resolved
            # (environment, then config.toml), and "none" means the organization's default region.
            client._target = self.target
            _bound_http(client._api_client, read_timeout=self.request_timeout, cap_reads=True)
            _bound_http(client._toolbox_api_client, read_timeout=self.request_timeout, cap_reads=False)
        except Exception as exc:  # noqa: BLE001 - translated, never leaked
            raise self._translate(exc, "connect to Daytona") from None
        self._client = client
        return client

    def _scrub(self, text: str) -> str:
        return text.replace(self.__api_key, "***")

    def _translate(self, exc: BaseException, what: str) -> SandboxctlError:
        """SDK and transport errors -> the backend contract's, with the API key scrubbed from every message."""
        if isinstance(exc, SandboxctlError):
            return exc
        import httpx
        import urllib3.exceptions as u3
        from daytona import DaytonaError, DaytonaTimeoutError

        where = _display_url(self.api_url)
        status = getattr(exc, "status_code", None) or None  # 0: no HTTP answer at all (the SDK's TLS failure)
        if status is None:  # the WebSocket upgrade (httpx_ws) and httpx raise with the response attached
            status = next((code for code in map(_response_status, _chain(exc)) if code is not None), None)
        text = self._scrub(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
        message = " ".join(text.split())[:300]  # one line, even when a proxy answers with an HTML page
        if status in (401, 403):
            verb = "rejected the API key" if status == 401 else "refused access with this API key"
            return Unavailable(f"Daytona at {where} {verb} (HTTP {status}): check DAYTONA_API_KEY")
        if status == 404:
            return NotFound(f"{what}: not found")
        if status == 429:
            return Transient(f"{what}: Daytona is rate limiting requests (HTTP 429)", retry_after=_retry_after(exc))
        if status is not None and status >= 500:
            return Transient(f"{what}: Daytona answered HTTP {status}: {message}", retry_after=_retry_after(exc))
        if status is not None:
            return BackendError(f"{what}: {message}")
        advice = "check DAYTONA_API_URL and the network"
        for cause in _chain(exc):
            if isinstance(cause, u3.SSLError | ssl.SSLError):
                return Unavailable(f"TLS to the Daytona API at {where} failed: check DAYTONA_API_URL and certificates")
            if isinstance(cause, u3.NewConnectionError | u3.ConnectTimeoutError | httpx.ConnectError):
                reason = "connection refused" if "refused" in str(cause).lower() else "cannot connect"
                if isinstance(cause, u3.NameResolutionError):
                    reason = "host name not found"
                elif isinstance(cause, u3.ConnectTimeoutError) and not isinstance(cause, u3.NewConnectionError):
                    reason = f"no connection within {CONNECT_TIMEOUT:g} s"
                return Unavailable(f"Daytona API unreachable at {where} ({reason}): {advice}")
            if isinstance(cause, u3.ReadTimeoutError | httpx.TimeoutException):
                return Unresponsive(f"Daytona API at {where} did not answer in time: {advice}")
            if isinstance(cause, u3.ProtocolError | httpx.RemoteProtocolError | httpx.ReadError | ConnectionError):
                return Transient(f"{what}: the connection to Daytona dropped")
        if isinstance(exc, DaytonaTimeoutError):
            return BackendError(f"{what}: timed out ({message})")
        if isinstance(exc, DaytonaError):
            return BackendError(f"{what}: {message}")
        return BackendError(f"{what}: unexpected {type(exc).__name__}: {message}")

    def _once(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One attempt, its error translated."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated, never leaked
            raise self._translate(exc, what) from None

    def _call(
        self, what: str, fn: Callable[..., T], *args: Any, before_retry: Callable[[], None] | None = None, **kwargs: Any
    ) -> T:
        """`fn` with transient failures retried (see the module docstring); `before_retry` runs before each
        repeat, so a call that may have taken effect can be looked up instead of sent twice."""
        window = min(RETRY_WITHIN_SECONDS, max(self.retry_budget - self._retried_seconds, 0.0))
        retrying = transient_retrying(
            within_seconds=window, wait_max=4.0, slow_attempt_seconds=self.request_timeout, reraise=True
        )
        started, attempts = time.monotonic(), 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    if attempts > 1 and before_retry is not None:
                        before_retry()
                    return self._once(what, fn, *args, **kwargs)
        finally:
            if attempts > 1:
                self._retried_seconds += time.monotonic() - started
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    def _get(self, backend_id: str) -> Sandbox:
        """The live sandbox; a destroyed one is `NotFound`."""
        what = f"Daytona sandbox {backend_id}"
        try:
            sandbox = self._call(what, self.client.get, backend_id, request_timeout=self.request_timeout)
        except NotFound:
            self._verify_api()
            raise
        self._api_verified = True
        if _state_name(sandbox) == _GONE:
            raise NotFound(f"{what}: not found")
        return sandbox

    def _wrong_url(self) -> Unavailable:
        where = _display_url(self.api_url)
        return Unavailable(f"no Daytona API at {where} (HTTP 404): check DAYTONA_API_URL, which normally ends in /api")

    def _verify_api(self) -> None:
        """Tell "no such sandbox" from "no Daytona API here" before trusting a 404.

        A wrong DAYTONA_API_URL (one without `/api`, say) answers 404 to everything, and a
        delete must never take that for "already gone". One list page settles it, once per process.
        """
        if self._api_verified:
            return
        from daytona import ListSandboxesQuery

        query = ListSandboxesQuery(limit=1)
        try:
            self._call(
                "list Daytona sandboxes", lambda: next(iter(self.client.list(query, self.request_timeout)), None)
            )
        except NotFound:
            raise self._wrong_url() from None
        self._api_verified = True

    @staticmethod
    def _to_sandbox(sandbox: Any) -> BackendSandbox:
        state = _state_name(sandbox)
        return BackendSandbox(
            backend_id=sandbox.id,
            state=_STATES.get(state, BackendState.UNKNOWN),
            labels=dict(sandbox.labels or {}),
            created_at=_parse_time(sandbox.created_at),
            name=sandbox.name,
        )

    # -- lifecycle ---------------------------------------------------------
    def _create_params(self, spec: CreateSpec) -> CreateSandboxFromImageParams | CreateSandboxFromSnapshotParams:
        """How a CreateSpec maps onto Daytona's create parameters.

        - `image` `snapshot:NAME` starts from a Daytona snapshot (its resources are fixed, so
          cpus/memory are refused); any other image is built by Daytona (`Resources` in whole
          CPUs and GiB, rounded up); no image uses Daytona's default snapshot.
        - `ttl_seconds` -> `ttl_minutes`: Daytona destroys the sandbox that long after creation
          whatever its state, so it expires even if no cleanup ever runs. (`auto_delete_interval`
          counts from the moment it stops, which a running sandbox never does.)
        - `idle_timeout_seconds` -> `auto_stop_interval` plus `auto_delete_interval=0`: idle
          sandboxes stop and are then deleted, as `cleanup` would do. Without an idle timeout
          auto-stop is disabled (Daytona's default would stop it after 15 minutes idle).
        """
        from daytona import CreateSandboxFromImageParams, CreateSandboxFromSnapshotParams, Resources

        lifecycle: dict[str, Any] = {
            "name": f"sandboxctl-{spec.sandbox_id}",
            "labels": dict(spec.labels),
            "env_vars": dict(spec.env),
            "auto_stop_interval": _minutes(spec.idle_timeout_seconds) if spec.idle_timeout_seconds else 0,
        }
        if spec.idle_timeout_seconds:
            lifecycle["auto_delete_interval"] = 0
        if spec.ttl_seconds is not None:
            lifecycle["ttl_minutes"] = _minutes(spec.ttl_seconds)
        image = spec.image or ""
        if image.startswith(SNAPSHOT_PREFIX) or not image:
            if spec.cpus is not None or spec.memory_bytes is not None:
                raise UsageError("--cpus and --memory cannot be used with a Daytona snapshot: the snapshot fixes them")
            snapshot = image.removeprefix(SNAPSHOT_PREFIX) or None
            return CreateSandboxFromSnapshotParams(snapshot=snapshot, **lifecycle)
        resources = None
        if spec.cpus is not None or spec.memory_bytes is not None:
            resources = Resources(
                cpu=math.ceil(spec.cpus) if spec.cpus is not None else None,
                memory=math.ceil(spec.memory_bytes / _GIB) if spec.memory_bytes is not None else None,
            )
        return CreateSandboxFromImageParams(image=image, resources=resources, **lifecycle)

    def create(self, spec: CreateSpec) -> BackendSandbox:
        """Create and wait until started; on any failure remove what the create left behind.

        A failed attempt may still have made the sandbox (its answer lost, or the wait for
        `started` failed): before trying again the sandbox is looked up by its `sandboxctl.id`
        label and, when found, waited for rather than created a second time.
        """
        params = self._create_params(spec)
        client = self.client
        made: list[Any] = []

        def look_up() -> None:
            made[:] = self._labelled(spec.sandbox_id)[:1]

        def attempt() -> Any:
            if not made:
                return client.create(params, timeout=self.create_timeout)
            found = made[0]
            if _state_name(found) != "started":
                found.wait_for_sandbox_start(timeout=self.create_timeout)
            return found

        try:
            sandbox = self._call("create Daytona sandbox", attempt, before_retry=look_up)
        except BaseException as exc:
            error: BaseException = self._translate(exc, "create Daytona sandbox") if isinstance(exc, Exception) else exc
            if isinstance(error, NotFound):  # POST /sandbox cannot be "not found": the URL is wrong
                error = self._wrong_url()
            if not isinstance(error, Unavailable):  # an API we cannot reach cannot delete either
                self._remove_labelled(spec.sandbox_id)
            if error is exc:
                raise
            raise error from None
        self._api_verified = True
        return self._to_sandbox(sandbox)

    def _labelled(self, sandbox_id: str) -> list[Any]:
        """The live SDK sandboxes carrying this `sandboxctl.id` (one attempt: called inside a retry)."""
        from daytona import ListSandboxesQuery

        query = ListSandboxesQuery(labels={LABEL_ID: sandbox_id}, limit=10)
        found = self._once("look the sandbox up", lambda: list(self.client.list(query, self.request_timeout)))
        return [s for s in found if (s.labels or {}).get(LABEL_ID) == sandbox_id and _state_name(s) not in _DEAD]

    def _remove_labelled(self, sandbox_id: str) -> None:
        """Best effort: delete whatever carries this sandbox's label (the labels let `cleanup --orphans` retry)."""
        with contextlib.suppress(Exception):
            for found in self.list_owned({LABEL_ID: sandbox_id}):
                with contextlib.suppress(Exception):
                    self.delete(found.backend_id)

    def inspect(self, backend_id: str) -> BackendSandbox:
        return self._to_sandbox(self._get(backend_id))

    def list_owned(self, selector: Mapping[str, str] | None = None) -> list[BackendSandbox]:
        """List by the selector's labels (Daytona cannot filter on a label's mere presence), then keep
        only those carrying `sandboxctl.id`, checking the selector again on our side."""
        from daytona import ListSandboxesQuery

        wanted = dict(selector or {})
        query = ListSandboxesQuery(labels=wanted or None, limit=100)
        try:
            found = self._call(
                "list Daytona sandboxes", lambda: list(self.client.list(query, request_timeout=self.request_timeout))
            )
        except NotFound:
            raise self._wrong_url() from None
        self._api_verified = True
        return [
            self._to_sandbox(sandbox)
            for sandbox in found
            if LABEL_ID in (sandbox.labels or {})
            and matches(dict(sandbox.labels), wanted)
            and _state_name(sandbox) != _GONE
        ]

    def delete(self, backend_id: str) -> DeleteResult:
        """One GET (Daytona deletes a Sandbox object, not an id), then a fire-and-forget DELETE.

        Already `destroying` counts as done. Daytona does not report freed space.
        """
        sandbox = self._get(backend_id)
        if _state_name(sandbox) != "destroying":
            self._call(f"delete Daytona sandbox {backend_id}", sandbox.delete, timeout=self.request_timeout)
        self._homes.pop(backend_id, None)
        return DeleteResult()

    def workspace_path(self, backend_id: str) -> str:
        """`<home of the sandbox user>/workspace`: always writable, unlike an image's WORKDIR."""
        if backend_id not in self._homes:
            sandbox = self._get(backend_id)
            self._homes[backend_id] = self._call("read the sandbox home directory", sandbox.get_user_home_dir)
        return posixpath.join(self._homes[backend_id], "workspace")

    # -- commands and files --------------------------------------------------
    def _runnable(self, backend_id: str) -> Sandbox:
        """The sandbox, started first if it was stopped or archived (auto-stop, the dashboard)."""
        sandbox = self._get(backend_id)
        state = _state_name(sandbox)
        if state in _STARTABLE:
            self._call(f"start Daytona sandbox {backend_id}", sandbox.start, timeout=self.create_timeout)
        elif _STATES.get(state) is BackendState.FAILED:
            raise BackendError(f"Daytona sandbox {backend_id} is in state {state}: it cannot run commands")
        return sandbox

    def _helper(self, sandbox: Sandbox, argv: list[str], what: str) -> tuple[int, str]:
        response = self._call(what, sandbox.process.exec, shlex.join(argv), timeout=HELPER_TIMEOUT)
        return int(response.exit_code if response.exit_code is not None else -1), response.result or ""

    def exec(self, backend_id: str, request: ExecRequest) -> ExecResult:
        """Run in a fresh Daytona session: output streamed live and apart, stdin forwarded, exit code passed on.

        On `timeout_seconds` or an interrupt (Ctrl-C, or SIGTERM turned into one by the CLI) the
        command and its children are killed by the token in their environment; the session is
        deleted in every case.
        """
        sandbox = self._runnable(backend_id)
        token = secrets.token_hex(8)
        session_id = f"sandboxctl-exec-{token}"
        process = sandbox.process
        fifo = f"/tmp/sandboxctl-stdin-{token}" if request.stdin is not None else ""
        command = self._session_command(request, token, fifo)
        self._call("open a Daytona session", self._open_session, process, session_id)
        try:
            return _SessionExec(self, sandbox, session_id, token, request).run(command)
        finally:
            with contextlib.suppress(Exception):
                self._call("close the Daytona session", process.delete_session, session_id, request_timeout=10)

    @staticmethod
    def _session_command(request: ExecRequest, token: str, fifo: str) -> str:
        """`NAME=value ... sh -c _WRAPPER ...`: assignments, so the values never appear in a process's argv."""
        env = {**request.env, EXEC_TOKEN_VAR: token}
        bad = [name for name in env if not _ENV_NAME.fullmatch(name)]
        if bad:
            raise UsageError(f"invalid environment variable name {bad[0]!r}")
        assignments = [f"{name}={shlex.quote(value)}" for name, value in env.items()]
        wrapper = shlex.join(["sh", "-c", _WRAPPER, "sh", request.workdir or "", fifo, *request.command])
        return " ".join([*assignments, wrapper])

    def _open_session(self, process: Any, session_id: str) -> None:
        """Create the session; a 409 means an earlier attempt made it and only its answer was lost."""
        from daytona import DaytonaConflictError

        with contextlib.suppress(DaytonaConflictError):
            process.create_session(session_id, request_timeout=self.request_timeout)

    def _kill(self, sandbox: Sandbox, token: str) -> None:
        with contextlib.suppress(Exception):
            self._helper(sandbox, ["sh", "-c", kill_by_token_script(token)], "kill")

    def upload_archive(self, backend_id: str, dest_dir: str, archive: BinaryIO) -> None:
        """Upload the tar as one file (from disk: the SDK streams a path), then `tar -xf` it in the sandbox:
        modes and symlinks survive, which per-file uploads would lose. Needs `tar` in the image."""
        sandbox = self._runnable(backend_id)
        remote = f"/tmp/sandboxctl-upload-{secrets.token_hex(8)}.tar"
        with contextlib.ExitStack() as stack:
            local = getattr(archive, "name", None)
            if not isinstance(local, str) or not os.path.isfile(local):
                spool = stack.enter_context(tempfile.NamedTemporaryFile(prefix="sandboxctl-upload-", suffix=".tar"))
                shutil.copyfileobj(archive, spool)
                spool.flush()
                local = spool.name
            self._call("upload archive", sandbox.fs.upload_file, local, remote, TRANSFER_TIMEOUT)
        code, output = self._helper(sandbox, ["sh", "-c", _EXTRACT, "sh", dest_dir, remote], "extract archive")
        if code != 0:
            raise BackendError(f"extracting the archive into {dest_dir} failed (exit {code}): {output.strip()[:300]}")

    @contextlib.contextmanager
    def download_archive(self, backend_id: str, path: str, *, max_file: int | None = None) -> Iterator[BinaryIO]:
        """`tar -cf` in the sandbox (members relative to the parent, like `docker cp`; files over `max_file`
        left out there), downloaded to a host temp file and yielded open: never whole in memory."""
        sandbox = self._runnable(backend_id)
        parent, base = posixpath.split(path.rstrip("/"))
        if not base:
            raise BackendError(f"cannot archive {path!r}: name a file or directory below /")
        remote = f"/tmp/sandboxctl-download-{secrets.token_hex(8)}.tar"
        limit = str(max_file) if max_file is not None else ""
        with tempfile.TemporaryDirectory(prefix="sandboxctl-download-") as local_dir:
            local = os.path.join(local_dir, "archive.tar")
            try:
                code, output = self._helper(
                    sandbox, ["sh", "-c", _ARCHIVE, "sh", parent or "/", base, remote, limit], "archive"
                )
                if code == _MISSING_EXIT:
                    raise NotFound(f"{path}: no such file in sandbox {backend_id}")
                if code != 0:
                    raise BackendError(f"archiving {path} failed (exit {code}): {output.strip()[:300]}")
                self._call("download archive", sandbox.fs.download_file, remote, local, TRANSFER_TIMEOUT)
            finally:
                with contextlib.suppress(SandboxctlError):
                    self._helper(sandbox, ["rm", "-f", "--", remote], "remove archive")
            with open(local, "rb") as stream:
                yield stream

    # -- lifetime (extend) ------------------------------------------------------
    def set_lifetime(self, backend_id: str, *, ttl_seconds: int | None, idle_timeout_seconds: int | None) -> None:
        """Mirror a changed lifetime, as `_create_params` maps it at create: the TTL counted from now
        (None: disabled), the idle timeout as auto-stop plus delete-on-stop (None: neither)."""
        sandbox = self._get(backend_id)
        what = f"change the lifetime of Daytona sandbox {backend_id}"
        timeout = self.request_timeout
        self._call(what, sandbox.set_ttl, _minutes(ttl_seconds) if ttl_seconds is not None else 0, timeout)
        self._call(
            what, sandbox.set_autostop_interval, _minutes(idle_timeout_seconds) if idle_timeout_seconds else 0, timeout
        )
        self._call(what, sandbox.set_auto_delete_interval, 0 if idle_timeout_seconds else -1, timeout)


def _response_status(exc: BaseException) -> int | None:
    code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from an HTTP `Retry-After: N` header, when the server sent one."""
    for cause in _chain(exc):
        headers = getattr(cause, "headers", None) or getattr(getattr(cause, "response", None), "headers", None) or {}
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            value = next((v for k, v in dict(headers).items() if str(k).lower() == "retry-after"), None)
            if value is not None:
                return float(value)
    return None


class _SessionExec:
    """One command in one session: start it, stream its logs, feed its stdin, wait for the end or the deadline."""

    def __init__(self, backend: DaytonaBackend, sandbox: Sandbox, session_id: str, token: str, request: ExecRequest):
        self.backend = backend
        self.sandbox = sandbox
        self.process = sandbox.process
        self.session_id = session_id
        self.token = token
        self.request = request
        self.command_id = ""
        self.stream_error: BaseException | None = None
        self.delivered = {"stdout": 0, "stderr": 0}  # characters passed on, so a reconnect never repeats any

    def run(self, command: str) -> ExecResult:
        request = self.request
        deadline = time.monotonic() + request.timeout_seconds if request.timeout_seconds else None
        self.command_id = self._start(command)
        if request.stdin is not None:
            threading.Thread(target=self._feed, args=(request.stdin,), daemon=True, name="daytona-stdin").start()
        stream = threading.Thread(target=self._stream, daemon=True, name="daytona-logs")
        stream.start()
        try:
            while stream.is_alive():
                if deadline is not None and time.monotonic() >= deadline:
                    self.backend._kill(self.sandbox, self.token)
                    stream.join(STREAM_DRAIN)
                    return TIMED_OUT
                stream.join(0.1)
        except BaseException:  # Ctrl-C / SIGTERM: the command must not outlive us
            self.backend._kill(self.sandbox, self.token)
            raise
        if self.stream_error is not None:
            raise self.backend._translate(self.stream_error, "stream the command's output") from None
        return ExecResult(exit_code=self._exit_code())

    def _start(self, command: str) -> str:
        from daytona import SessionExecuteRequest

        request = SessionExecuteRequest(command=command, run_async=True, suppress_input_echo=True)
        started: list[str] = []

        def look_up() -> None:  # a lost answer: the command may be running already
            session = self.backend._once("read the session", self.process.get_session, self.session_id)
            started[:] = [c.id for c in session.commands or []][:1]

        def attempt() -> str:
            if started:
                return started[0]
            return str(self.process.execute_session_command(self.session_id, request).cmd_id)

        return self.backend._call("start the command", attempt, before_retry=look_up)

    def _sink(self, stream: str) -> Callable[[str], None]:
        """A log callback; `seen` restarts at 0 on every (re)connection, and only the new part is passed on."""
        write = self.request.on_stdout if stream == "stdout" else self.request.on_stderr
        seen = {"chars": 0}

        def on_text(text: str) -> None:
            start, seen["chars"] = seen["chars"], seen["chars"] + len(text)
            fresh = text[max(self.delivered[stream] - start, 0) :]
            if fresh:
                self.delivered[stream] += len(fresh)
                write(fresh.encode())

        return on_text

    def _stream(self) -> None:
        """Follow the logs over the WebSocket until the command ends; a dropped stream is reconnected."""

        def follow() -> None:
            coroutine = self.process.get_session_command_logs_async(
                self.session_id, self.command_id, self._sink("stdout"), self._sink("stderr")
            )
            asyncio.run(coroutine)

        try:
            self.backend._call("stream the command's output", follow)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.stream_error = exc

    def _exit_code(self) -> int:
        """The exit code, which the daemon may record a moment after the stream closed."""
        give_up = time.monotonic() + EXIT_CODE_WAIT
        while True:
            found = self.backend._call(
                "read the exit code", self.process.get_session_command, self.session_id, self.command_id
            )
            if found.exit_code is not None:
                return int(found.exit_code)
            if time.monotonic() >= give_up:
                self.request.on_stderr(b"sandboxctl: Daytona reported no exit status for the command\n")
                return 255
            time.sleep(0.05)

    def _feed(self, source: BinaryIO) -> None:
        """Forward stdin as numbered base64 lines, then the end marker (see `_WRAPPER`)."""
        from daytona import DaytonaError

        try:
            fileno: int | None = source.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            fileno = None
        sequence = 0
        try:
            while True:
                chunk = os.read(fileno, STDIN_CHUNK) if fileno is not None else source.read(STDIN_CHUNK)
                line = base64.b64encode(chunk).decode() if chunk else "."
                self.backend._call(
                    "send stdin",
                    self.process.send_session_command_input,
                    self.session_id,
                    self.command_id,
                    f"{sequence} {line}\n",
                )
                sequence += 1
                if not chunk:
                    return
        except BackendError as exc:
            if "410" in str(exc) or "already completed" in str(exc).lower():
                return  # the command ended without reading all of it
            self.request.on_stderr(f"sandboxctl: forwarding stdin failed: {exc}\n".encode())
        except (OSError, ValueError, DaytonaError):
            return
