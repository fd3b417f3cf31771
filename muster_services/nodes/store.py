"""SQL of the nodes domain. Writes only nodes-domain tables. What a node runs
(the jobs domain's live assignments) is read through muster_services/jobs/for_nodes.py;
the few statements here that test it inside a nodes statement say why."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from muster_services.admin.store import member_of_pool
from muster_services.admin.tables import log_messages
from muster_services.core.database import lock_in_id_order, storable_text
from muster_services.jobs.for_nodes import chunk_assignments
from muster_services.nodes.domain import Registration, node_name
from muster_services.nodes.tables import (
    client_connections,
    node_commands,
    node_job_exclusions,
    node_template_exclusions,
    nodes,
)


def upsert_node(
    session: Session, reg: Registration, replica: str, session_id: str, status: str
) -> Row[Any]:
    """Insert or refresh the node row of one agent instance (host + instance)."""
    values = {
        "host_name": reg.host_name,
        "instance_number": reg.instance_number,
        "platform": reg.platform,
        "os_version": reg.os_version,
        "cpu_cores": reg.cpu_cores,
        "memory_bytes": reg.memory_bytes,
        "agent_version": reg.agent_version,
        "ip_address": reg.ip_address,
        "mac_address": reg.mac_address,
        "pools": reg.pools,
        "replica": replica,
        "session_id": session_id,
        "connected_at": func.now(),
        "last_heartbeat_at": func.now(),
        "updated_at": func.now(),
    }
    statement = pg_insert(nodes).values(
        name=node_name(reg.host_name, reg.instance_number), status=status, **values
    )
    # A paused node stays paused across reconnects: its status follows the flag.
    refreshed_status = text(
        "CASE WHEN :rendering THEN 'rendering' WHEN nodes.paused THEN 'paused' ELSE 'idle' END"
    ).bindparams(rendering=status == "rendering")
    upsert = statement.on_conflict_do_update(
        index_elements=[nodes.c.host_name, nodes.c.instance_number],
        set_={**values, "status": refreshed_status},
    ).returning(*nodes.c)
    return session.execute(upsert).one()


def get_node(session: Session, node_id: int, lock: bool = False) -> Row[Any] | None:
    query = select(nodes).where(nodes.c.id == node_id)
    if lock:
        query = query.with_for_update()
    return session.execute(query).first()


def find_node(session: Session, name: str) -> Row[Any] | None:
    if not storable_text(name):
        return None
    return session.execute(select(nodes).where(func.lower(nodes.c.name) == name.lower())).first()


# The status a node shows: `rendering` while it holds a live assignment (and
# is online), else its stored status. The stored status is what the node is
# without one (offline, idle, paused; `rendering` only for an agent that runs
# a chunk that is no longer its assignment, until its result came), so a
# chunk's start and end write nothing to the node's row: its live assignment
# (the jobs domain's chunk_assignments) says it.
SHOWN_STATUS = (
    "CASE WHEN nodes.status <> 'offline' AND EXISTS"
    " (SELECT 1 FROM chunk_assignments a WHERE a.node_id = nodes.id)"
    " THEN 'rendering' ELSE nodes.status END"
)


def list_nodes(
    session: Session,
    after_id: int,
    limit: int,
    pool: str = "",
    statuses: Sequence[str] = (),
    platform: str = "",
) -> list[Row[Any]]:
    query = select(nodes).where(nodes.c.id > after_id).order_by(nodes.c.id).limit(limit)
    if pool:
        # Pools the agent declares, or an administrator's pool membership.
        declared = text(
            "EXISTS (SELECT 1 FROM unnest(nodes.pools) AS p WHERE lower(p) = lower(:pool))"
        ).bindparams(pool=pool)
        query = query.where(or_(declared, member_of_pool(pool, nodes.c.name, nodes.c.host_name)))
    if statuses:
        query = query.where(
            text(f"({SHOWN_STATUS}) = ANY(:shown)").bindparams(shown=list(statuses))
        )
    if platform:
        query = query.where(nodes.c.platform == platform)
    return list(session.execute(query).all())


def update_node(session: Session, node_id: int, **values: Any) -> Row[Any] | None:
    return session.execute(
        update(nodes)
        .where(nodes.c.id == node_id)
        .values(updated_at=func.now(), **values)
        .returning(*nodes.c)
    ).first()


def delete_node(session: Session, node_id: int) -> None:
    session.execute(delete(nodes).where(nodes.c.id == node_id))


def exclusions(session: Session, node_ids: Sequence[int]) -> dict[int, tuple[list[int], list[int]]]:
    """(excluded template ids, excluded job ids) per node."""
    result: dict[int, tuple[list[int], list[int]]] = {n: ([], []) for n in node_ids}
    if not node_ids:
        return result
    for node_id, template_id in session.execute(
        select(node_template_exclusions.c.node_id, node_template_exclusions.c.template_id)
        .where(node_template_exclusions.c.node_id.in_(list(node_ids)))
        .order_by(node_template_exclusions.c.template_id)
    ):
        result[node_id][0].append(template_id)
    for node_id, job_id in session.execute(
        select(node_job_exclusions.c.node_id, node_job_exclusions.c.job_id)
        .where(
            node_job_exclusions.c.node_id.in_(list(node_ids)),
            node_job_exclusions.c.excluded_until > func.now(),
        )
        .order_by(node_job_exclusions.c.job_id)
    ):
        result[node_id][1].append(job_id)
    return result


def remove_template_exclusions(session: Session, node_id: int, template_id: int) -> int:
    query = delete(node_template_exclusions).where(node_template_exclusions.c.node_id == node_id)
    if template_id:
        query = query.where(node_template_exclusions.c.template_id == template_id)
    return int(session.execute(query).rowcount)  # type: ignore[attr-defined]


def remove_job_exclusions(session: Session, node_id: int, job_id: int) -> int:
    query = delete(node_job_exclusions).where(node_job_exclusions.c.node_id == node_id)
    if job_id:
        query = query.where(node_job_exclusions.c.job_id == job_id)
    return int(session.execute(query).rowcount)  # type: ignore[attr-defined]


# --- commands to agents --------------------------------------------------------------


def insert_command(
    session: Session, node_id: int, kind: str, payload: dict[str, Any], requested_by: str
) -> int:
    return int(
        session.execute(
            insert(node_commands)
            .values(node_id=node_id, kind=kind, payload=payload, requested_by=requested_by)
            .returning(node_commands.c.id)
        ).scalar_one()
    )


def undelivered_commands(session: Session, node_id: int, max_age_seconds: float) -> list[Row[Any]]:
    return list(
        session.execute(
            select(node_commands)
            .where(
                node_commands.c.node_id == node_id,
                node_commands.c.delivered_at.is_(None),
                node_commands.c.acknowledged_at.is_(None),
                node_commands.c.created_at
                > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, max_age_seconds),
            )
            .order_by(node_commands.c.id)
        ).all()
    )


def get_command(session: Session, command_id: int) -> Row[Any] | None:
    return session.execute(select(node_commands).where(node_commands.c.id == command_id)).first()


def mark_command_delivered(session: Session, command_id: int) -> None:
    session.execute(
        update(node_commands)
        .where(node_commands.c.id == command_id, node_commands.c.delivered_at.is_(None))
        .values(delivered_at=func.now())
    )


def record_command_result(
    session: Session, command_id: int, result: dict[str, Any], acknowledge: bool
) -> None:
    """Merge an agent's answer into the command's result.

    A CommandAck acknowledges; a run-code output may arrive before or after
    its ack, so results are merged rather than replaced.
    """
    session.execute(
        text(
            "UPDATE node_commands SET result = coalesce(result, '{}'::jsonb) || CAST(:r AS jsonb),"
            " acknowledged_at = CASE WHEN :ack THEN coalesce(acknowledged_at, now())"
            " ELSE acknowledged_at END WHERE id = :id"
        ),
        {"r": json.dumps(result), "ack": acknowledge, "id": command_id},
    )


def kill_follow_ups(session: Session, tokens: Sequence[int]) -> dict[int, str]:
    """What the dispatcher asked for after killing these runs, by fencing token."""
    rows = session.execute(
        select(
            node_commands.c.payload["fencing_token"].astext,
            node_commands.c.payload["follow_up"].astext,
        )
        .where(
            node_commands.c.kind == "kill_process",
            node_commands.c.payload["fencing_token"].astext.in_([str(t) for t in tokens]),
        )
        .order_by(node_commands.c.id)
    ).all()
    return {int(token): str(follow_up or "") for token, follow_up in rows}


# --- liveness --------------------------------------------------------------------------


# Statements that change several nodes' rows (heartbeats, results, deliveries)
# lock them first in id order.
LOCK_NODES = lock_in_id_order("nodes")


def touch_heartbeats(
    session: Session,
    replica: str,
    streams: dict[int, str],
    busy: set[int] | frozenset[int] = frozenset(),
) -> list[int]:
    """Refresh the nodes whose streams this replica holds (node id -> session id).

    A node the lost-node sweep marked offline while its stream was in fact
    alive (a slow network, a paused process) comes back: idle, or paused,
    with its session; `rendering` when its agent says it still runs a chunk
    (`busy`): the sweep released that chunk, the agent is told to kill it,
    and the node is free only once its (stale) result came, not before (a
    chunk sent now would be refused: "instance busy"). Returns the nodes
    that came back.
    """
    if not streams:
        return []
    back = session.execute(
        text(
            f"{LOCK_NODES} UPDATE nodes n SET last_heartbeat_at = now(), session_id = v.session,"
            " replica = :replica, updated_at = now(),"
            " status = CASE WHEN n.status <> 'offline' THEN n.status"
            " WHEN v.busy THEN 'rendering' WHEN n.paused THEN 'paused' ELSE 'idle' END"
            " FROM locked l, nodes old, jsonb_to_recordset(CAST(:streams AS jsonb))"
            " AS v(node bigint, session text, busy boolean)"
            " WHERE n.id = l.id AND n.id = v.node AND old.id = n.id"
            # RETURNING sees the new row: the row as it was comes from the join.
            " RETURNING n.id, old.status = 'offline' AS revived"
        ),
        {
            "ids": sorted(streams),
            "replica": replica,
            "streams": json.dumps(
                [{"node": k, "session": v, "busy": k in busy} for k, v in streams.items()]
            ),
        },
    ).all()
    return [row.id for row in back if row.revived]


def mark_disconnected(session: Session, node_id: int, session_id: str) -> None:
    """Forget a stream that ended, unless the node already reconnected elsewhere."""
    session.execute(
        update(nodes)
        .where(nodes.c.id == node_id, nodes.c.session_id == session_id)
        .values(replica=None, session_id=None, updated_at=func.now())
    )


def mark_lost(session: Session, timeout_seconds: float) -> list[Row[Any]]:
    """Nodes silent for longer than the timeout become offline; returns them."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, timeout_seconds)
    return list(
        session.execute(
            update(nodes)
            .where(
                nodes.c.status != "offline",
                or_(nodes.c.last_heartbeat_at.is_(None), nodes.c.last_heartbeat_at < cutoff),
            )
            .values(status="offline", replica=None, session_id=None, updated_at=func.now())
            .returning(nodes.c.id, nodes.c.name)
        ).all()
    )


