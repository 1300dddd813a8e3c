"""`agent-run`: one agent task in a fresh sandbox, from a repository to a patch, always finalized and recorded.

The run is a small state machine (`services/agent_machine.py`): pending -> preparing
(host copy of the repo) -> creating -> uploading -> setup -> running (the agent)
-> collecting (patch) -> pushing -> finalizing (delete or keep) -> an end state
decided by `decide_outcome`. Each move is checked against the table and persisted
in the run's row, which is committed before anything else; the sandbox carries the
label `agent-run.id=<run id>`, so no sandbox exists without a record saying why.
Progress is reported only as events (services never print); the CLI renders them.

Interruption: `AgentRunner.request_stop` (called from the CLI's SIGINT/SIGTERM
handler) raises `RunInterrupted` while a step is blocked (clone, create, upload,
setup, agent), which kills the command in the sandbox; collection and
finalization then run as after a timeout, and are never interrupted themselves.
A SIGTERM preceded by a recorded `cancel_requested_at` (`agent cancel`) ends the
run as `cancelled` instead of `interrupted`.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sandboxctl.backends.base import ExecRequest, ExecResult
from sandboxctl.config import atomic_write
from sandboxctl.durations import isoformat
from sandboxctl.errors import OperationFailed, SandboxctlError, UsageError
from sandboxctl.hostid import this_host, this_user
from sandboxctl.logs import log_event
from sandboxctl.registry.models import AgentRun, SandboxRecord
from sandboxctl.registry.states import Policy
from sandboxctl.registry.store import new_sandbox_id
from sandboxctl.services import leases
from sandboxctl.services.agent_machine import (
    CANCEL,
    CommandExit,
    Outcome,
    RunFacts,
    RunState,
    check_move,
    decide_outcome,
)
from sandboxctl.services.agent_options import AgentRunOptions, KeepPolicy
from sandboxctl.services.context import Context
from sandboxctl.services.deletion import SandboxDeletion, delete_sandbox
from sandboxctl.services.events import EventListener, EventLog, Heartbeat, Redactor, StreamRedactor, timestamp
from sandboxctl.services.lifecycle import CreateOptions, create_sandbox
from sandboxctl.services.workspace import (
    CONTROL_DIR,
    CollectLimits,
    RepoSource,
    Scratch,
    check_branch_name,
    locate_repo,
    quote_path,
    resolve_commit,
)

LABEL_RUN_ID = "agent-run.id"
TASK_FILE = f"{CONTROL_DIR}/task.md"
INBOX_FILE = f"{CONTROL_DIR}/inbox.jsonl"


class RunInterrupted(BaseException):
    """Raised in the main thread to unblock the running step. A BaseException, like KeyboardInterrupt,
    so that no `except Exception` on the way (SDKs, retries) swallows it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CreatedSandbox:
    """The run's sandbox once the backend made it: its id there is known from here on."""

    record: SandboxRecord
    backend_id: str


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _command_exit(result: ExecResult) -> CommandExit:
    return CommandExit(None if result.timed_out else result.exit_code, timed_out=result.timed_out)


