"""The domain schema on a real PostgreSQL: the migration matches the declared
tables, and the constraints that carry the dispatcher's invariants hold.

Each test gets its own database at head (the `db` fixture), on the embedded
server and again on MUSTER_TEST_DATABASE_URL when set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from muster_services.admin.tables import engine_state, users
from muster_services.core.database import Database, sqlalchemy_url
from muster_services.core.tables import metadata
from muster_services.jobs.tables import (
    chunk_assignments,
    chunk_run_logs,
    chunk_runs,
    chunks,
    job_dependencies,
    jobs,
    templates,
)
from muster_services.nodes.tables import nodes

pytestmark = pytest.mark.database

COUNTERS = (
    "chunks_total",
    "chunks_queued",
    "chunks_running",
    "chunks_completed",
    "chunks_failed",
    "requeue_count",
)


# --- helpers --------------------------------------------------------------------


@pytest.fixture
def conn(db: Database) -> Iterator[Connection]:
    """A connection in autocommit mode: each statement stands alone, so a refused
    insert leaves the connection usable for the next check."""
    with db.engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


def refused_by(conn: Connection, statement: Any) -> str:
    """Run `statement`, expect the database to refuse it, return the constraint name."""
    with pytest.raises(IntegrityError) as refused:
        conn.execute(statement)
    error = refused.value.orig
    assert isinstance(error, psycopg.Error)
    name = error.diag.constraint_name
    assert name is not None, str(error)
    return name


def add_template(conn: Connection, template_id: int = 1) -> int:
    conn.execute(insert(templates).values(id=template_id, name=f"template {template_id}"))
    return template_id


def add_job(conn: Connection, template_id: int, **values: Any) -> int:
    row = {"kind": "job", "name": "shot", "owner": "alice", "template_id": template_id}
    row.update(values)
    job_id: int = conn.execute(insert(jobs).values(**row).returning(jobs.c.id)).scalar_one()
    return job_id


def add_folder(conn: Connection, **values: Any) -> int:
    row = {"kind": "folder", "name": "project", "owner": "alice"}
    row.update(values)
    folder_id: int = conn.execute(insert(jobs).values(**row).returning(jobs.c.id)).scalar_one()
    return folder_id


def add_chunks(conn: Connection, job_id: int, count: int) -> None:
    conn.execute(
        insert(chunks),
        [
            {"job_id": job_id, "chunk_number": n, "start_frame": n, "end_frame": n}
            for n in range(1, count + 1)
        ],
    )


def assign(conn: Connection, job_id: int, chunk_number: int, node_id: int) -> int:
    token: int = conn.execute(
        insert(chunk_assignments)
        .values(job_id=job_id, chunk_number=chunk_number, node_id=node_id)
        .returning(chunk_assignments.c.fencing_token)
    ).scalar_one()
    return token


def count(conn: Connection, table: Any, *where: Any) -> int:
    n: int = conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
    return n


# --- the migration matches the metadata ----------------------------------------------


def test_the_migrated_database_matches_the_declared_tables_for_alembic_autogenerate(
    db: Database,
) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, metadata) == []


# Alembic does not compare CHECK constraints, partial-index predicates or
# sequences, so the catalog of the migrated database is also compared with
# that of a database built straight from the metadata (PostgreSQL renders
# both, so formatting cannot differ).
CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, is_nullable,
               column_default, is_identity, identity_generation
        FROM information_schema.columns WHERE table_schema = 'public'
    """,
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    """,
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, cycle
        FROM pg_sequences WHERE schemaname = 'public'
    """,
}


def _catalog(url: str) -> dict[str, set[tuple[Any, ...]]]:
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as connection:
            return {
                name: {
                    tuple(row)
                    for row in connection.execute(text(query))
                    if "alembic_version" not in str(row[0])
                }
                for name, query in CATALOG_QUERIES.items()
            }
    finally:
        engine.dispose()


