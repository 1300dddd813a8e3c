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

Retries: the adapter does not retry 429/5xx itself. It raises `Transient`, and
the one retry policy lives in `services.deletion` (tenacity, exponential backoff,
60 s budget), so nested retries can never multiply the wait.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import posixpath
import secrets
import select
import shlex
import shutil
import ssl
import tempfile
import threading
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
    kill_by_token_script,
)
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
# `process.exec` with no timeout lets the daemon apply its own default (360 s or 10 s depending on
# its version), so "no limit" is sent as a week.
NO_LIMIT_SECONDS = 7 * 24 * 3600
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

# Feed the uploaded file $1 to the command as stdin (removed before it runs), after `cd $2` when given.
_WITH_STDIN = (
    'exec <"$1" && rm -f -- "$1" || exit 126; shift; if [ -n "$1" ]; then cd -- "$1" || exit 126; fi; shift; exec "$@"'
)

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


def _read_stdin(stdin: BinaryIO | None) -> bytes:
    """What to feed the command. `process.exec` has no stdin channel, so stdin is sent as a file.

    A terminal is never read (the user would have to type EOF first); a pipe or file is
    read to EOF only when it is ready at once (data or EOF), so an inherited pipe that
    nobody writes to cannot hang the exec.
    """
    if stdin is None:
        return b""
    try:
        fileno = stdin.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return stdin.read() or b""
    if os.isatty(fileno) or not select.select([fileno], [], [], 0.05)[0]:
        return b""
    chunks = []
    while chunk := os.read(fileno, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


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
    if cap_reads:
        # A pooled connection the server already closed (RemoteDisconnected: nothing was processed)
        # counts as "other" in this subclass and is retried once; read timeouts never are.
        configuration.retries = RemoteDisconnectedRetry(
            total=3,
            connect=2,
            read=0,
            status=0,
            other=1,
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

    @classmethod
    def from_settings(cls, settings: Settings) -> DaytonaBackend:
        """Credentials from DAYTONA_API_KEY / DAYTONA_API_URL / DAYTONA_TARGET, else config.toml `[daytona]`."""
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
        text = self._scrub(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
        message = " ".join(text.split())[:300]  # one line, even when a proxy answers with an HTML page
        if status in (401, 403):
            verb = "rejected the API key" if status == 401 else "refused access with this API key"
            return Unavailable(f"Daytona at {where} {verb} (HTTP {status}): check DAYTONA_API_KEY")
        if status == 404:
            return NotFound(f"{what}: not found")
        if status == 429:
            return Transient(f"{what}: Daytona is rate limiting requests (HTTP 429)")
        if status is not None and status >= 500:
            return Transient(f"{what}: Daytona answered HTTP {status}: {message}")
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
                return Unavailable(f"Daytona API at {where} did not answer in time: {advice}")
            if isinstance(cause, u3.ProtocolError | httpx.RemoteProtocolError | ConnectionError):
                return Transient(f"{what}: the connection to Daytona dropped")
        if isinstance(exc, DaytonaTimeoutError):
            return BackendError(f"{what}: timed out ({message})")
        if isinstance(exc, DaytonaError):
            return BackendError(f"{what}: {message}")
        return BackendError(f"{what}: unexpected {type(exc).__name__}: {message}")

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated, never leaked
            raise self._translate(exc, what) from None

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
            self._call("list Daytona sandboxes", lambda: next(self.client.list(query, self.request_timeout), None))
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
        """Create and wait until started; on any failure remove what the create left behind."""
        params = self._create_params(spec)
        client = self.client
        try:
            sandbox = client.create(params, timeout=self.create_timeout)
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
        """Run through `process.exec`: one request that returns when the command ends.

        Daytona returns stdout and stderr combined, as one string, at the end: it all goes
        to `on_stdout`, nothing is streamed live. stdin (a pipe or file, not a terminal) is
        uploaded as a file and redirected. On timeout or interrupt the command and its
        children are killed by a token in their environment.
        """
        sandbox = self._runnable(backend_id)
        token = secrets.token_hex(8)
        env = {**request.env, EXEC_TOKEN_VAR: token}
        command, cwd = shlex.join(request.command), request.workdir
        stdin_data = _read_stdin(request.stdin)
        if stdin_data:
            stdin_path = f"/tmp/sandboxctl-stdin-{token}"
            self._call("send stdin", sandbox.fs.upload_file, stdin_data, stdin_path, TRANSFER_TIMEOUT)
            command = shlex.join(["sh", "-c", _WITH_STDIN, "sh", stdin_path, request.workdir or "", *request.command])
            cwd = None
        limit = math.ceil(request.timeout_seconds) if request.timeout_seconds else NO_LIMIT_SECONDS
        try:
            response = sandbox.process.exec(command, cwd=cwd, env=env, timeout=limit)
        except KeyboardInterrupt:
            self._kill(sandbox, token)
            raise
        except Exception as exc:  # noqa: BLE001 - translated, never leaked
            if request.timeout_seconds and self._timed_out(exc):
                self._kill(sandbox, token)
                return TIMED_OUT
            raise self._translate(exc, "exec") from None
        if response.result:
            request.on_stdout(response.result.encode())
        code = response.exit_code
        if code is None or code < 0:
            request.on_stderr(b"sandboxctl: Daytona reported no exit status (not started, or killed by a signal)\n")
            return ExecResult(exit_code=255)
        return ExecResult(exit_code=int(code))

    @staticmethod
    def _timed_out(exc: BaseException) -> bool:
        """The daemon's 408 (PROCESS_EXECUTION_TIMEOUT), or our HTTP read timeout (the limit + 5 s) firing first."""
        import urllib3.exceptions as u3

        if getattr(exc, "status_code", None) == 408 or getattr(exc, "code", None) == "PROCESS_EXECUTION_TIMEOUT":
            return True
        return any(isinstance(cause, u3.ReadTimeoutError) for cause in _chain(exc))

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