def count_by_state(connection: Connection) -> Sequence[Row[Any]]:
    """(status, paused, count) of the render nodes, for the metrics
    (muster_services/core/metrics.py): one grouped statement."""
    return connection.execute(
        text(f"SELECT {SHOWN_STATUS} AS status, paused, count(*) FROM nodes GROUP BY 1, 2")
    ).all()


def online_node_ids(session: Session) -> list[int]:
    return list(
        session.execute(
            select(nodes.c.id).where(
                and_(nodes.c.status != "offline", nodes.c.session_id.isnot(None))
            )
        ).scalars()
    )


def run_code_command(session: Session, request_id: str) -> int | None:
    found = session.execute(
        select(node_commands.c.id).where(
            node_commands.c.kind == "run_python_code",
            node_commands.c.payload["request_id"].astext == request_id,
        )
    ).scalar()
    return int(found) if found is not None else None


# --- console and notificator connections ------------------------------------------------


def insert_connection(session: Session, **values: Any) -> Row[Any]:
    return session.execute(
        insert(client_connections).values(**values).returning(*client_connections.c)
    ).one()


def get_connection(session: Session, connection_id: int, kind: str) -> Row[Any] | None:
    return session.execute(
        select(client_connections).where(
            client_connections.c.id == connection_id,
            client_connections.c.kind == kind,
            client_connections.c.disconnected_at.is_(None),
        )
    ).first()


