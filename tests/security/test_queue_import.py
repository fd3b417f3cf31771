"""dbImportQueueSQL (JobsService.ImportQueueSql) against injection: every
attempt is refused and the queue, and every other table, is unchanged."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import text

from muster_proto.jobs.v1 import jobs_pb2 as pb
from muster_proto.jobs.v1.jobs_pb2_grpc import JobsServiceStub
from muster_services.core.database import Database
from muster_services.core.server import MAX_MESSAGE_BYTES
from tests.security.audit import audit

pytestmark = pytest.mark.database

SNAPSHOT_TABLES = ("jobs", "chunks", "job_dependencies", "users", "groups", "pools", "templates")


def snapshot(db: Database) -> dict[str, object]:
    """Every row of the queue tables and of some others, and the schema."""
    with db.transaction() as session:
        state: dict[str, object] = {
            table: session.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            for table in SNAPSHOT_TABLES
        }
        state["schema"] = session.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' ORDER BY 1, 2"
            )
        ).all()
    return state


@pytest.fixture(scope="module")
def jobs(seeded: grpc.Channel) -> JobsServiceStub:
    return JobsServiceStub(seeded)


@pytest.fixture(scope="module")
def export(jobs: JobsServiceStub) -> str:
    return str(jobs.ExportQueueSql(pb.ExportQueueSqlRequest()).sql)


def _first(export: str, table: str) -> str:
    return next(line for line in export.splitlines() if line.startswith(f"INSERT INTO {table} "))


def attempts(export: str) -> dict[str, str]:
    job_line = _first(export, "jobs")
    chunk_line = _first(export, "chunks")
    values = job_line[job_line.index("VALUES") :]
    return {
        "another table": "INSERT INTO users (id, name) VALUES (99, 'mallory');\n",
        "another table with the jobs values": f"INSERT INTO users {values}\n",
        "lower-case keywords": job_line.replace("INSERT INTO", "insert into") + "\n",
        "DDL": "DROP TABLE jobs;\n",
        "DDL after a valid dump": export + "DROP TABLE chunks;\n",
        "truncate": "TRUNCATE jobs CASCADE;\n",
        "update": "UPDATE jobs SET priority = 0;\n",
        "delete after a valid dump": export + "DELETE FROM jobs;\n",
        "stacked statement on one line": job_line + " DELETE FROM jobs;\n",
        "stacked valid statements on one line": job_line + " " + chunk_line + "\n",
        "select into": "INSERT INTO jobs SELECT * FROM users;\n",
        "line comment": export + "-- a comment\n",
        "comment hiding the terminator": job_line[:-1] + " -- ;\n",
        "block comment": "/* x */ " + job_line + "\n",
        "unbalanced quote": job_line.replace("'shots'", "'shots", 1) + "\n",
        "escape string": job_line.replace("'shots'", "E'shots\\''", 1) + "\n",
        "dollar quoting": job_line.replace("'shots'", "$$shots$$", 1) + "\n",
        "unicode escapes": job_line.replace("'shots'", "U&'\\0073hots'", 1) + "\n",
        "function call as a value": job_line.replace("'shots'", "pg_sleep(10)", 1) + "\n",
        "subquery as a value": job_line.replace("'shots'", "(SELECT name FROM users)", 1) + "\n",
        "cast to another type": job_line.replace("'shots'", "'shots'::regclass", 1) + "\n",
        "column list changed": job_line.replace("(id, ", "(id, password_hash, ", 1) + "\n",
        "NUL byte": job_line + "\x00\n",
        "semicolon only": ";\n",
        "copy from program": "COPY jobs FROM PROGRAM 'id';\n",
    }


def _refused(jobs: JobsServiceStub, sql: str, name: str = "") -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        jobs.ImportQueueSql(pb.ImportQueueSqlRequest(sql=sql), timeout=120)
        pytest.fail(f"{name}: accepted")
    return error.value.code(), str(error.value.details())


def test_injection_attempts_are_refused_and_change_nothing(
    jobs: JobsServiceStub, export: str, stack_db: Database
) -> None:
    before = snapshot(stack_db)
    assert before["jobs"], "the queue must hold jobs for the test to mean anything"
    for name, sql in attempts(export).items():
        code, details = _refused(jobs, sql, name)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, code, details)
        assert details.startswith("sql"), (name, details)
        assert snapshot(stack_db) == before, name
    assert audit(stack_db) == {}


def test_a_literal_holding_sql_is_stored_as_text(
    jobs: JobsServiceStub, export: str, stack_db: Database
) -> None:
    """Well-formed quotes inside a value stay data: nothing of it runs."""
    payload = "x'); DROP TABLE chunks; --"
    quoted = "'" + payload.replace("'", "''") + "'"
    job_line = _first(export, "jobs")
    changed = export.replace(job_line, job_line.replace("'shots'", quoted, 1))
    assert changed != export
    try:
        jobs.ImportQueueSql(pb.ImportQueueSqlRequest(sql=changed), timeout=120)
        names = {j.name for j in jobs.ListJobs(pb.ListJobsRequest()).jobs}
        assert payload in names
        assert snapshot(stack_db)["chunks"]  # the table is still there, with its rows
        assert audit(stack_db) == {}
    finally:
        jobs.ImportQueueSql(pb.ImportQueueSqlRequest(sql=export), timeout=120)


def test_counters_in_the_text_do_not_make_an_inconsistent_queue(
    jobs: JobsServiceStub, export: str, stack_db: Database
) -> None:
    """A dump whose job counters lie (chunks_total 999): the import keeps the
    queue consistent, whatever the text says."""
    job_line = next(
        line
        for line in export.splitlines()
        if line.startswith("INSERT INTO jobs ") and "'job'" in line
    )
    with stack_db.transaction() as session:
        columns = [
            r[0]
            for r in session.execute(
                text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = 'jobs' ORDER BY ordinal_position"
                )
            )
        ]
    values = job_line[job_line.index("VALUES (") + len("VALUES (") : -2].split(", ")
    assert len(values) >= len(columns)  # strings holding ", " would break this split
    index = columns.index("chunks_total")
    values[index] = "999"
    lying = job_line[: job_line.index("VALUES (") + len("VALUES (")] + ", ".join(values) + ");"
    try:
        try:
            jobs.ImportQueueSql(
                pb.ImportQueueSqlRequest(sql=export.replace(job_line, lying)), timeout=120
            )
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert audit(stack_db) == {}
    finally:
        jobs.ImportQueueSql(pb.ImportQueueSqlRequest(sql=export), timeout=120)


def test_huge_input_is_refused(jobs: JobsServiceStub, export: str, stack_db: Database) -> None:
    before = snapshot(stack_db)
    # Just within the request limit, a valid dump then a huge word: the parser refuses it.
    near_limit = export + "x" * (MAX_MESSAGE_BYTES - 1024 - len(export.encode()))
    code, details = _refused(jobs, near_limit)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    # Above the request limit: gRPC refuses it before any code of ours runs.
    code, details = _refused(jobs, "x" * (MAX_MESSAGE_BYTES + 1))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert snapshot(stack_db) == before
