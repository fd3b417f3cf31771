"""The admin service layer on a real database: transactions, events, the
configuration in effect versus stored, the bus-built logs, the sampler."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from muster_services.admin import configuration, store
from muster_services.admin.domain import GroupSpec, PoolSpec, RepositorySpec, UserSpec
from muster_services.admin.logs import record_event
from muster_services.admin.resources import read_repository_paths
from muster_services.admin.service import AdminService
from muster_services.admin.tables import (
    action_log,
    activity_log,
    history_samples,
    statistics_samples,
)
from muster_services.core.bus import DurableConsumer, publish
from muster_services.core.caller import Caller, acting_as
from muster_services.core.database import Database
from muster_services.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument

pytestmark = pytest.mark.database


def events(db: Database, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    with db.transaction() as session:
        rows = session.execute(
            text("SELECT topic, payload FROM events WHERE topic LIKE :p ORDER BY id"),
            {"p": prefix + "%"},
        ).all()
    return [(r.topic, r.payload) for r in rows]


def drain_logs(db: Database) -> None:
    """Run the action-log consumer until nothing is left or held back (another
    test's transaction on the same server may hold the bus horizon a moment)."""
    consumer = DurableConsumer(db, "admin-action-log", record_event)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        handled, more = consumer.process_batch()
        if not handled and not more:
            return
        if not handled:
            time.sleep(0.02)
    raise AssertionError("the action-log consumer did not catch up")


def admin(name: str = "root") -> UserSpec:
    return UserSpec(name=name, role="administrator", password="secret")


def test_a_created_user_has_a_hashed_password_that_verifies(
    service: AdminService, db: Database
) -> None:
    service.accounts.create_user(admin())
    with db.transaction() as session:
        stored = session.execute(text("SELECT password_hash FROM users")).scalar_one()
    assert stored.startswith("$argon2") and "secret" not in stored
    assert service.accounts.verify_password("root", "secret")
    assert not service.accounts.verify_password("root", "wrong")
    service.accounts.create_user(admin("second"))
    service.accounts.update_user("root", {"enabled": False})
    assert not service.accounts.verify_password("root", "secret")


def test_a_retried_creation_with_the_same_request_id_returns_the_first(
    service: AdminService, db: Database
) -> None:
    first = service.accounts.create_user(admin(), request_id="r1")
    again = service.accounts.create_user(admin(), request_id="r1")
    assert again == first
    assert [t for t, _ in events(db, "user.")] == ["user.created"]
    with pytest.raises(AlreadyExists, match=r"user.name"):
        service.accounts.create_user(admin(), request_id="r2")


def test_events_carry_the_caller(service: AdminService, db: Database) -> None:
    with acting_as(Caller(name="ann", peer="ipv4:10.0.0.1:5")):
        service.resources.create_pool(PoolSpec("gpu", node_names=("n1",)))
    ((topic, payload),) = events(db, "pool.")
    assert topic == "pool.created"
    assert payload["actor"] == "ann" and payload["peer"] == "ipv4:10.0.0.1:5"


def test_two_concurrent_demotions_cannot_remove_both_administrators(
    service: AdminService, db: Database
) -> None:
    service.accounts.create_user(admin("a1"))
    service.accounts.create_user(admin("a2"))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def demote(name: str) -> None:
        barrier.wait()
        try:
            service.accounts.update_user(name, {"role": "user"})
            outcomes.append("ok")
        except FailedPrecondition:
            outcomes.append("refused")

    threads = [threading.Thread(target=demote, args=(n,)) for n in ("a1", "a2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok", "refused"]


def test_a_refused_user_update_changes_nothing(service: AdminService, db: Database) -> None:
    service.accounts.create_group(GroupSpec("artists"))
    service.accounts.create_user(UserSpec(name="bob", role="user", groups=("artists",)))
    before = service.accounts.get_user("bob")
    with pytest.raises(InvalidArgument, match=r"user.groups"):
        service.accounts.update_user("bob", {"groups": ("artists", "ghosts"), "email": "b@x"})
    assert service.accounts.get_user("bob") == before
    assert [t for t, _ in events(db, "user.")] == ["user.created"]


def test_removing_a_group_keeps_its_members(service: AdminService) -> None:
    service.accounts.create_user(UserSpec(name="bob", role="user"))
    service.accounts.create_group(GroupSpec("artists", members=("bob",)))
    assert service.accounts.get_user("bob").groups == ("artists",)
    service.accounts.delete_group("artists")
    assert service.accounts.get_user("bob").groups == ()


def test_repositories_are_readable_as_mapping_input(service: AdminService, db: Database) -> None:
    service.resources.create_repository(RepositorySpec("proj", "P:\\proj", "/mnt/proj"))
    with db.transaction() as session:
        (paths,) = read_repository_paths(session)
    assert (paths.windows_path, paths.linux_path, paths.macos_path) == ("P:\\proj", "/mnt/proj", "")


# --- configuration ----------------------------------------------------------------------------


def test_an_unstored_change_applies_now_and_ends_at_the_next_start(
    service: AdminService, db: Database
) -> None:
    service.system.update_configuration({"max_task_threads": 3}, {}, persist=False)
    assert configuration.effective_configuration(db).max_task_threads == 3
    service.system.start()
    assert configuration.effective_configuration(db).max_task_threads == 8


def test_a_stored_change_survives_the_next_start(service: AdminService, db: Database) -> None:
    service.system.update_configuration(
        {"max_task_threads": 3}, {"email.smtp_password": "pw"}, persist=True
    )
    service.system.update_configuration({"max_task_threads": 4}, {}, persist=False)
    service.system.start()
    assert configuration.effective_configuration(db).max_task_threads == 3
    with db.transaction() as session:
        assert configuration.read_secrets(session, "dispatcher") == {"email.smtp_password": "pw"}
    changed = [p for t, p in events(db, "config.") if p["configuration"] == "dispatcher"]
    assert [p["persisted"] for p in changed] == [True, False]


def test_an_empty_secret_keeps_the_stored_one(service: AdminService, db: Database) -> None:
    service.system.update_configuration({}, {"email.smtp_password": "pw"}, persist=True)
    service.system.update_configuration({}, {"email.smtp_password": ""}, persist=True)
    with db.transaction() as session:
        assert configuration.read_secrets(session, "dispatcher") == {"email.smtp_password": "pw"}


def test_the_engine_starts_paused_when_the_configuration_says_so(
    service: AdminService, db: Database
) -> None:
    service.system.update_configuration({"start_engine_on_startup": False}, {}, persist=True)
    service.system.start()
    assert service.system.engine_status() == "paused"
    assert events(db, "engine.")[-1][1]["status"] == "paused"


def test_a_network_scan_runs_until_reported_finished(service: AdminService, db: Database) -> None:
    with pytest.raises(FailedPrecondition, match="network_scan_ranges"):
        service.system.start_network_scan()
    service.system.update_configuration({"network_scan_ranges": ("10.0.1.0/24",)}, {}, True)
    assert service.system.start_network_scan() == ["10.0.1.0/24"]
    with pytest.raises(FailedPrecondition, match="still running"):
        service.system.start_network_scan()
    with db.transaction() as session:
        service.system.network_scan_finished(session)
    service.system.start_network_scan()
    assert [t for t, _ in events(db, "system.network")] == ["system.network_scan"] * 2


# --- logs from the bus ----------------------------------------------------------------------------


def test_every_services_events_become_action_and_activity_lines(
    service: AdminService, db: Database
) -> None:
    with db.transaction() as session:
        publish(session, "job.deleted", {"job_id": 7, "actor": "ann"}, key="7")
        publish(session, "chunk.assigned", {"job_id": 7, "node_id": 2, "actor": "scheduler"})
        publish(session, "node.lost", {"node_id": 2, "actor": "dispatcher"})
    drain_logs(db)
    with db.transaction() as session:
        actions = session.execute(select(action_log.c.user_name, action_log.c.action)).all()
        activity = session.execute(select(activity_log.c.category, activity_log.c.job_id)).all()
    assert sorted(actions) == [("ann", "job.deleted"), ("dispatcher", "node.lost")]
    assert sorted(activity, key=str) == sorted(
        [("job.deleted", 7), ("chunk.assigned", 7), ("node.lost", None)], key=str
    )


def test_a_batch_of_events_is_written_in_order_with_its_times_and_details(
    service: AdminService, db: Database
) -> None:
    """One statement per table writes a whole batch: the lines keep the
    events' order (ids), their publication times and their details."""
    with db.transaction() as session:
        for chunk in range(1, 31):
            publish(
                session,
                "chunk.finished",
                {"job_id": 9, "chunk_id": chunk, "note": 'caf\u00e9 "q"', "actor": "ann"},
            )
    drain_logs(db)
    with db.transaction() as session:
        published = (
            session.execute(
                text("SELECT created_at FROM events WHERE topic = 'chunk.finished' ORDER BY id")
            )
            .scalars()
            .all()
        )
        activity = session.execute(
            select(activity_log.c.logged_at, activity_log.c.detail).order_by(activity_log.c.id)
        ).all()
        actions = session.execute(
            select(action_log.c.logged_at, action_log.c.user_name, action_log.c.detail).order_by(
                action_log.c.id
            )
        ).all()
    assert [row.detail["chunk_id"] for row in activity] == list(range(1, 31))
    assert [row.logged_at for row in activity] == list(published)
    assert activity[0].detail == {
        "job_id": 9,
        "chunk_id": 1,
        "note": 'caf\u00e9 "q"',
        "actor": "ann",
    }
    assert [(row.logged_at, row.user_name) for row in actions] == [(t, "ann") for t in published]


def test_a_batch_looks_its_events_up_by_key_however_small_the_outbox_was_before(
    database_url: str,
) -> None:
    """The lines' statements find their events by id, not by reading the
    outbox, even on a connection that first ran them when the outbox was
    small: a plan cached then (a hash join over every event) was kept while
    the outbox grew, until the next ANALYZE."""
    one = Database(database_url, pool_size=1)  # one connection: its prepared statements stay
    try:
        with one.transaction() as session:
            session.execute(text("ALTER TABLE events SET (autovacuum_enabled = false)"))

        def write_lines() -> int:
            """A batch's lines; the outbox's rows its statements read one by one."""
            with one.transaction() as session:
                ids = [publish(session, "chunk.finished", {"actor": "ann"}) for _ in range(3)]
                store.add_actions(
                    session,
                    [{"event_id": i, "action": "x", "outcome": "succeeded"} for i in ids],
                )
                store.add_activities(
                    session,
                    [{"event_id": i, "category": "chunk.finished", "message": ""} for i in ids],
                )
                read = session.execute(
                    text(
                        "SELECT seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = 'events'"
                    )
                ).scalar_one()
            return int(read)

        for _ in range(12):  # past psycopg's prepare threshold and the server's custom plans
            write_lines()
        with one.transaction() as session:
            session.execute(
                text("INSERT INTO events (topic) SELECT 'grown' FROM generate_series(1, 50000)")
            )
        assert write_lines() == 0
    finally:
        one.dispose()


def test_a_chunk_runs_outcome_is_not_taken_for_the_outcome_of_a_call(
    service: AdminService, db: Database
) -> None:
    with db.transaction() as session:
        publish(session, "chunk.finished", {"job_id": 7, "outcome": "killed", "actor": "ann"})
        publish(
            session,
            "job.deleted",
            {"job_id": 8, "actor": "bob", "outcome": "denied", "status_code": "PERMISSION_DENIED"},
        )
    drain_logs(db)
    with db.transaction() as session:
        rows = session.execute(
            select(action_log.c.action, action_log.c.outcome, action_log.c.status_code)
        ).all()
    assert sorted(rows) == [
        ("chunk.finished", "succeeded", "OK"),
        ("job.deleted", "denied", "PERMISSION_DENIED"),
    ]


def _old_action(db: Database, when: datetime, action: str = "job.deleted") -> None:
    with db.transaction() as session:
        session.execute(
            insert(action_log).values(
                logged_at=when, user_name="ann", action=action, outcome="succeeded"
            )
        )


def test_a_past_days_log_is_listed_read_and_removed_but_not_todays(
    service: AdminService, db: Database
) -> None:
    day = datetime(2026, 1, 2, 23, 59, tzinfo=UTC)
    _old_action(db, day)
    _old_action(db, day + timedelta(minutes=2))  # the next UTC day
    service.logs.add_message("today", "info", False)
    drain_logs(db)
    names = [f.name for f in service.logs.list_files("action", 0, "").items]
    today = names[0]
    assert names[1:] == ["actions-2026-01-03.log", "actions-2026-01-02.log"]
    content = service.logs.read_file("action", "actions-2026-01-02.log")
    assert content == "2026-01-02T23:59:00.000Z ann - job.deleted - succeeded OK {}\n"
    sizes = {f.name: f.size_bytes for f in service.logs.list_files("action", 0, "").items}
    assert sizes["actions-2026-01-02.log"] == len(content.encode())
    assert service.logs.remove_file("action", "actions-2026-01-02.log") == 1
    with pytest.raises(FailedPrecondition, match="today"):
        service.logs.remove_file("action", today)
    assert [f.name for f in service.logs.list_files("action", 0, "").items] == [
        today,
        "actions-2026-01-03.log",
    ]


def test_log_files_page_newest_first(service: AdminService, db: Database) -> None:
    for day in (1, 2, 3):
        _old_action(db, datetime(2026, 1, day, 12, tzinfo=UTC))
    first = service.logs.list_files("action", 2, "")
    second = service.logs.list_files("action", 2, first.next_page_token)
    assert [f.name[8:18] for f in first.items + second.items] == [
        "2026-01-03",
        "2026-01-02",
        "2026-01-01",
    ]
    assert second.next_page_token == ""


# --- statistics -----------------------------------------------------------------------------------


def test_the_sampler_samples_once_per_interval_and_counts_the_farm(
    service: AdminService, db: Database
) -> None:
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO nodes (name, host_name, platform, status)"
                " VALUES ('n1', 'h1', 'linux', 'idle')"
            )
        )
    assert service.statistics.sample_if_due()
    assert not service.statistics.sample_if_due()  # the interval has not passed
    with db.transaction() as session:
        counters = session.execute(select(statistics_samples.c.counters)).scalar_one()
        history = session.execute(select(history_samples)).one()
    assert counters["nodes_total"] == 1 and counters["nodes_idle"] == 1
    assert history.interval_seconds == 60 and history.counters["chunks_completed"] == 0
    assert service.statistics.bounds("statistics").count == 1
    assert service.statistics.bounds("history").count == 1


def test_clearing_a_range_deletes_exactly_the_samples_inside_it(
    service: AdminService, db: Database
) -> None:
    times = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3, 4)]
    with db.transaction() as session:
        session.execute(insert(statistics_samples), [{"sampled_at": t} for t in times])
    assert service.statistics.clear("statistics", times[1], times[2]) == 2
    bounds = service.statistics.bounds("statistics")
    assert (bounds.first, bounds.last, bounds.count) == (times[0], times[3], 2)
    assert service.statistics.clear("statistics", None, times[0]) == 1
    assert events(db, "statistics.")[0][1]["deleted_count"] == 2