def list_connections(
    session: Session, kind: str, user_name: str, after_id: int, limit: int
) -> list[Row[Any]]:
    query = (
        select(client_connections)
        .where(
            client_connections.c.kind == kind,
            client_connections.c.disconnected_at.is_(None),
            client_connections.c.id > after_id,
        )
        .order_by(client_connections.c.id)
        .limit(limit)
    )
    if user_name:
        query = query.where(client_connections.c.user_name == user_name)
    return list(session.execute(query).all())


def connected_ids(session: Session, kind: str) -> list[int]:
    return list(
        session.execute(
            select(client_connections.c.id).where(
                client_connections.c.kind == kind, client_connections.c.disconnected_at.is_(None)
            )
        ).scalars()
    )


def close_connection(session: Session, connection_id: int, reason: str) -> bool:
    closed = session.execute(
        update(client_connections)
        .where(
            client_connections.c.id == connection_id,
            client_connections.c.disconnected_at.is_(None),
        )
        .values(disconnected_at=func.now(), disconnect_reason=reason)
    )
    return bool(closed.rowcount)  # type: ignore[attr-defined]


def touch_connections(session: Session, positions: dict[int, int]) -> None:
    """Refresh held connections and record the last event each was sent."""
    if not positions:
        return
    session.execute(
        update(client_connections)
        .where(client_connections.c.id == bindparam("connection"))
        .values(last_seen_at=func.now(), last_event_id=bindparam("event")),
        [{"connection": c, "event": e} for c, e in positions.items()],
    )


