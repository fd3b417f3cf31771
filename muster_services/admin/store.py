"""SQL of the admin domain, SQLAlchemy Core on the admin tables.

Writes only the admin tables; reads the nodes and jobs tables for the
statistics sampler. Every function takes the caller's session, so a use case
composes them into one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    Table,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from muster_services.admin.tables import (
    action_log,
    activity_log,
    dispatcher_config,
    engine_state,
    group_members,
    groups,
    history_samples,
    ldap_config,
    log_messages,
    login_failures,
    pool_members,
    pools,
    repositories,
    statistics_samples,
    users,
)
from muster_services.core.database import execute_replanned, storable_text

# --- named rows (users, groups, pools, repositories) ------------------------------------------


def row_by_name(session: Session, table: Table, name: str, lock: bool = False) -> Row[Any] | None:
    if not storable_text(name):
        return None
    query = select(table).where(table.c.name == name)
    if lock:
        query = query.with_for_update()
    return session.execute(query).first()


def row_by_request_id(session: Session, table: Table, request_id: str) -> Row[Any] | None:
    return session.execute(select(table).where(table.c.request_id == request_id)).first()


def names_page(
    session: Session, table: Table, after: str | None, limit: int, *where: ColumnElement[bool]
) -> list[Row[Any]]:
    query = select(table).where(*where).order_by(table.c.name).limit(limit)
    if after is not None:
        query = query.where(table.c.name > after)
    return list(session.execute(query).all())


def existing_names(session: Session, table: Table, names: Iterable[str]) -> set[str]:
    wanted = list(names)
    if not wanted:
        return set()
    return set(session.scalars(select(table.c.name).where(table.c.name.in_(wanted))))


def insert_row(session: Session, table: Table, values: Mapping[str, Any]) -> Row[Any]:
    return session.execute(insert(table).values(**values).returning(table)).one()


def update_row(session: Session, table: Table, row_id: int, values: Mapping[str, Any]) -> None:
    if values:
        session.execute(update(table).where(table.c.id == row_id).values(**values))


def delete_row(session: Session, table: Table, row_id: int) -> None:
    session.execute(delete(table).where(table.c.id == row_id))


# --- users and groups -----------------------------------------------------------------------


def enabled_administrators(session: Session) -> list[str]:
    """Names of the enabled administrators, their rows locked: two changes
    that would each remove "the other" last administrator serialise here."""
    query = (
        select(users.c.name)
        .where(users.c.role == "administrator", users.c.enabled)
        .order_by(users.c.id)
        .with_for_update()
    )
    return list(session.scalars(query))


def administrators_exist(session: Session | Connection) -> bool:
    """Whether an enabled administrator exists (read, no lock)."""
    query = select(func.count()).where(users.c.role == "administrator", users.c.enabled)
    return bool(session.execute(query).scalar_one())


# --- logging in ---------------------------------------------------------------------


def login_account(session: Session | Connection, name: str) -> Row[Any] | None:
    """(role, enabled, directory) of the user logging in, if the name is known."""
    query: Select[Any] = select(users.c.role, users.c.enabled, users.c.directory).where(
        users.c.name == name
    )
    return session.execute(query).first()


def login_failures_since(
    session: Session | Connection, name: str, address: str, since: datetime
) -> tuple[int, int]:
    """Failed logins since `since`: (for this user name, from this address)."""
    by_user, by_address = session.execute(
        select(
            func.count().filter(login_failures.c.user_name == name),
            func.count().filter(login_failures.c.address == address),
        ).where(
            login_failures.c.failed_at > since,
            (login_failures.c.user_name == name) | (login_failures.c.address == address),
        )
    ).one()
    return int(by_user), int(by_address)


def record_login_failure(
    session: Session, name: str, address: str, forget_before: datetime
) -> None:
    """Record a failed login and forget the failures older than the window."""
    session.execute(insert(login_failures).values(user_name=name, address=address))
    session.execute(delete(login_failures).where(login_failures.c.failed_at < forget_before))


def groups_of_users(session: Session, user_ids: Sequence[int]) -> dict[int, list[str]]:
    if not user_ids:
        return {}
    rows = session.execute(
        select(group_members.c.user_id, groups.c.name)
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(group_members.c.user_id.in_(list(user_ids)))
        .order_by(groups.c.name)
    ).all()
    result: dict[int, list[str]] = {}
    for row in rows:
        result.setdefault(row.user_id, []).append(row.name)
    return result


def members_of_groups(session: Session, group_ids: Sequence[int]) -> dict[int, list[str]]:
    if not group_ids:
        return {}
    rows = session.execute(
        select(group_members.c.group_id, users.c.name)
        .join(users, users.c.id == group_members.c.user_id)
        .where(group_members.c.group_id.in_(list(group_ids)))
        .order_by(users.c.name)
    ).all()
    result: dict[int, list[str]] = {}
    for row in rows:
        result.setdefault(row.group_id, []).append(row.name)
    return result


def set_user_groups(session: Session, user_id: int, group_names: Sequence[str]) -> None:
    session.execute(delete(group_members).where(group_members.c.user_id == user_id))
    if group_names:
        session.execute(
            insert(group_members).from_select(
                ["group_id", "user_id"],
                select(groups.c.id, literal(user_id)).where(groups.c.name.in_(list(group_names))),
            )
        )


def set_group_members(session: Session, group_id: int, member_names: Sequence[str]) -> None:
    session.execute(delete(group_members).where(group_members.c.group_id == group_id))
    if member_names:
        session.execute(
            insert(group_members).from_select(
                ["group_id", "user_id"],
                select(literal(group_id), users.c.id).where(users.c.name.in_(list(member_names))),
            )
        )


def user_ids_in_group(session: Session, group: str) -> ColumnElement[bool]:
    """A WHERE clause: users that are members of `group`."""
    members = (
        select(group_members.c.user_id)
        .join(groups, groups.c.id == group_members.c.group_id)
        .where(groups.c.name == group)
    )
    return users.c.id.in_(members)


# --- pools ------------------------------------------------------------------------------------


def nodes_of_pools(session: Session, pool_ids: Sequence[int]) -> dict[int, list[str]]:
    if not pool_ids:
        return {}
    rows = session.execute(
        select(pool_members.c.pool_id, pool_members.c.node_name)
        .where(pool_members.c.pool_id.in_(list(pool_ids)))
        .order_by(pool_members.c.node_name)
    ).all()
    result: dict[int, list[str]] = {}
    for row in rows:
        result.setdefault(row.pool_id, []).append(row.node_name)
    return result


def pools_by_member(session: Session) -> dict[str, list[str]]:
    """Pool names by lower-cased member name (a node or a host name), for the
    domains that match nodes to pools (the scheduler, the node views)."""
    result: dict[str, list[str]] = {}
    for pool, member in session.execute(
        select(pools.c.name, pool_members.c.node_name)
        .join(pools, pools.c.id == pool_members.c.pool_id)
        .order_by(pools.c.name)
    ).all():
        result.setdefault(str(member).lower(), []).append(str(pool))
    return result


def pools_of(by_member: Mapping[str, list[str]], declared: Iterable[str], *names: str) -> list[str]:
    """A node's pools: those it declares, then those its node or host name is
    a member of (`by_member` from pools_by_member), each name once whatever its case."""
    seen: dict[str, str] = {}
    for pool in (*declared, *(p for n in names for p in by_member.get(n.lower(), ()))):
        seen.setdefault(pool.lower(), pool)
    return list(seen.values())


def member_of_pool(pool: str, *names: ColumnElement[Any]) -> ColumnElement[bool]:
    """True for a row one of whose `names` (node name, host name) an
    administrator put in the pool named `pool` (case-insensitive)."""
    return (
        select(pool_members.c.node_name)
        .join(pools, pools.c.id == pool_members.c.pool_id)
        .where(func.lower(pools.c.name) == pool.lower())
        .where(func.lower(pool_members.c.node_name).in_([func.lower(n) for n in names]))
        .exists()
    )


def set_pool_nodes(session: Session, pool_id: int, node_names: Sequence[str]) -> None:
    session.execute(delete(pool_members).where(pool_members.c.pool_id == pool_id))
    if node_names:
        session.execute(
            insert(pool_members), [{"pool_id": pool_id, "node_name": n} for n in node_names]
        )


def all_repositories(session: Session) -> list[Row[Any]]:
    return list(session.execute(select(repositories).order_by(repositories.c.name)).all())


# --- configuration (dispatcher and LDAP) -------------------------------------------------------

_CONFIG_TABLES = {"dispatcher": dispatcher_config, "ldap": ldap_config}


def configuration_row(session: Session, which: str, lock: bool = False) -> Row[Any]:
    table = _CONFIG_TABLES[which]
    query = select(table).where(table.c.id == 1)
    if lock:
        query = query.with_for_update()
    return session.execute(query).one()


def save_configuration(
    session: Session,
    which: str,
    config: Mapping[str, Any],
    secrets: Mapping[str, Any],
    persist: bool,
    actor: str,
) -> None:
    """Write the configuration in effect, and the stored one when persisting."""
    values: dict[str, Any] = {
        "runtime_config": dict(config),
        "runtime_secrets": dict(secrets),
    }
    if persist:
        values.update(config=dict(config), secrets=dict(secrets), updated_at=func.now())
        values["updated_by"] = actor
    table = _CONFIG_TABLES[which]
    session.execute(update(table).where(table.c.id == 1).values(**values))


def reset_runtime_configuration(session: Session, which: str) -> None:
    """The configuration in effect becomes the stored one (at start)."""
    table = _CONFIG_TABLES[which]
    session.execute(
        update(table)
        .where(table.c.id == 1)
        .values(runtime_config=table.c.config, runtime_secrets=table.c.secrets)
    )


# --- engine -------------------------------------------------------------------------------------


def engine_row(session: Session, lock: bool = False) -> Row[Any]:
    query = select(engine_state).where(engine_state.c.id == 1)
    if lock:
        query = query.with_for_update()
    return session.execute(query).one()


def update_engine(session: Session, **values: Any) -> Row[Any]:
    return session.execute(
        update(engine_state).where(engine_state.c.id == 1).values(**values).returning(engine_state)
    ).one()


# --- dispatcher log ------------------------------------------------------------------------------


def add_log_message(session: Session, level: str, source: str, message: str, internal: bool) -> int:
    return int(
        session.execute(
            insert(log_messages)
            .values(level=level, source=source, message=message, internal=internal)
            .returning(log_messages.c.id)
        ).scalar_one()
    )


def log_messages_page(
    session: Session, before_id: int | None, limit: int, levels: Sequence[str], internal: bool
) -> list[Row[Any]]:
    query = select(log_messages).order_by(log_messages.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(log_messages.c.id < before_id)
    if levels:
        query = query.where(log_messages.c.level.in_(list(levels)))
    if not internal:
        query = query.where(~log_messages.c.internal)
    return list(session.execute(query).all())


def clear_log_messages(session: Session) -> int:
    return int(session.execute(delete(log_messages)).rowcount or 0)  # type: ignore[attr-defined]


# --- per-day logs ------------------------------------------------------------------------------

# One line of each log, rendered by the database so a file's size and its
# content come from the same expression. Times are UTC, like the file days.
_STAMP = "to_char({t}.logged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
_LINE = {
    "action": (
        "action_log",
        _STAMP.format(t="action_log")
        + " || ' ' || CASE WHEN user_name = '' THEN '-' ELSE user_name END"
        + " || ' ' || CASE WHEN peer = '' THEN '-' ELSE peer END"
        + " || ' ' || action || ' ' || CASE WHEN target = '' THEN '-' ELSE target END"
        + " || ' ' || outcome || ' ' || status_code || ' ' || detail::text || E'\\n'",
    ),
    "activity": (
        "activity_log",
        _STAMP.format(t="activity_log")
        + " || ' ' || category || ' ' || replace(message, E'\\n', ' ') || E'\\n'",
    ),
}
_DAY = "(logged_at AT TIME ZONE 'UTC')::date"


def log_days(session: Session, kind: str, before: date | None, limit: int) -> list[Row[Any]]:
    """Days with lines, newest first: (day, size in bytes, last write)."""
    table, line = _LINE[kind]
    where = f"WHERE {_DAY} < :before" if before is not None else ""
    return list(
        session.execute(
            text(
                f"SELECT {_DAY} AS day, sum(octet_length({line})) AS size,"
                f" max(logged_at) AS modified FROM {table} {where}"
                f" GROUP BY 1 ORDER BY 1 DESC LIMIT :limit"
            ),
            {"before": before, "limit": limit},
        ).all()
    )


def log_day_content(session: Session, kind: str, day: date) -> str | None:
    """The lines of one day in write order, or None when the day has none."""
    table, line = _LINE[kind]
    return session.execute(
        text(
            f"SELECT string_agg({line}, '' ORDER BY logged_at, id) FROM {table}"
            f" WHERE logged_at >= (:day)::timestamp AT TIME ZONE 'UTC'"
            f" AND logged_at < ((:day)::timestamp + interval '1 day') AT TIME ZONE 'UTC'"
        ),
        {"day": day},
    ).scalar()


def delete_log_day(session: Session, kind: str, day: date) -> int:
    table, _ = _LINE[kind]
    result = session.execute(
        text(
            f"DELETE FROM {table}"
            f" WHERE logged_at >= (:day)::timestamp AT TIME ZONE 'UTC'"
            f" AND logged_at < ((:day)::timestamp + interval '1 day') AT TIME ZONE 'UTC'"
        ),
        {"day": day},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def utc_today(session: Session) -> date:
    """Today in UTC by the database clock (the clock that stamps the lines)."""
    value: date = session.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()
    return value


# The log lines of a batch of events in one statement per table, in the
# batch's order (the ids follow it): an executemany sent one INSERT per line,
# two or three per rendered chunk on a busy farm. Each line names its event:
# its time and details are taken from the event's row, not sent back encoded
# again. (An event pruned meanwhile, past the retention, leaves its line with
# the time of writing and no details.) Each line's event is looked up by id
# (LATERAL ... LIMIT 1: no join over the outbox, which the planner chose for
# its default guess of 100 lines a batch), in a statement planned at each run
# (execute_replanned): a plan cached while the outbox was small read the whole
# outbox for each batch until the next ANALYZE (docs/render-loop.md, "Plans
# cached on a small outbox").
_EVENT_OF_LINE = (
    " LEFT JOIN LATERAL (SELECT created_at, payload FROM events WHERE id = v.event_id LIMIT 1)"
    " e ON true ORDER BY v.n"
)
_ADD_ACTIONS = (
    "INSERT INTO action_log (logged_at, user_name, peer, action, target, outcome,"
    " status_code, detail) SELECT coalesce(e.created_at, now()), coalesce(v.user_name, ''),"
    " coalesce(v.peer, ''), v.action, coalesce(v.target, ''), v.outcome,"
    " coalesce(v.status_code, 'OK'), coalesce(e.payload - 'actor' - 'peer', '{}')"
    " FROM ROWS FROM (jsonb_to_recordset(CAST(%(rows)s AS jsonb))"
    " AS (event_id bigint, user_name text, peer text, action text, target text,"
    " outcome text, status_code text)) WITH ORDINALITY"
    " AS v(event_id, user_name, peer, action, target, outcome, status_code, n)" + _EVENT_OF_LINE
)
_ADD_ACTIVITIES = (
    "INSERT INTO activity_log (logged_at, category, message, job_id, node_id, detail)"
    " SELECT coalesce(e.created_at, now()), v.category, v.message, v.job_id, v.node_id,"
    " coalesce(e.payload, '{}') FROM ROWS FROM (jsonb_to_recordset(CAST(%(rows)s AS jsonb))"
    " AS (event_id bigint, category text, message text, job_id bigint, node_id bigint))"
    " WITH ORDINALITY AS v(event_id, category, message, job_id, node_id, n)" + _EVENT_OF_LINE
)


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as one JSON array (plain values only)."""
    return json.dumps([dict(row) for row in rows])