def test_the_migration_creates_exactly_the_constraints_indexes_and_sequences_declared(
    database_url: str, empty_database_url: str
) -> None:
    engine = create_engine(sqlalchemy_url(empty_database_url))
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()

    migrated, declared = _catalog(database_url), _catalog(empty_database_url)

    for part in CATALOG_QUERIES:
        assert migrated[part] - declared[part] == set(), f"{part} only in the migration"
        assert declared[part] - migrated[part] == set(), f"{part} only in the metadata"


def test_the_single_row_tables_start_with_their_row_and_refuse_a_second(
    conn: Connection,
) -> None:
    assert conn.execute(select(engine_state.c.status)).scalars().all() == ["running"]
    assert refused_by(conn, insert(engine_state).values(id=2)) == "ck_engine_state_single_row"


# --- assignments: never two per chunk, never two per node -------------------------------


def test_a_second_live_assignment_for_the_same_chunk_is_refused(conn: Connection) -> None:
    job_id = add_job(conn, add_template(conn))
    add_chunks(conn, job_id, 2)
    assign(conn, job_id, 1, node_id=10)

    name = refused_by(
        conn, insert(chunk_assignments).values(job_id=job_id, chunk_number=1, node_id=11)
    )

    assert name == "uq_chunk_assignments_job_id_chunk_number"
    assert count(conn, chunk_assignments) == 1


def test_a_node_cannot_hold_two_live_assignments(conn: Connection) -> None:
    job_id = add_job(conn, add_template(conn))
    add_chunks(conn, job_id, 2)
    assign(conn, job_id, 1, node_id=10)

    name = refused_by(
        conn, insert(chunk_assignments).values(job_id=job_id, chunk_number=2, node_id=10)
    )

    assert name == "uq_chunk_assignments_node_id"


def test_an_assignment_of_a_chunk_that_does_not_exist_is_refused(conn: Connection) -> None:
    job_id = add_job(conn, add_template(conn))
    add_chunks(conn, job_id, 1)

    name = refused_by(
        conn, insert(chunk_assignments).values(job_id=job_id, chunk_number=2, node_id=10)
    )

    assert name == "fk_chunk_assignments_job_id_chunks"


def test_fencing_tokens_only_grow_even_after_assignments_are_gone(conn: Connection) -> None:
    job_id = add_job(conn, add_template(conn))
    add_chunks(conn, job_id, 1)
    first = assign(conn, job_id, 1, node_id=10)
    conn.execute(delete(chunk_assignments))

    second = assign(conn, job_id, 1, node_id=10)

    assert second > first


def test_a_chunk_has_at_most_one_run_in_progress_in_its_history(conn: Connection) -> None:
    run = {"job_id": 1, "chunk_number": 1, "node_id": 10, "start_frame": 1, "end_frame": 1}
    conn.execute(insert(chunk_runs).values(run_number=1, fencing_token=1, **run))

    name = refused_by(conn, insert(chunk_runs).values(run_number=2, fencing_token=2, **run))
    assert name == "ux_chunk_runs_one_running"

    conn.execute(
        update(chunk_runs).values(outcome="lost", ended_at=func.now(), message="node lost")
    )
    conn.execute(insert(chunk_runs).values(run_number=2, fencing_token=2, **run))
    assert count(conn, chunk_runs) == 2


def test_a_run_is_over_exactly_when_it_has_an_end_time(conn: Connection) -> None:
    run = {"job_id": 1, "chunk_number": 1, "node_id": 10, "start_frame": 1, "end_frame": 1}

    assert (
        refused_by(
            conn,
            insert(chunk_runs).values(run_number=1, fencing_token=1, outcome="succeeded", **run),
        )
        == "ck_chunk_runs_ended_when_over"
    )
    assert (
        refused_by(
            conn,
            insert(chunk_runs).values(run_number=1, fencing_token=1, ended_at=func.now(), **run),
        )
        == "ck_chunk_runs_ended_when_over"
    )