def close_stale_connections(session: Session, timeout_seconds: float) -> list[int]:
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, timeout_seconds)
    return list(
        session.execute(
            update(client_connections)
            .where(
                client_connections.c.disconnected_at.is_(None),
                client_connections.c.last_seen_at < cutoff,
            )
            .values(disconnected_at=func.now(), disconnect_reason="timed_out")
            .returning(client_connections.c.id)
        ).scalars()
    )


def offline_nodes_with_assignments(session: Session) -> list[int]:
    """Offline nodes that still hold a live assignment: one statement over
    nodes and the jobs domain's chunk_assignments (re-exported for this by
    muster_services/jobs/for_nodes.py), so the sweep reads it in one round trip."""
    return list(
        session.execute(
            select(nodes.c.id)
            .where(
                nodes.c.status == "offline",
                nodes.c.id.in_(select(chunk_assignments.c.node_id)),
            )
            .order_by(nodes.c.id)
        ).scalars()
    )


def count_job_failure(session: Session, node_id: int, job_id: int) -> int:
    """Count one more failure of `job_id` on `node_id` (a forgiven exclusion
    starts counting again); returns the failure count."""
    failures = session.execute(
        text(
            "INSERT INTO node_job_exclusions AS x (node_id, job_id, failures, last_failure_at)"
            " SELECT :node, :job, 1, now() FROM nodes WHERE id = :node"
            " ON CONFLICT (node_id, job_id) DO UPDATE SET"
            " failures = CASE WHEN x.excluded_until < now() THEN 1 ELSE x.failures + 1 END,"
            " excluded_until = CASE WHEN x.excluded_until < now() THEN NULL"
            " ELSE x.excluded_until END,"
            " last_failure_at = now()"
            " RETURNING failures"
        ),
        {"node": node_id, "job": job_id},
    ).scalar()
    return int(failures or 0)


def exclude_node_from_job(
    session: Session, node_id: int, job_id: int, forgive_seconds: float
) -> None:
    session.execute(
        update(node_job_exclusions)
        .where(node_job_exclusions.c.node_id == node_id, node_job_exclusions.c.job_id == job_id)
        .values(excluded_until=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, forgive_seconds))
    )


def release_rendering(session: Session, node_ids: Sequence[int]) -> list[int]:
    """Nodes stored `rendering` (their agent ran a chunk that was not, or no
    longer, their live assignment: SHOWN_STATUS) without a live assignment
    go back to idle (or paused); only those rows are locked and written.

    The test of the live assignment is part of the update (one statement
    with the node rows locked): a chunk assigned meanwhile keeps its node
    rendering."""
    if not node_ids:
        return []
    return list(
        session.execute(
            text(
                "WITH locked AS MATERIALIZED (SELECT id FROM nodes"
                " WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'rendering'"
                " ORDER BY id FOR NO KEY UPDATE) UPDATE nodes n"
                " SET status = CASE WHEN n.paused THEN 'paused' ELSE 'idle' END,"
                " updated_at = now() FROM locked l"
                " WHERE n.id = l.id AND n.status = 'rendering'"
                " AND NOT EXISTS (SELECT 1 FROM chunk_assignments a WHERE a.node_id = n.id)"
                " RETURNING n.id"
            ),
            {"ids": sorted(set(node_ids))},
        ).scalars()
    )