def add_actions(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        execute_replanned(session, _ADD_ACTIONS, {"rows": _json_rows(rows)})


def add_activities(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        execute_replanned(session, _ADD_ACTIVITIES, {"rows": _json_rows(rows)})


def prune_logs(session: Session, days: int) -> None:
    for table in (log_messages, activity_log, action_log):
        session.execute(
            delete(table).where(table.c.logged_at < func.now() - func.make_interval(0, 0, 0, days))
        )


# --- statistics and history ---------------------------------------------------------------------

_SAMPLES = {"statistics": statistics_samples, "history": history_samples}


def sample_bounds(session: Session, which: str) -> Row[Any]:
    table = _SAMPLES[which]
    return session.execute(
        select(
            func.min(table.c.sampled_at).label("first"),
            func.max(table.c.sampled_at).label("last"),
            func.count().label("samples"),
        )
    ).one()


def samples_page(
    session: Session,
    start: datetime | None,
    end: datetime | None,
    after: int | None,
    limit: int,
) -> list[Row[Any]]:
    """Statistics samples in [start, end], oldest first, after the id `after`."""
    table = statistics_samples
    query = select(table)
    if start is not None:
        query = query.where(table.c.sampled_at >= start)
    if end is not None:
        query = query.where(table.c.sampled_at <= end)
    if after is not None:
        query = query.where(table.c.id > after)
    return list(session.execute(query.order_by(table.c.id).limit(limit)).all())


def delete_samples(
    session: Session, which: str, start: datetime | None, end: datetime | None
) -> int:
    table = _SAMPLES[which]
    query = delete(table)
    if start is not None:
        query = query.where(table.c.sampled_at >= start)
    if end is not None:
        query = query.where(table.c.sampled_at <= end)
    return int(session.execute(query).rowcount or 0)  # type: ignore[attr-defined]


def prune_samples(session: Session, which: str, days: int) -> None:
    if days <= 0:
        return  # 0 keeps them forever
    table = _SAMPLES[which]
    session.execute(
        delete(table).where(table.c.sampled_at < func.now() - func.make_interval(0, 0, 0, days))
    )


def last_sample_time(session: Session, which: str) -> datetime | None:
    table = _SAMPLES[which]
    value: datetime | None = session.execute(select(func.max(table.c.sampled_at))).scalar()
    return value


def database_now(session: Session) -> datetime:
    value: datetime = session.execute(select(func.now())).scalar_one()
    return value


def counts_by_status(session: Session, table_name: str) -> dict[str, int]:
    """Rows of another domain's table by status (read only)."""
    rows = session.execute(text(f"SELECT status, count(*) FROM {table_name} GROUP BY status"))
    return {str(status): int(count) for status, count in rows}


def node_counts_by_status(session: Session) -> dict[str, int]:
    """Render nodes by the status they show (read only): `rendering` while a
    node holds a live assignment and is online, else its stored status (the
    nodes domain's SHOWN_STATUS, muster_services/nodes/store.py)."""
    rows = session.execute(
        text(
            "SELECT CASE WHEN n.status <> 'offline' AND EXISTS"
            " (SELECT 1 FROM chunk_assignments a WHERE a.node_id = n.id)"
            " THEN 'rendering' ELSE n.status END, count(*) FROM nodes n GROUP BY 1"
        )
    )
    return {str(status): int(count) for status, count in rows}


def run_counts_since(session: Session, since: datetime) -> dict[str, int]:
    """Chunk runs started and ended since `since` (the live counters)."""
    row = session.execute(
        text(
            """
            SELECT count(*) FILTER (WHERE started_at >= :since) AS dispatched,
                   count(*) FILTER (WHERE ended_at >= :since
                                    AND outcome IN ('succeeded', 'succeeded_with_warnings'))
                       AS completed,
                   count(*) FILTER (WHERE ended_at >= :since AND outcome = 'failed') AS failed,
                   count(*) FILTER (WHERE ended_at >= :since AND outcome NOT IN
                                    ('running', 'succeeded', 'succeeded_with_warnings', 'failed'))
                       AS interrupted
            FROM chunk_runs WHERE started_at >= :since OR ended_at >= :since
            """
        ),
        {"since": since},
    ).one()
    return dict(row._mapping)


def history_counts(session: Session, start: datetime, end: datetime) -> dict[str, int]:
    """Farm activity in [start, end) for a history sample (read only)."""
    row = session.execute(
        text(
            """
            SELECT
              (SELECT count(*) FROM jobs WHERE kind = 'job'
                 AND submitted_at >= :start AND submitted_at < :end) AS jobs_submitted,
              (SELECT count(*) FROM jobs WHERE kind = 'job'
                 AND ended_at >= :start AND ended_at < :end) AS jobs_completed,
              count(*) FILTER (WHERE outcome IN ('succeeded', 'succeeded_with_warnings'))
                 AS chunks_completed,
              count(*) FILTER (WHERE outcome = 'failed') AS chunks_failed,
              coalesce(sum(extract(epoch FROM ended_at - started_at)), 0)::bigint
                 AS render_seconds
            FROM chunk_runs WHERE ended_at >= :start AND ended_at < :end
            """
        ),
        {"start": start, "end": end},
    ).one()
    return {k: int(v) for k, v in row._mapping.items()}


def add_sample(session: Session, which: str, values: Mapping[str, Any]) -> None:
    session.execute(insert(_SAMPLES[which]).values(**values))


def try_sampler_lock(session: Session) -> bool:
    """One replica samples at a time (released at the end of the transaction)."""
    return bool(
        session.execute(
            text("SELECT pg_try_advisory_xact_lock(hashtext('admin-sampler'))")
        ).scalar()
    )
