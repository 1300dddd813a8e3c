"""`delete`: resolve every reference, then delete each sandbox; light enough to need no SQLModel.

On a current SQLite registry the two writes of a deletion (claim, then archive or
`failed`) go through the reader's stdlib-sqlite twins of `Registry.set_status` and
`Registry.archive`; elsewhere through the full registry. Same rows either way
(tests/test_reader.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from sandboxctl.services.context import Context
from sandboxctl.services.deletion import DeletableRecord, RecordsDeletions, SandboxDeletion, delete_sandbox


def delete_sandboxes(ctx: Context, refs: Sequence[str]) -> list[SandboxDeletion]:
    """Resolve every ref first (an unknown one fails before anything is deleted), then delete each.

    Idempotent: an already archived sandbox reports success without touching the backend.
    """
    resolved = [ctx.find_sandbox(ref) for ref in refs]
    writer: RecordsDeletions = ctx.reader or ctx.registry
    outcomes: list[SandboxDeletion] = []
    for found in resolved:
        record: DeletableRecord | None = None
        if not found.archived:
            record = found if ctx.reader is not None else ctx.registry.get(found.id)
        if record is None:  # archived, or archived since it was looked up
            outcomes.append(SandboxDeletion(found.id, True, "already deleted"))
            continue
        outcomes.append(delete_sandbox(writer, ctx.backend(found.backend), record, now=ctx.now()))
    return outcomes