# --- jobs: ranges, counters, dependencies -----------------------------------------------


@pytest.mark.parametrize("priority", [-1, 65536])
def test_a_priority_outside_0_to_65535_is_refused(conn: Connection, priority: int) -> None:
    template_id = add_template(conn)

    name = refused_by(
        conn,
        insert(jobs).values(
            kind="job", name="x", owner="alice", template_id=template_id, priority=priority
        ),
    )

    assert name == "ck_jobs_priority_range"


def test_priorities_0_and_65535_are_accepted(conn: Connection) -> None:
    template_id = add_template(conn)
    add_job(conn, template_id, priority=0)
    add_job(conn, template_id, priority=65535)
    assert count(conn, jobs) == 2


@pytest.mark.parametrize("counter", COUNTERS)
def test_a_negative_job_counter_is_refused(conn: Connection, counter: str) -> None:
    job_id = add_job(conn, add_template(conn))

    name = refused_by(conn, update(jobs).where(jobs.c.id == job_id).values({counter: -1}))

    assert name == f"ck_jobs_{counter}_not_negative"


def test_chunk_counters_cannot_add_up_to_more_than_the_total(conn: Connection) -> None:
    job_id = add_job(conn, add_template(conn), chunks_total=3, chunks_queued=3)

    name = refused_by(conn, update(jobs).where(jobs.c.id == job_id).values(chunks_failed=1))

    assert name == "ck_jobs_chunks_within_total"


def test_a_negative_chunk_requeue_count_is_refused(conn: Connection) -> None:
    job_id = add_job(conn, add_template(conn))
    add_chunks(conn, job_id, 1)

    name = refused_by(conn, update(chunks).values(requeue_count=-1))

    assert name == "ck_chunks_requeue_count_not_negative"


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        ({"by_frame": 0}, "ck_jobs_by_frame_positive"),
        ({"start_frame": 10, "end_frame": 9}, "ck_jobs_frame_range"),
        ({"packet_size": 0}, "ck_jobs_packet_size_positive"),
        ({"max_nodes": -1}, "ck_jobs_max_nodes_not_negative"),
        ({"progress": 100.5}, "ck_jobs_progress_range"),
        ({"status": "done"}, "ck_jobs_status"),
        ({"depend_mode": "whenever"}, "ck_jobs_depend_mode"),
        ({"template_id": None}, "ck_jobs_template_for_jobs"),
    ],
)
def test_a_job_with_an_invalid_value_is_refused(
    conn: Connection, values: dict[str, Any], constraint: str
) -> None:
    template_id = add_template(conn)
    row = {"kind": "job", "name": "x", "owner": "alice", "template_id": template_id, **values}

    assert refused_by(conn, insert(jobs).values(**row)) == constraint


def test_a_folder_needs_no_template(conn: Connection) -> None:
    folder_id = add_folder(conn)
    assert conn.execute(select(jobs.c.template_id).where(jobs.c.id == folder_id)).scalar() is None


def test_a_job_depending_on_itself_is_refused(conn: Connection) -> None:
    job_id = add_job(conn, add_template(conn))

    name = refused_by(
        conn, insert(job_dependencies).values(job_id=job_id, depends_on_job_id=job_id)
    )

    assert name == "ck_job_dependencies_not_self"


def test_a_job_cannot_be_its_own_parent(conn: Connection) -> None:
    folder_id = add_folder(conn)

    name = refused_by(conn, update(jobs).where(jobs.c.id == folder_id).values(parent_id=folder_id))

    assert name == "ck_jobs_not_own_parent"


