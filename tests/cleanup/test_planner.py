"""The cleanup planner and claims, with injected time and process probes: no sleeping, no Docker."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from sandboxctl.backends.base import BackendSandbox, BackendState
from sandboxctl.labels import LABEL_CREATED_AT, LABEL_EXPIRES_AT, LABEL_HOST, LABEL_ID, LABEL_PID, LABEL_REGISTRY
from sandboxctl.registry.models import Policy, SandboxStatus
from sandboxctl.registry.store import Registry
from sandboxctl.services.cleanup import CLAIM_TIMEOUT, CleanupRequest, plan_records
from sandboxctl.services.orphans import find_orphans, judge_orphan

from .conftest import HOST, T0, add_record

GRACE = timedelta(hours=1)


def dead(host: str | None, pid: int | None) -> bool | None:
    return False if host == HOST else None


def alive(host: str | None, pid: int | None) -> bool | None:
    return True if host == HOST else None


def plan(registry: Registry, now: datetime = T0, probe=alive, **request: object) -> dict[str, str]:
    items = plan_records(registry, CleanupRequest(**request), now=now, grace=GRACE, is_alive=probe)
    return {item.sandbox_id: item.reason for item in items}


def test_expiry_is_inclusive_and_time_is_injected(registry: Registry) -> None:
    record = add_record(registry, age=timedelta(minutes=10), ttl=timedelta(minutes=10))
    assert plan(registry, now=T0 - timedelta(microseconds=1)) == {}
    assert plan(registry, now=T0) == {record.id: "expired"}


def test_idle_timeout_counts_from_last_access(registry: Registry) -> None:
    used = add_record(
        registry,
        idle=timedelta(minutes=5),
        last_used=timedelta(minutes=4),
        age=timedelta(hours=2),
        ttl=timedelta(days=1),
    )
    unused = add_record(registry, idle=timedelta(minutes=5), last_used=timedelta(minutes=5), ttl=timedelta(days=1))
    other_timeout = add_record(registry, idle=timedelta(hours=1), last_used=timedelta(minutes=30), ttl=None)
    assert plan(registry) == {unused.id: "idle"}
    assert plan(registry, now=T0 + timedelta(minutes=1)) == {used.id: "idle", unused.id: "idle"}
    assert other_timeout.id in plan(registry, now=T0 + timedelta(minutes=30))


def test_older_than_takes_records_created_more_than_dur_ago(registry: Registry) -> None:
    old = add_record(registry, age=timedelta(hours=3), ttl=timedelta(days=1))
    young = add_record(registry, age=timedelta(hours=1), ttl=timedelta(days=1))
    assert plan(registry) == {}
    assert plan(registry, older_than=timedelta(hours=2)) == {old.id: "older_than"}
    assert plan(registry, older_than=timedelta(hours=1)) == {old.id: "older_than"}  # exactly 1h: not *more*
    assert set(plan(registry, older_than=timedelta(0))) == {old.id, young.id}


def test_permanent_only_with_force(registry: Registry) -> None:
    permanent = add_record(registry, policy=Policy.PERMANENT, ttl=None, age=timedelta(days=400))
    assert plan(registry, older_than=timedelta(days=1)) == {}
    assert plan(registry, ids=(permanent.id,)) == {}
    assert plan(registry, older_than=timedelta(days=1), force=True) == {permanent.id: "older_than"}
    assert plan(registry, ids=(permanent.id,), force=True) == {permanent.id: "requested"}


def test_labels_must_all_match_and_backend_selects(registry: Registry) -> None:
    both = add_record(registry, ttl=timedelta(0), labels={"team": "ml", "env": "ci"})
    add_record(registry, ttl=timedelta(0), labels={"team": "ml"})
    docker = add_record(registry, ttl=timedelta(0), backend="docker", labels={"team": "ml", "env": "ci"})
    assert set(plan(registry, labels={"team": "ml", "env": "ci"})) == {both.id, docker.id}
    assert set(plan(registry, labels={"team": "ml", "env": "ci"}, backend="docker")) == {docker.id}


def test_limit_is_applied_after_every_filter(registry: Registry) -> None:
    """The planner reads only `limit` rows per query, yet neither other labels nor unforced permanent
    sandboxes (older, and more numerous) can take the slots of the ones asked for."""
    for minutes in range(60, 70):
        add_record(registry, age=timedelta(minutes=minutes), ttl=timedelta(0), labels={"job": "other"})
        add_record(registry, age=timedelta(minutes=minutes), ttl=None, policy=Policy.PERMANENT, labels={"job": "mine"})
    mine = [add_record(registry, age=timedelta(minutes=m), ttl=timedelta(0), labels={"job": "mine"}) for m in (3, 2, 1)]
    assert list(plan(registry, labels={"job": "mine"}, limit=2)) == [mine[0].id, mine[1].id]
    assert list(plan(registry, labels={"job": "mine"}, older_than=timedelta(0), limit=2)) == [mine[0].id, mine[1].id]
    forced = plan(registry, labels={"job": "mine"}, older_than=timedelta(0), force=True, limit=2)
    assert len(forced) == 2 and not set(forced) & {r.id for r in mine}  # the older permanent ones come first


def test_plan_is_oldest_first(registry: Registry) -> None:
    ages = [5, 50, 20]
    records = [add_record(registry, age=timedelta(minutes=m), ttl=timedelta(0)) for m in ages]
    items = plan_records(registry, CleanupRequest(), now=T0, grace=GRACE, is_alive=alive)
    assert [i.sandbox_id for i in items] == [records[1].id, records[2].id, records[0].id]


def test_creating_record_is_left_to_a_live_create_and_taken_from_a_dead_one(registry: Registry) -> None:
    creating = add_record(registry, status=SandboxStatus.CREATING, ttl=timedelta(0), age=timedelta(seconds=5))
    elsewhere = add_record(registry, status=SandboxStatus.CREATING, host="elsewhere", age=timedelta(minutes=5))
    # Expired or not, a live create is never disturbed; another host's is judged by age alone.
    assert plan(registry, probe=alive, older_than=timedelta(0)) == {}
    assert plan(registry, probe=dead) == {creating.id: "stale_create"}
    assert plan(registry, probe=alive, now=T0 + GRACE) == {creating.id: "stale_create", elsewhere.id: "stale_create"}


def test_deleting_record_is_reclaimed_only_after_the_claim_timeout(registry: Registry) -> None:
    claimed = add_record(registry, status=SandboxStatus.DELETING, ttl=timedelta(0), status_changed_at=T0)
    assert plan(registry, now=T0 + CLAIM_TIMEOUT - timedelta(seconds=1)) == {}
    assert plan(registry, now=T0 + CLAIM_TIMEOUT) == {claimed.id: "stale_claim"}


def test_failed_deletion_is_retried_and_flagged_stuck(registry: Registry) -> None:
    once = add_record(registry, status=SandboxStatus.FAILED, delete_attempts=1, ttl=timedelta(days=1))
    thrice = add_record(
        registry, status=SandboxStatus.FAILED, delete_attempts=3, ttl=timedelta(days=1), policy=Policy.PERMANENT
    )
    add_record(registry, status=SandboxStatus.FAILED, delete_attempts=0, ttl=timedelta(days=1))  # failed, not deleted
    items = {i.sandbox_id: i for i in plan_records(registry, CleanupRequest(), now=T0, grace=GRACE, is_alive=alive)}
    assert set(items) == {once.id, thrice.id}
    assert items[once.id].reason == "retry" and not items[once.id].stuck
    assert items[thrice.id].stuck  # permanent, yet its deletion was already decided: no --force needed


def test_requested_ids_resolve_names_and_skip_archived(registry: Registry) -> None:
    named = add_record(registry, name="web", ttl=timedelta(days=1))
    gone = add_record(registry, ttl=timedelta(days=1))
    registry.archive(gone.id, reason="deleted", deletion={}, now=T0)
    assert plan(registry, ids=("web", gone.id)) == {named.id: "requested"}


def test_claim_is_won_exactly_once_and_refuses_a_changed_record(registry: Registry) -> None:
    record = add_record(registry, ttl=timedelta(0))
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def contend() -> None:
        barrier.wait()
        wins.append(
            registry.claim(
                record.id, seen_status=SandboxStatus.RUNNING, seen_changed_at=record.status_changed_at, now=T0
            )
        )

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]
    # Failed since it was planned: a claim made on the old view must lose.
    registry.set_status(record.id, SandboxStatus.FAILED, now=T0 + timedelta(seconds=1), delete_attempts=1)
    assert not registry.claim(
        record.id, seen_status=SandboxStatus.FAILED, seen_changed_at=record.status_changed_at, now=T0
    )


def resource(labels: dict[str, str], created: datetime | None = None) -> BackendSandbox:
    return BackendSandbox(
        backend_id="c-" + labels.get(LABEL_ID, "x"), state=BackendState.RUNNING, labels=labels, created_at=created
    )


def labels(
    sandbox_id: str,
    *,
    registry: str = "ours",
    expires: str = "never",
    created: datetime = T0,
    host: str = HOST,
    pid: str = "4242",
) -> dict[str, str]:
    return {
        LABEL_ID: sandbox_id,
        LABEL_REGISTRY: registry,
        LABEL_EXPIRES_AT: expires,
        LABEL_CREATED_AT: created.isoformat(),
        LABEL_HOST: host,
        LABEL_PID: pid,
    }


@pytest.mark.parametrize(
    ("case", "found", "probe", "expected"),
    [
        ("expired, any registry", labels("a", registry="theirs", expires=T0.isoformat()), alive, "orphan_expired"),
        (
            "not yet expired, theirs, dead pid",
            labels("b", registry="theirs", expires="2027-01-01T00:00:00+00:00"),
            dead,
            None,
        ),
        ("ours, create dead", labels("c"), dead, "orphan_dead_create"),
        ("ours, create alive, young", labels("d", created=T0 - timedelta(minutes=5)), alive, None),
        ("ours, past grace", labels("e", created=T0 - GRACE), alive, "orphan_grace"),
        ("ours, other host, young", labels("f", host="elsewhere", created=T0 - timedelta(minutes=5)), dead, None),
        ("theirs, past grace", labels("g", registry="theirs", created=T0 - GRACE * 10), dead, None),
        ("unreadable expiry never expires", labels("h", registry="theirs", expires="soon"), dead, None),
    ],
)
def test_orphan_rule(case: str, found: dict[str, str], probe, expected: str | None) -> None:
    reason = judge_orphan(resource(found), registry_id="ours", now=T0, grace=GRACE, is_alive=probe)
    assert reason == expected, case


def test_a_resource_with_a_live_record_is_never_an_orphan() -> None:
    resources = [resource(labels("live", expires=T0.isoformat())), resource(labels("lost", expires=T0.isoformat()))]
    found = find_orphans(resources, live_ids={"live"}, registry_id="ours", now=T0, grace=GRACE, is_alive=dead)
    assert [(r.labels[LABEL_ID], reason) for r, reason in found] == [("lost", "orphan_expired")]
    # With no registry at all (lost), labels alone decide: only expiry counts.
    found = find_orphans(resources, live_ids=set(), registry_id="", now=T0, grace=GRACE, is_alive=dead)
    assert len(found) == 2


def test_other_hosts_local_sandboxes_are_notes_that_never_take_the_limit(registry: Registry) -> None:
    """A fleet registry (issue 13): another host's expired local sandboxes, however old and many, are skipped
    with reason `other_host` and never crowd this host's own out of --limit."""
    theirs = [
        add_record(registry, age=timedelta(days=3), ttl=timedelta(hours=1), backend_id=f"elsewhere:/x/{n:012x}")
        for n in range(3)
    ]
    ours = add_record(registry, age=timedelta(hours=2), ttl=timedelta(hours=1), backend_id=f"{HOST}:/x/0000000000aa")
    docker = add_record(registry, age=timedelta(hours=2), ttl=timedelta(hours=1), backend="docker", backend_id=None)
    items = plan_records(registry, CleanupRequest(limit=2), now=T0, grace=GRACE, is_alive=alive)
    outcome = {item.sandbox_id: (item.reason, str(item.outcome)) for item in items}
    assert outcome[ours.id] == ("expired", "planned")
    assert outcome[docker.id] == ("expired", "planned")
    noted = [outcome[r.id] for r in theirs if r.id in outcome]
    assert noted and set(noted) == {("other_host", "skipped")}, outcome


def test_a_dead_claimer_is_taken_over_at_once_only_on_its_own_host(registry: Registry) -> None:
    """A cleanup that died holding claims (e.g. its registry server restarted): its own host finishes the work
    at once; another host's claim waits for CLAIM_TIMEOUT, since nobody here can tell whether it lives."""
    here = add_record(registry, status=SandboxStatus.DELETING, status_changed_at=T0, claim_host=HOST, claim_pid=4)
    there = add_record(registry, status=SandboxStatus.DELETING, status_changed_at=T0, claim_host="h2", claim_pid=4)
    assert plan(registry, probe=dead) == {here.id: "stale_claim"}
    assert plan(registry, probe=alive) == {}
    assert plan(registry, now=T0 + CLAIM_TIMEOUT, probe=alive) == {here.id: "stale_claim", there.id: "stale_claim"}
