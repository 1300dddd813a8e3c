"""`cleanup`: one planner shared by real runs and `--dry-run`, then claimed, parallel deletions.

plan (reads only) -> claim items a few at a time as workers free up (`claim_many`: rows
still as planned, `FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent cleanups on any
host never handle a sandbox twice and split the work) -> delete with retries -> archive, or keep as `failed`
with the attempt count for the next run. The planner takes `now` and a process
probe, so its rules are tested without sleeping.

Which records are taken, and why (`reason`):
- `expired` (now >= expires_at), `idle` (last_accessed + idle timeout <= now),
  `older_than` (created more than --older-than ago), `requested` (named on the
  command line): records that are running, stopped, expired or failed; `permanent`
  ones only with --force.
- `stale_create`: a `creating` record whose create is dead (this host, pid gone) or
  older than `cleanup.orphan_grace` (no create takes that long).
- `stale_claim`: a `deleting` record whose claimer is dead (this host, pid gone) or
  that was claimed more than CLAIM_TIMEOUT ago (its deleter died mid-way).
- `other_host`: a `local` record of another host: skipped with a note (only its host
  can delete it), never claimed, never a failure, not counted against --limit.
- `retry`: a `failed` record whose deletion already failed; after STUCK_AFTER
  failed attempts it is reported as `stuck` (and still retried).
The last three finish a deletion already decided, so they ignore --force.
Label and backend selectors and --limit apply to all.

Modules: `planner` (pure: reads, decides), `executor` (claims, deletes, archives; the run
under the lock), `report` (what happened; what `metrics.py` and the CLI read).
"""

from sandboxctl.services.cleanup.executor import BackendPool, Progress, execute_plan, run_cleanup
from sandboxctl.services.cleanup.planner import (
    CLAIM_TIMEOUT,
    CleanupRequest,
    Plan,
    plan_cleanup,
    plan_reconciliation,
    plan_records,
)
from sandboxctl.services.cleanup.report import STUCK_AFTER, Action, CleanupItem, CleanupReport, Outcome

__all__ = [
    "CLAIM_TIMEOUT",
    "STUCK_AFTER",
    "Action",
    "BackendPool",
    "CleanupItem",
    "CleanupReport",
    "CleanupRequest",
    "Outcome",
    "Plan",
    "Progress",
    "execute_plan",
    "plan_cleanup",
    "plan_reconciliation",
    "plan_records",
    "run_cleanup",
]
