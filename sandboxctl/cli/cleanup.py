"""`sandboxctl cleanup`: delete expired, idle and orphaned sandboxes; safe to run from cron.

Output: `--json` prints the summary document; on a terminal a progress bar (large
batches) and a table; otherwise one plain line per sandbox handled and nothing at
all when there was nothing to do, so cron mails only when something happened.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sandboxctl.cli import render
from sandboxctl.cli.options import JsonOption, LabelOption, UserOption
from sandboxctl.durations import parse_duration
from sandboxctl.labels import parse_labels
from sandboxctl.services.context import Context

if TYPE_CHECKING:
    from rich.progress import Progress

    from sandboxctl.services.cleanup.report import CleanupReport

PROGRESS_FROM = 10  # smaller batches finish before a bar would be worth drawing


class _ProgressBar:
    """A rich bar on stderr, drawn only on a terminal and only for large batches."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total < PROGRESS_FROM or not sys.stderr.isatty():
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import Progress

            self._progress = Progress(console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task("cleaning up", total=total)
        self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _size(freed: int | None) -> str:
    if not freed:
        return "-"
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if freed >= size:
            return f"{freed / size:.1f} {unit}"
    return f"{freed} B"


def _render_plan(report: CleanupReport) -> None:
    rows = [item.to_json() for item in report.items]
    if not rows:
        if sys.stdout.isatty():
            render.message("nothing to clean up")
        return
    render.table(
        ("ID", "NAME", "BACKEND", "STATUS", "REASON", "CREATED", "EXPIRES"),
        [
            [
                r["sandbox_id"],
                r["name"] or "-",
                r["backend"],
                r["status"],
                r["reason"] + (f" (stuck, {r['attempts']} attempts)" if r["stuck"] else ""),
                render.relative(r["created_at"]),
                render.relative(r["expires_at"], future=True),
            ]
            for r in rows
        ],
        title="dry run: nothing was changed",
    )


def _render_run(report: CleanupReport) -> None:
    done = [item for item in report.items if item.outcome != "skipped"]
    if sys.stdout.isatty():
        if not done and not report.all_errors:
            render.message("nothing to clean up")
            return
        if done:
            render.table(
                ("ID", "NAME", "BACKEND", "REASON", "RESULT", "FREED", "ERROR"),
                [
                    [
                        item.sandbox_id,
                        item.name or "-",
                        item.backend,
                        item.reason,
                        str(item.outcome) + (" (stuck)" if item.stuck else ""),
                        _size(item.freed_bytes),
                        item.error or "",
                    ]
                    for item in done
                ],
            )
        render.message(
            f"cleaned {report.cleaned}, failed {report.failed}, in use {report.to_json()['sandboxes_in_use']}; "
            f"freed {_size(report.freed_bytes)} "
            f"in {report.duration_seconds:.1f}s"
        )
    else:
        # A sandbox in use is news only on a terminal: cron would mail every run while an exec goes on.
        for item in done:
            if item.outcome != "in_use":
                render.emit_line(f"{item.outcome} {item.sandbox_id} {item.reason}")


def _render_errors(report: CleanupReport) -> None:
    for error in report.all_errors:
        target = f"could not delete {error['sandbox_id']}" if error.get("sandbox_id") else "cleanup"
        stuck = f" (stuck after {error['attempts']} attempts)" if error.get("stuck") else ""
        render.message(f"error: {target}: {error['error']}{stuck}")


def cleanup_cmd(
    ctx: typer.Context,
    sandboxes: Annotated[
        list[str] | None,
        typer.Argument(metavar="SANDBOX", help="Only these sandboxes (ids, names or unique id prefixes)."),
    ] = None,
    *,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change nothing anywhere.")] = False,
    older_than: Annotated[
        str | None, typer.Option("--older-than", metavar="DUR", help="Also take sandboxes created more than DUR ago.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Also take `permanent` sandboxes, and in-use ones named here.")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, metavar="N", help="Handle at most N sandboxes (default: config cleanup.limit)."),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option("--backend", "-b", metavar="B", help="Only docker, daytona or local (default: all)."),
    ] = None,
    label: LabelOption = None,
    user: UserOption = None,
    orphans: Annotated[
        bool,
        typer.Option(
            "--orphans",
            help="Also delete labelled resources without a live record, and close records whose resource vanished.",
        ),
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, metavar="N", help="Parallel deletions (default: cleanup.concurrency)."),
    ] = None,
    json_: JsonOption = False,
    metrics_file: Annotated[
        Path | None,
        typer.Option("--metrics-file", metavar="PATH", help="Write Prometheus text-format metrics here (atomically)."),
    ] = None,
) -> None:
    """Delete expired, idle and orphaned sandboxes. Exit 1 if a deletion failed, 75 if another cleanup runs."""
    from sandboxctl.backends import check_backend_name
    from sandboxctl.services.cleanup import CleanupRequest, run_cleanup  # lazy: keeps --help free of SQLModel

    app: Context = ctx.obj
    settings = app.settings
    request = CleanupRequest(
        ids=tuple(sandboxes or ()),
        older_than=parse_duration(older_than) if older_than is not None else None,
        force=force,
        labels=parse_labels(label or []),
        created_by=user,
        backend=check_backend_name(backend) if backend else None,
        limit=limit if limit is not None else settings.get("cleanup.limit"),
        orphans=orphans,
        dry_run=dry_run,
        concurrency=concurrency if concurrency is not None else settings.get("cleanup.concurrency"),
        metrics_file=metrics_file,
    )
    bar = _ProgressBar()
    try:
        report = run_cleanup(app, request, progress=bar)
    finally:
        bar.close()
    if json_:
        render.emit_json(report.to_json())
    elif dry_run:
        _render_plan(report)
        _render_errors(report)
    else:
        _render_run(report)
        _render_errors(report)
    if not report.ok:
        raise typer.Exit(1)