def hold_rendering(session: Session, node_ids: Sequence[int]) -> None:
    """Online nodes stored `rendering` (kept from the scheduler, SHOWN_STATUS)
    until release_rendering: written before a failed run's end is recorded,
    so the node is not free before its failure is counted."""
    if node_ids:
        session.execute(
            text(
                f"{LOCK_NODES} UPDATE nodes n SET status = 'rendering', updated_at = now()"
                " FROM locked l WHERE n.id = l.id AND n.status <> 'offline'"
            ),
            {"ids": sorted(set(node_ids))},
        )


def idle_of(session: Session, node_ids: Sequence[int]) -> list[int]:
    """Those of these nodes that are online and hold no live assignment: their
    chunk ended and no new one came (node.idle); no row is written.

    Each node's assignment is looked up by key (LATERAL ... LIMIT 1): as NOT
    EXISTS, the planner hashed every live assignment of the farm for each
    batch of results."""
    if not node_ids:
        return []
    return list(
        session.execute(
            text(
                "SELECT n.id FROM nodes n"
                " LEFT JOIN LATERAL (SELECT 1 AS held FROM chunk_assignments a"
                " WHERE a.node_id = n.id LIMIT 1) h ON true"
                " WHERE n.id = ANY(CAST(:ids AS bigint[]))"
                " AND n.status <> 'offline' AND n.session_id IS NOT NULL AND h.held IS NULL"
                " ORDER BY n.id"
            ),
            {"ids": sorted(set(node_ids))},
        ).scalars()
    )


def rename_host_of_address(session: Session, ip: str, instance: int, host_name: str) -> None:
    """Identity by address: the row of (ip, instance) takes the reported host name."""
    session.execute(
        text(
            "UPDATE nodes SET host_name = :host WHERE ip_address = :ip"
            " AND instance_number = :n AND host_name <> :host"
            " AND NOT EXISTS (SELECT 1 FROM nodes o WHERE o.host_name = :host"
            " AND o.instance_number = :n)"
        ),
        {"host": host_name, "ip": ip, "n": instance},
    )


def remove_orphans(session: Session, host_name: str, instance_count: int) -> list[int]:
    """Instances of a host beyond the count it runs now, offline and idle: gone
    (holding no live assignment, tested in the same statement)."""
    return list(
        session.execute(
            text(
                "DELETE FROM nodes n WHERE n.host_name = :host AND n.instance_number >= :count"
                " AND n.session_id IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM chunk_assignments a WHERE a.node_id = n.id)"
                " RETURNING n.id"
            ),
            {"host": host_name, "count": instance_count},
        ).scalars()
    )


# --- the network scan ----------------------------------------------------------------


def host_is_known(session: Session, host_name: str) -> bool:
    return (
        session.execute(select(nodes.c.id).where(nodes.c.host_name == host_name)).first()
        is not None
    )


def insert_discovered_node(
    session: Session, host_name: str, ip_address: str, platform: str, agent_version: str
) -> None:
    """An agent that answered a scan and is not registered: an offline node."""
    session.execute(
        text(
            "INSERT INTO nodes (name, host_name, ip_address, platform, agent_version, status)"
            " VALUES (:name, :name, :ip, :platform, :version, 'offline')"
            " ON CONFLICT DO NOTHING"
        ),
        {"name": host_name, "ip": ip_address, "platform": platform, "version": agent_version},
    )


def offline_ip_addresses(session: Session) -> list[str]:
    return list(
        session.execute(select(nodes.c.ip_address).where(nodes.c.status == "offline"))
        .scalars()
        .all()
    )


# --- what consoles are told --------------------------------------------------------------


def dispatcher_log_entry(session: Session, entry_id: int) -> Row[Any] | None:
    """One entry of the dispatcher's log (an admin table, read for consoles)."""
    return session.execute(select(log_messages).where(log_messages.c.id == entry_id)).first()


def set_template_preferences(session: Session, node_id: int, preferences: dict[str, Any]) -> None:
    """Stores all of a node's template preferences (the caller holds the node's row lock)."""
    update_node(session, node_id, template_preferences=preferences)
