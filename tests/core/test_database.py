"""Sessions of the shared Database: the settings every connection of ours
carries (muster_services/core/database.SESSION_SETTINGS), on the embedded
server and again on MUSTER_TEST_DATABASE_URL when set."""

from __future__ import annotations

from sqlalchemy import make_url, text

from muster_services.core.database import Database, session_options


def _shown(db: Database, name: str) -> tuple[str, str, str]:
    """`name` as a pooled session, a one-statement read and a raw connection see it."""
    with db.transaction() as session:
        pooled = str(session.execute(text(f"SHOW {name}")).scalar())
    with db.read() as connection:
        read = str(connection.execute(text(f"SHOW {name}")).scalar())
    with db.raw_connection() as raw:
        row = raw.execute(f"SHOW {name}".encode()).fetchone()
    return pooled, read, str(row[0] if row else "")


def test_every_connection_runs_without_jit(db: Database) -> None:
    # A server built with LLVM (Debian's, the postgres images) has it on by
    # default and compiled the render loop's batched statements on each run.
    assert _shown(db, "jit") == ("off", "off", "off")


def test_the_urls_own_options_are_kept(database_url: str) -> None:
    options = "-c statement_timeout=1234 -c application_name=farm"
    db = Database(make_url(database_url).update_query_dict({"options": options}), pool_size=1)
    try:
        assert _shown(db, "statement_timeout") == ("1234ms",) * 3
        assert _shown(db, "application_name") == ("farm",) * 3
        assert _shown(db, "jit") == ("off",) * 3
    finally:
        db.dispose()


def test_our_settings_come_after_the_urls_and_win() -> None:
    url = "postgresql://u@h/d?options=-c%20jit%3Don%20-c%20work_mem%3D8MB"
    assert session_options(url) == "-c jit=on -c work_mem=8MB -c jit=off"
    assert session_options("postgresql://u@h/d") == "-c jit=off"