def test_deleting_a_folder_cascades_to_its_jobs_and_chunks_while_chunk_history_stays(
    conn: Connection,
) -> None:
    template_id = add_template(conn)
    folder_id = add_folder(conn)
    subfolder_id = add_folder(conn, parent_id=folder_id)
    job_id = add_job(conn, template_id, parent_id=folder_id)
    nested_job_id = add_job(conn, template_id, parent_id=subfolder_id)
    other_job_id = add_job(conn, template_id)
    for job in (job_id, nested_job_id, other_job_id):
        add_chunks(conn, job, 3)
    conn.execute(
        insert(job_dependencies).values(job_id=other_job_id, depends_on_job_id=nested_job_id)
    )
    token = assign(conn, job_id, 1, node_id=10)
    run_id = conn.execute(
        insert(chunk_runs)
        .values(
            job_id=job_id,
            chunk_number=1,
            run_number=1,
            node_id=10,
            node_name="render-01",
            fencing_token=token,
            start_frame=1,
            end_frame=1,
        )
        .returning(chunk_runs.c.id)
    ).scalar_one()
    conn.execute(insert(chunk_run_logs).values(run_id=run_id, seq=1, line="Rendering frame 1"))

    conn.execute(delete(jobs).where(jobs.c.id == folder_id))

    assert conn.execute(select(jobs.c.id)).scalars().all() == [other_job_id]
    assert count(conn, chunks, chunks.c.job_id != other_job_id) == 0
    assert count(conn, chunks, chunks.c.job_id == other_job_id) == 3
    assert count(conn, chunk_assignments) == 0
    assert count(conn, job_dependencies) == 0
    assert count(conn, chunk_runs, chunk_runs.c.job_id == job_id) == 1
    assert count(conn, chunk_run_logs, chunk_run_logs.c.run_id == run_id) == 1


def test_a_job_in_a_folder_that_does_not_exist_is_refused(conn: Connection) -> None:
    template_id = add_template(conn)

    name = refused_by(
        conn,
        insert(jobs).values(
            kind="job", name="x", owner="alice", template_id=template_id, parent_id=999
        ),
    )

    assert name == "fk_jobs_parent_id_jobs"


def test_a_template_used_by_a_job_cannot_be_deleted(conn: Connection) -> None:
    template_id = add_template(conn, 37)
    add_job(conn, template_id)

    name = refused_by(conn, delete(templates).where(templates.c.id == template_id))

    assert name == "fk_jobs_template_id_templates"


# --- nodes and users ---------------------------------------------------------------------


def test_node_names_are_unique_whatever_their_case(conn: Connection) -> None:
    conn.execute(insert(nodes).values(name="Render-01", host_name="render-01", platform="linux"))

    name = refused_by(
        conn,
        insert(nodes).values(
            name="render-01", host_name="render-01", instance_number=1, platform="linux"
        ),
    )

    assert name == "ux_nodes_name_lower"


def test_a_host_cannot_register_the_same_instance_twice(conn: Connection) -> None:
    conn.execute(insert(nodes).values(name="a", host_name="render-01", platform="linux"))

    name = refused_by(conn, insert(nodes).values(name="b", host_name="render-01", platform="linux"))

    assert name == "uq_nodes_host_name_instance_number"


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        ({"status": "busy"}, "ck_nodes_status"),
        ({"status": "paused", "paused": False}, "ck_nodes_paused_status_has_flag"),
        ({"platform": "amiga"}, "ck_nodes_platform"),
        ({"instance_number": -1}, "ck_nodes_instance_number_not_negative"),
        ({"memory_bytes": -1}, "ck_nodes_memory_bytes_not_negative"),
    ],
)
def test_a_node_with_an_invalid_value_is_refused(
    conn: Connection, values: dict[str, Any], constraint: str
) -> None:
    row = {"name": "n", "host_name": "h", "platform": "linux", **values}
    assert refused_by(conn, insert(nodes).values(**row)) == constraint


def test_a_user_role_outside_administrator_and_user_is_refused(conn: Connection) -> None:
    assert refused_by(conn, insert(users).values(name="eve", role="root")) == "ck_users_role"