class AgentRunner:
    """One run. `run()` returns the summary (the run's JSON record); the CLI may call `request_stop`."""

    record: AgentRun  # the run's row as last saved; set by `run()` before any step
    events: EventLog  # set by `run()` before any step

    def __init__(self, ctx: Context, options: AgentRunOptions, listener: EventListener | None = None) -> None:
        self.ctx = ctx
        self.options = options
        self.listener = listener
        self.run_id = new_sandbox_id()
        self.redact = Redactor(options.env.values())
        self.state = RunState.PENDING
        self.stop_reason: str | None = None
        self._interruptible = False
        self._clock_start = time.monotonic()
        self.facts = RunFacts()  # what the outcome depends on, replaced (never mutated) as steps finish
        self._created: CreatedSandbox | None = None
        self._workspace: str | None = None  # set once the workspace is uploaded
        self._failure: Exception | None = None  # sandboxctl's own failure, re-raised after finalizing
        self.skipped_files: list[dict[str, Any]] = []  # returned files left out of the patch, and why
        self.limits = CollectLimits()  # the collection's bounds, read from the settings by `run()`

    # Views of the step results, named as `_collect` reads and writes them.
    @property
    def sandbox(self) -> SandboxRecord | None:
        return self._created.record if self._created is not None else None

    @property
    def uploaded(self) -> bool:
        return self._workspace is not None

    @property
    def output_failed(self) -> bool:
        return self.facts.output_failed

    @output_failed.setter
    def output_failed(self, value: bool) -> None:
        self.facts = replace(self.facts, output_failed=value)

    # -- interruption --------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Ask the run to stop (from a signal handler). Raises `RunInterrupted` at once if a step is blocked;
        otherwise the next blocking step does. Later requests are ignored: finalizing is never cut short."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self._interruptible:
            self._interruptible = False
            raise RunInterrupted(reason)

    @contextmanager
    def _interruptible_section(self) -> Iterator[None]:
        # Flag first, then check: a signal landing between the two is caught by one or the other.
        self._interruptible = True
        try:
            if self.stop_reason is not None:
                raise RunInterrupted(self.stop_reason)
            yield
        finally:
            self._interruptible = False

    def _stop_kind(self, reason: str) -> str:
        """CANCEL when `agent cancel` recorded its request before signalling; else the signal's name."""
        if reason != "SIGTERM":
            return reason
        try:
            requested = self.ctx.registry.resolve_run(self.run_id).cancel_requested_at
        except Exception:  # noqa: BLE001 - an unreadable registry leaves it a plain SIGTERM
            return reason
        if requested is None:
            return reason
        self.record.cancel_requested_at = requested  # written by `agent cancel`: the summary shows it too
        return CANCEL

    # -- bookkeeping ---------------------------------------------------------
    def _elapsed(self) -> float:
        return round(time.monotonic() - self._clock_start, 3)

    def _emit(self, type_: str, **fields: Any) -> None:
        self.events.emit(type_, **fields)

    def _error_text(self, exc: BaseException) -> str:
        """An error as recorded and shown: its message (or its type when it has none), secrets masked."""
        return self.redact(str(exc) or type(exc).__name__)

    def _save(self, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self.record, key, value)
        self.ctx.registry.update_run(self.run_id, **fields)

    def _move(self, target: RunState, **fields: Any) -> None:
        """The one way the run changes state: checked against the table, persisted with `fields`."""
        self.state = check_move(self.state, target)
        self._save(state=str(target), **fields)

    @contextmanager
    def _step(self, name: str) -> Iterator[dict[str, Any]]:
        """Record the step's start and outcome in the run's row; the body may set `status` and details."""
        entry: dict[str, Any] = {"status": "running", "started_at": timestamp()}
        steps = {**self.record.steps, name: entry}
        self._save(step=name, steps=steps)
        started = time.monotonic()
        try:
            yield entry
        except (RunInterrupted, KeyboardInterrupt):
            entry["status"] = "interrupted"
            raise
        except BaseException as exc:
            entry["status"] = "error"
            entry["error"] = self._error_text(exc)
            raise
        finally:
            if entry["status"] == "running":
                entry["status"] = "ok"
            entry["finished_at"] = timestamp()
            entry["duration_seconds"] = round(time.monotonic() - started, 3)
            self._save(steps={**self.record.steps, name: entry})

    # -- the run -------------------------------------------------------------
    def _validate(self, source: RepoSource, output_dir: Path) -> None:
        """Everything that can be refused before a row or a sandbox exists."""
        options = self.options
        if not options.command:
            raise UsageError("no agent command given: use `sandboxctl agent-run [OPTIONS] -- AGENT_CMD [ARG...]`")
        if options.heartbeat_seconds <= 0:
            raise UsageError("the heartbeat interval must be greater than 0 seconds")
        if options.ref and source.kind != "git":
            raise UsageError("--ref needs a git repository or URL as --repo")
        if options.push_branch is not None:
            if source.kind != "git":
                raise UsageError("--push-branch needs a git repository or URL as --repo")
            if source.origin is None:
                raise UsageError(f"--push-branch: {source.display} has no `origin` remote to push to")
            check_branch_name(options.push_branch)
        if source.kind == "git" and not source.is_remote and source.location is not None:
            resolve_commit(Path(source.location), options.ref or "HEAD", display=source.display)
        if source.root is not None:
            for what, path in (("--output", output_dir), ("--events", options.events_path)):
                if path is not None and _inside(path, source.root):
                    raise UsageError(f"{what} {path} is inside the repository {source.root}, which is never written to")
        self.ctx.backend(options.backend)  # an unknown backend is exit 2 before anything exists

    def run(self) -> dict[str, Any]:
        options = self.options
        settings = self.ctx.settings
        source = locate_repo(options.repo)
        output_dir = (options.output_dir or settings.paths.data_dir / "runs" / self.run_id).absolute()
        self._validate(source, output_dir)
        timeout: timedelta = options.timeout or settings.get("agent.timeout")
        keep_for: timedelta = options.keep_for if options.keep_for is not None else settings.get("agent.keep_for")
        self.limits = self._collect_limits()  # read now: a bad agent.max_* is exit 2 before anything exists
        output_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = [output_dir / "events.jsonl"]
        if options.events_path is not None and options.events_path.absolute() != files[0]:
            files.append(options.events_path)
        registry = self.ctx.registry
        self.events = EventLog(self.run_id, files=files, listener=self.listener, redactor=self.redact)
        self.record = AgentRun(
            id=self.run_id,
            state=str(self.state),
            backend=options.backend,
            image=options.image,
            repo=source.display,
            ref=options.ref,
            task=self.redact(options.task),
            command=[self.redact(arg) for arg in options.command],
            setup_command=self.redact(options.setup) if options.setup is not None else None,
            env_keys=sorted(options.env),
            labels=dict(options.labels),
            keep=str(options.keep),
            timeout_seconds=int(timeout.total_seconds()),
            output_dir=str(output_dir),
            host=this_host(),
            pid=os.getpid(),
            created_by=this_user(),
            started_at=self.ctx.now(),
        )
        registry.insert_run(self.record)
        self._emit(
            "run.started",
            backend=options.backend,
            image=options.image,
            repo=source.display,
            ref=options.ref,
            command=self.record.command,
            setup=self.record.setup_command,
            keep=str(options.keep),
            timeout_seconds=self.record.timeout_seconds,
            env_keys=self.record.env_keys,
            output_dir=str(output_dir),
        )
        heartbeat = Heartbeat(options.heartbeat_seconds, self._beat)
        heartbeat.start()
        try:
            with tempfile.TemporaryDirectory(prefix=f"sandboxctl-run-{self.run_id}-") as temp:
                scratch = Scratch(Path(temp))
                self._guarded(lambda: self._active(source, scratch, timeout))
                self._move(RunState.COLLECTING)
                self._collect(scratch, output_dir)
                if options.push_branch is not None:
                    self._move(RunState.PUSHING)
                self._push(scratch, source)
            outcome = decide_outcome(self.facts)
            ended_at = self.ctx.now()  # the run's end: `finished_at`, and what a kept sandbox's expiry counts from
            self._move(RunState.FINALIZING)
            self._finalize(outcome, ended_at + keep_for)
        finally:
            heartbeat.stop()
        summary = self._finish(output_dir, outcome, ended_at)
        if self._failure is not None:
            raise self._failure
        return summary

    def _beat(self) -> None:
        self._emit("heartbeat", step=self.record.step, state=str(self.state), elapsed_seconds=self._elapsed())
        leases.renew(self.ctx, self.sandbox.id if self.sandbox else None, self.run_id)  # cleanup spares it

    def _guarded(self, body: Callable[[], None]) -> None:
        """Run the interruptible steps; whatever stops them is recorded, never lost, and finalizing follows."""
        stop: str | None = None
        try:
            body()
        except RunInterrupted as exc:
            stop = exc.reason
        except KeyboardInterrupt:  # no signal handler installed (a library caller): Ctrl-C still finalizes
            stop = "SIGINT"
        except Exception as exc:  # noqa: BLE001 - recorded and re-raised once the sandbox is finalized
            self._failure = exc
            code = exc.exit_code if isinstance(exc, SandboxctlError) else 1
            self.facts = replace(self.facts, error_exit_code=code)
            self._emit("run.error", step=self.record.step, error=self._error_text(exc))
        if stop is not None:
            kind = self._stop_kind(stop)
            self.facts = replace(self.facts, stop=kind)
            self._emit("run.interrupted", signal=stop, step=self.record.step, cancelled=kind == CANCEL)

    def _sandbox_ttl(self, timeout: timedelta) -> timedelta | None:
        """`--ttl` as given; else the policy's, never less than the timeout + 1h (no expiry under a running agent)."""
        if self.options.ttl is not None:
            return self.options.ttl
        base = self.ctx.settings.ttl_for(self.options.policy)
        return None if base is None else max(base, timeout + timedelta(hours=1))

    def _active(self, source: RepoSource, scratch: Scratch, timeout: timedelta) -> None:
        options = self.options
        self._move(RunState.PREPARING)
        with self._step("prepare"), self._interruptible_section():
            base_commit = scratch.prepare(source, options.ref, history=options.push_branch is not None)
            dirty = scratch.uncommitted_changes(source)
        self._save(base_commit=base_commit)

        self._move(RunState.CREATING)
        with self._step("create") as entry:
            create = CreateOptions(
                backend=options.backend,
                image=options.image,
                name=f"agent-run-{self.run_id}",
                policy=options.policy,
                ttl=self._sandbox_ttl(timeout),
                idle_timeout=options.idle_timeout,
                labels={**options.labels, LABEL_RUN_ID: self.run_id},
            )
            with self._interruptible_section():
                record = create_sandbox(self.ctx, create)
            if record.backend_id is None:
                raise OperationFailed(f"the {record.backend} backend returned no id for sandbox {record.id}")
            created = self._created = CreatedSandbox(record, record.backend_id)
            leases.renew(self.ctx, record.id, self.run_id)  # at once: an idle timeout may be shorter than a heartbeat
            entry["sandbox_id"] = record.id
            self._save(sandbox_id=record.id, image=record.image)
        self._emit(
            "sandbox.created",
            sandbox_id=record.id,
            name=record.name,
            backend=record.backend,
            backend_id=record.backend_id,
            image=record.image,
        )

        backend = self.ctx.backend(record.backend)
        self._move(RunState.UPLOADING)
        with self._step("workspace") as entry:
            workspace = backend.workspace_path(created.backend_id)
            archive = scratch.archive({TASK_FILE: options.task.encode(), INBOX_FILE: b""})
            archive_bytes = archive.stat().st_size
            with self._interruptible_section(), archive.open("rb") as stream:
                backend.upload_archive(created.backend_id, workspace, stream)
            self._workspace = workspace
            entry["bytes"] = archive_bytes
            self._save(workspace_path=workspace)
        self._emit(
            "workspace.ready",
            path=workspace,
            base_commit=base_commit,
            bytes=archive_bytes,
            uncommitted_changes_ignored=dirty,
        )

        deadline = time.monotonic() + timeout.total_seconds()
        env = {
            **options.env,
            "SANDBOXCTL_RUN_ID": self.run_id,
            "SANDBOXCTL_WORKSPACE": workspace,
            "SANDBOXCTL_TASK": options.task,
            "SANDBOXCTL_TASK_FILE": posixpath.join(workspace, TASK_FILE),
            "SANDBOXCTL_INBOX": posixpath.join(workspace, INBOX_FILE),
        }
        if options.setup is not None:
            self._move(RunState.SETUP)
            setup = _command_exit(self._run_step(created, "setup", ("sh", "-c", options.setup), env, deadline))
            self.facts = replace(self.facts, setup=setup)
            if setup.timed_out or setup.exit_code != 0:
                return
        else:
            self._emit("setup.finished", skipped=True, exit_code=None)
        self._move(RunState.RUNNING)
        agent = _command_exit(self._run_step(created, "agent", options.command, env, deadline))
        self.facts = replace(self.facts, agent=agent)

    def _run_step(
        self, sandbox: CreatedSandbox, name: str, command: tuple[str, ...], env: dict[str, str], deadline: float
    ) -> ExecResult:
        """Run setup or the agent: output streamed as `<name>.output` events, bounded by the run's deadline."""
        backend = self.ctx.backend(sandbox.record.backend)
        streams = {"stdout": StreamRedactor(self.redact), "stderr": StreamRedactor(self.redact)}

        def sink(stream: str) -> Any:
            def write(chunk: bytes) -> None:
                text = streams[stream].feed(chunk)
                if text:
                    self._emit(f"{name}.output", stream=stream, text=text)

            return write

        request = ExecRequest(
            command=tuple(command),
            on_stdout=sink("stdout"),
            on_stderr=sink("stderr"),
            env=env,
            workdir=self._workspace,
            timeout_seconds=max(deadline - time.monotonic(), 0.001),
        )
        self._emit(f"{name}.started", command=[self.redact(arg) for arg in command])
        started = time.monotonic()

        def ended(entry: dict[str, Any], result: ExecResult | None, interrupted: str | None) -> None:
            for stream, redactor in streams.items():
                if text := redactor.flush():
                    self._emit(f"{name}.output", stream=stream, text=text)
            outcome = {
                "exit_code": result.exit_code if result and not result.timed_out else None,
                "timed_out": bool(result and result.timed_out),
                "interrupted": interrupted,
                "duration_seconds": round(time.monotonic() - started, 3),
            }
            entry.update(outcome)
            if result is not None:
                entry["status"] = "timed_out" if result.timed_out else "ok" if result.exit_code == 0 else "failed"
            self._emit("agent.exited" if name == "agent" else f"{name}.finished", **outcome)

        with self._step(name) as entry:
            try:
                with self._interruptible_section():
                    result = backend.exec(sandbox.backend_id, request)
            except RunInterrupted as exc:
                ended(entry, None, exc.reason)
                raise
            except BaseException:
                ended(entry, None, None)
                raise
            ended(entry, result, None)
        return result

    # -- after the agent -----------------------------------------------------
    def _collect(self, scratch: Scratch, output_dir: Path) -> None:
        if self.sandbox is None or self.sandbox.backend_id is None or not self.uploaded:
            return
        assert self.record is not None and self.record.workspace_path is not None
        backend = self.ctx.backend(self.sandbox.backend)
        patch_path = output_dir / "patch.diff"
        try:
            with self._step("collect") as entry:
                limits = self.limits
                workspace = self.record.workspace_path
                with backend.download_archive(self.sandbox.backend_id, workspace, max_file=limits.max_file) as stream:
                    result = scratch.collect(stream, limits, patch_path)
                listing = "".join(f"{quote_path(item['path'])}\n" for item in result.changed_files)
                atomic_write(output_dir / "changed-files.txt", listing.encode(errors="surrogateescape"))
                self.skipped_files = [item.as_dict() for item in result.skipped]
                entry.update(changed_files=len(result.changed_files), patch_bytes=result.patch_bytes)
        except Exception as exc:  # noqa: BLE001 - a lost result is recorded; the sandbox must still be finalized
            error = self._error_text(exc)
            self.output_failed = True
            self._save(error=self.record.error or f"collecting the result failed: {error}")
            self._emit("result.collected", error=error, changed_files=[], patch_path=None)
            return
        self._save(changed_files=result.changed_files, patch_path=str(patch_path))
        self._emit(
            "result.collected",
            changed_files=result.changed_files,
            patch_path=str(patch_path),
            patch_bytes=result.patch_bytes,
            skipped_files=self.skipped_files,
        )

    def _collect_limits(self) -> CollectLimits:
        settings = self.ctx.settings
        max_total = (
            self.options.max_collect if self.options.max_collect is not None else settings.get("agent.max_collect")
        )
        return CollectLimits(
            max_file=settings.get("agent.max_file"),
            max_total=max_total,
            max_entries=settings.get("agent.max_entries"),
        )

    def _push(self, scratch: Scratch, source: RepoSource) -> None:
        branch = self.options.push_branch
        if branch is None or source.origin is None:  # a push branch without origin is refused in _validate
            return
        push: dict[str, Any] = {"branch": branch, "remote": source.display, "commit": None, "pushed": False}
        if decide_outcome(self.facts).state is not RunState.SUCCEEDED:
            push["skip_reason"] = "the agent did not succeed"
        elif not self.record.changed_files:
            push["skip_reason"] = "no changes"
        else:
            message = f"agent-run {self.run_id}\n\n{self.options.task.strip()}\n".strip() + "\n"
            try:
                with self._step("push"):
                    push["commit"] = scratch.push(source.origin, branch, message)
                push["pushed"] = True
            except Exception as exc:  # noqa: BLE001 - recorded; the sandbox must still be finalized
                push["error"] = self._error_text(exc)
                self.output_failed = True
                self._save(error=self.record.error or f"pushing the result failed: {push['error']}")
        self._save(push=push)
        self._emit("push.finished", **push)

    def _find_sandbox(self) -> SandboxRecord | None:
        """The run's sandbox, even if an interruption came between its creation and `create_sandbox` returning."""
        if self.sandbox is not None:
            return self.sandbox
        found = self.ctx.registry.list_live(selector={LABEL_RUN_ID: self.run_id})
        return found[0] if found else None

    def _keep_until(self, sandbox: SandboxRecord, outcome: Outcome, until: datetime) -> datetime | None:
        """A sandbox kept after a run that did not succeed expires at `until` (its record's expiry moves);
        one kept after a success, or of policy `permanent`, keeps the lifetime it was created with."""
        if outcome.state is RunState.SUCCEEDED or sandbox.policy == Policy.PERMANENT:
            return None
        self.ctx.registry.update_fields(sandbox.id, expires_at=until)
        return until

    def _finalize(self, outcome: Outcome, keep_until: datetime) -> None:
        sandbox = self._find_sandbox()
        if sandbox is None:
            return
        policy = self.options.keep
        keep_reason: str | None = None
        if policy is KeepPolicy.ALWAYS:
            keep_reason = "--keep always"
        elif policy is KeepPolicy.ON_FAILURE and outcome.state is not RunState.SUCCEEDED:
            keep_reason = f"run {outcome.state} (--keep on-failure keeps it for debugging)"
        if keep_reason is not None:
            deletion = SandboxDeletion(sandbox.id, False, "kept", skipped=True, skip_reason=keep_reason)
            until = self._keep_until(sandbox, outcome, keep_until)
            self._save(sandbox_deletion=deletion.to_json(), kept_until=until)
            self._emit(
                "sandbox.kept",
                sandbox_id=sandbox.id,
                reason=keep_reason,
                expires_at=isoformat(until if until is not None else sandbox.expires_at),
                sandbox_deletion=deletion.to_json(),
            )
            log_event("kept", sandbox_id=sandbox.id, backend=sandbox.backend, reason=keep_reason, run_id=self.run_id)
            return
        with self._step("finalize") as entry:
            try:
                deletion = delete_sandbox(
                    self.ctx.registry, self.ctx.backend(sandbox.backend), sandbox, now=self.ctx.now()
                )
            except Exception as exc:  # noqa: BLE001 - a failed deletion is reported, never fails the run
                error = self._error_text(exc)
                deletion = SandboxDeletion(sandbox.id, False, "deletion failed", error=error)
            entry["status"] = "ok" if deletion.success else "failed"
        self._save(sandbox_deletion=deletion.to_json())
        if deletion.success:
            self._emit("sandbox.deleted", sandbox_id=sandbox.id, sandbox_deletion=deletion.to_json())
        else:
            reason = f"deletion failed: {deletion.error}"
            self._emit("sandbox.kept", sandbox_id=sandbox.id, reason=reason, sandbox_deletion=deletion.to_json())
            log_event(
                "kept", sandbox_id=sandbox.id, backend=sandbox.backend, reason=self.redact(reason), run_id=self.run_id
            )

    def _finish(self, output_dir: Path, outcome: Outcome, ended_at: datetime) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "status": str(outcome.state),
            "step": "done",
            "exit_code": outcome.exit_code,
            "finished_at": ended_at,
            "duration_seconds": self._elapsed(),
        }
        if self._failure is not None and self.record.error is None:
            fields["error"] = self._error_text(self._failure)
        self._move(outcome.state, **fields)
        summary = self.record.to_json()
        summary_path = output_dir / "summary.json"
        summary.update(summary_path=str(summary_path), events_path=str(output_dir / "events.jsonl"))
        summary["skipped_files"] = self.skipped_files
        atomic_write(summary_path, (json.dumps(summary, indent=2) + "\n").encode())
        self._emit(
            "run.finished",
            status=summary["status"],
            exit_code=summary["exit_code"],
            duration_seconds=summary["duration_seconds"],
            summary_path=str(summary_path),
            sandbox_id=summary["sandbox_id"],
            kept_until=summary["kept_until"],
        )
        self.events.close()
        return summary
