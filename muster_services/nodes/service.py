"""Use cases of the nodes service: the registry, node actions, commands.

Every use case runs in one transaction and publishes its event in it. A
command for an agent is a row in node_commands plus a `node.command` event:
whichever nodes-service replica holds that agent's stream delivers it, and
the agent's answer is merged into the row, where the caller waits for it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from muster_services.admin.configuration import read_configuration
from muster_services.admin.store import pools_by_member, pools_of
from muster_services.core.bus import publish, publish_change, publish_many
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from muster_services.core.paging import Page, page_of, page_request
from muster_services.jobs import for_nodes
from muster_services.nodes import store as repo
from muster_services.nodes import topics
from muster_services.nodes.domain import (
    MAX_CODE_LENGTH,
    MAX_CODE_TIMEOUT_SECONDS,
    MAX_MESSAGE_LENGTH,
    MAX_NOTES_LENGTH,
    Registration,
    status_for,
)
from muster_services.nodes.enrollment import check_agent_identity

# Commands not delivered within this time are dropped at the next connect.
COMMAND_MAX_AGE_SECONDS = 300.0
# A node failing a job this many times is excluded from it, and forgiven
# after this long (Afanasy's defaults), until the configuration says otherwise.
EXCLUSION_FAILURES = 3
EXCLUSION_FORGIVE_SECONDS = 5 * 3600.0


def new_replica_id() -> str:
    """Identifies this process among nodes-service replicas."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class RunningChunk:
    job_id: int
    chunk_id: int
    fencing_token: int


# The run outcomes that count toward a node's exclusion from a job.
COUNTED_FAILURES = frozenset({"failed", "timed_out"})


@dataclass(frozen=True)
class NodeView:
    """A node row with what the API shows beside it."""

    node: Row[Any]
    excluded_template_ids: list[int]
    excluded_job_ids: list[int]
    assignment: Row[Any] | None
    # Declared by the agent, then given by an administrator's pools.
    pools: list[str]


def _views(session: Session, rows: list[Row[Any]]) -> list[NodeView]:
    ids = [r.id for r in rows]
    excluded = repo.exclusions(session, ids)
    running = for_nodes.nodes_assignments(session, ids)
    members = pools_by_member(session)
    return [
        NodeView(
            r, *excluded[r.id], running.get(r.id), pools_of(members, r.pools, r.name, r.host_name)
        )
        for r in rows
    ]


def _event(session: Session, topic: str, node_id: int, **payload: Any) -> None:
    """A change to a node, stamped with its caller, keyed by the node."""
    publish_change(session, topic, {"node_id": node_id, **payload}, key=str(node_id))


class NodesService:
    def __init__(self, db: Database, replica: str) -> None:
        self.db = db
        self.replica = replica

    # --- agent sessions ---------------------------------------------------------------

    def register(
        self, reg: Registration, session_id: str, running: RunningChunk | None
    ) -> tuple[Row[Any], list[Row[Any]], int]:
        """Record an agent instance's (re)connection; returns its node row, the
        commands still waiting for it, and the fencing token of the node's live
        assignment as this registration found it (0: none): the one the agent
        must confirm. One given after it is new, for this stream to deliver
        (muster_services/nodes/delivery.py, reconcile)."""
        reg = reg.validated()
        check_agent_identity(current_caller(), reg.host_name, reg.instance_number)
        status = "rendering" if running else "idle"
        with self.db.transaction() as session:
            config = read_configuration(session)
            if config.instance_identity == "ip_address" and reg.ip_address:
                # The node is this address's instance, whatever the host calls itself.
                repo.rename_host_of_address(
                    session, reg.ip_address, reg.instance_number, reg.host_name
                )
            node = repo.upsert_node(session, reg, self.replica, session_id, status)
            if config.remove_orphaned_instances and reg.instance_count:
                for orphan in repo.remove_orphans(session, reg.host_name, reg.instance_count):
                    _event(session, topics.NODE_DELETED, orphan, reason="orphaned instance")
            pending = repo.undelivered_commands(session, node.id, COMMAND_MAX_AGE_SECONDS)
            owed = for_nodes.node_live_token(session, node.id)
            _event(session, topics.NODE_REGISTERED, node.id, name=node.name, replica=self.replica)
        return node, pending, owed

    def disconnected(self, node_id: int, session_id: str) -> None:
        with self.db.transaction() as session:
            repo.mark_disconnected(session, node_id, session_id)

    def heartbeats(self, streams: dict[int, str], busy: set[int] | None = None) -> list[int]:
        """Record heartbeats (node id -> session id of the stream that sent them;
        `busy`: the nodes whose agent says it runs a chunk). Returns the nodes
        that came back from offline (declared lost while their stream lived)."""
        with self.db.relaxed_transaction() as session:  # rewritten every second
            revived = repo.touch_heartbeats(session, self.replica, streams, busy or set())
            for node_id in revived:
                _event(session, topics.NODE_REGISTERED, node_id, replica=self.replica)
        return revived

    def sweep_lost(self, timeout_seconds: float) -> list[int]:
        """Mark nodes silent for longer than the timeout offline (node.lost)."""
        with self.db.transaction() as session:
            lost = repo.mark_lost(session, timeout_seconds)
            for node in lost:
                _event(session, topics.NODE_LOST, node.id, name=node.name)
        return [n.id for n in lost]

    def record_chunk_end(
        self,
        session: Session,
        node_id: int,
        job_id: int,
        outcome: str,
        threshold: int = EXCLUSION_FAILURES,
        forgive_seconds: float = EXCLUSION_FORGIVE_SECONDS,
    ) -> None:
        """A node that fails a job `threshold` times is kept off it for a while."""
        if outcome not in COUNTED_FAILURES or threshold <= 0 or not node_id:
            return
        failures = repo.count_job_failure(session, node_id, job_id)
        if failures >= threshold:
            repo.exclude_node_from_job(session, node_id, job_id, forgive_seconds)
            _event(session, topics.NODE_EXCLUDED, node_id, job_id=job_id, failures=failures)

    def hold_for_failures(self, node_ids: list[int]) -> None:
        """Nodes whose failed runs are about to be recorded stay off the
        scheduler until set_idle has counted the failures (and maybe excluded
        the node from the job): a node is free once its assignment is gone,
        and the failure is counted after that (set_idle)."""
        with self.db.transaction() as session:
            repo.hold_rendering(session, node_ids)

    def set_idle(
        self,
        node_ids: list[int],
        ended: Sequence[tuple[int, int, str]] = (),
        exclusion: tuple[int, float] = (EXCLUSION_FAILURES, EXCLUSION_FORGIVE_SECONDS),
    ) -> None:
        """Nodes whose chunk ended and that hold no new one are idle (or paused)
        again; one transaction and one wake-up of the scheduler for all of them.

        `ended` (node, job, outcome) counts failures first, in the same
        transaction: a node that just failed a job for the last time allowed
        is excluded before the scheduler can see it idle and give it the job
        again.
        """
        with self.db.transaction() as session:
            for node_id, job_id, outcome in ended:
                self.record_chunk_end(session, node_id, job_id, outcome, *exclusion)
            # A node shows rendering while it holds its assignment (SHOWN_STATUS):
            # only a node stored rendering (its agent ran a stale chunk) is written.
            repo.release_rendering(session, node_ids)
            idle = repo.idle_of(session, node_ids)
            publish_many(
                session,
                [
                    (topics.NODE_IDLE, {"node_id": n, **current_caller().stamp()}, str(n))
                    for n in idle
                ],
            )

    def publish_log(self, node_id: int, log: Any) -> None:
        """Forward a node's render log lines to consoles (its realtime log is on)."""
        with self.db.transaction() as session:
            publish(
                session,
                topics.LOG_CHUNK,
                {
                    "node_id": node_id,
                    "job_id": log.job_id,
                    "chunk_id": log.chunk_id,
                    "lines": [{"text": line.text, "stream": line.stream} for line in log.lines],
                    "actor": "dispatcher",
                },
                key=str(node_id),
            )

    def offline_with_chunks(self) -> list[int]:
        """Offline nodes that still hold live assignments (their chunks need releasing)."""
        with self.db.transaction() as session:
            return repo.offline_nodes_with_assignments(session)

    def command_delivered(self, command_id: int) -> None:
        with self.db.transaction() as session:
            repo.mark_command_delivered(session, command_id)

    def command_answered(self, command_id: int, result: dict[str, Any], acknowledge: bool) -> None:
        with self.db.transaction() as session:
            repo.record_command_result(session, command_id, result, acknowledge)

    def command(self, command_id: int) -> Row[Any] | None:
        with self.db.transaction() as session:
            return repo.get_command(session, command_id)

    def command_for_request(self, request_id: str) -> int | None:
        """The run-code command an agent's PythonCodeResult answers."""
        with self.db.transaction() as session:
            return repo.run_code_command(session, request_id)

    # --- reads ------------------------------------------------------------------------------

    def get(self, node_id: int) -> NodeView:
        with self.db.transaction() as session:
            return _views(session, [self._existing(session, node_id)])[0]

    def find(self, name: str) -> NodeView:
        if not name.strip():
            raise InvalidArgument("name: must not be empty")
        with self.db.transaction() as session:
            node = repo.find_node(session, name.strip())
            if node is None:
                raise NotFound(f"no node is named {name!r}")
            return _views(session, [node])[0]

    def page(
        self, page_size: int, page_token: str, pool: str, statuses: list[str], platform: str
    ) -> Page[NodeView]:
        filters = {"pool": pool, "statuses": sorted(statuses), "platform": platform}
        page = page_request(page_size, page_token, filters)
        after = int(page.after) if isinstance(page.after, int) else 0
        with self.db.transaction() as session:
            rows = page_of(
                repo.list_nodes(session, after, page.size + 1, pool, statuses, platform),
                page,
                lambda row: row.id,
            )
            return Page(_views(session, rows.items), rows.next_page_token)

    @staticmethod
    def _existing(session: Session, node_id: int, lock: bool = False) -> Row[Any]:
        if node_id <= 0:
            raise InvalidArgument(f"node_id: must be a positive id, got {node_id}")
        node = repo.get_node(session, node_id, lock=lock)
        if node is None:
            raise NotFound(f"node {node_id} does not exist")
        return node

    # --- node actions ---------------------------------------------------------------------

    def _queue_command(
        self,
        session: Session,
        node: Row[Any],
        kind: str,
        payload: dict[str, Any],
        actor: str = "",
    ) -> int:
        """`actor`: who asked, when not the caller (an event's actor)."""
        actor = actor or current_caller().label
        command_id = repo.insert_command(session, node.id, kind, payload, actor)
        publish(
            session,
            topics.NODE_COMMAND,
            {"node_id": node.id, "command_id": command_id, "kind": kind, "actor": actor},
            key=str(node.id),
        )
        return command_id

    @staticmethod
    def _online(node: Row[Any]) -> bool:
        return node.status != "offline" and node.session_id is not None

    def _require_online(self, node: Row[Any]) -> None:
        if not self._online(node):
            raise FailedPrecondition(f"node {node.id} ({node.name}) is offline")

    def set_paused(self, node_id: int, paused: bool) -> None:
        with self.db.transaction() as session:
            node = self._existing(session, node_id, lock=True)
            rendering = node.status == "rendering"
            status = node.status if node.status == "offline" else status_for(rendering, paused)
            repo.update_node(session, node_id, paused=paused, status=status)
            if self._online(node):
                self._queue_command(session, node, "pause" if paused else "resume", {})
            _event(session, topics.NODE_PAUSED if paused else topics.NODE_RESUMED, node_id)

    def set_notes(self, node_id: int, notes: str) -> None:
        if len(notes) > MAX_NOTES_LENGTH:
            raise InvalidArgument(f"notes: longer than {MAX_NOTES_LENGTH} characters")
        with self.db.transaction() as session:
            self._existing(session, node_id, lock=True)
            repo.update_node(session, node_id, notes=notes)
            _event(session, topics.NODE_CHANGED, node_id, field="notes")

    def set_process_priority(self, node_id: int, priority: str) -> None:
        with self.db.transaction() as session:
            node = self._existing(session, node_id, lock=True)
            self._require_online(node)
            repo.update_node(session, node_id, process_priority=priority)
            self._queue_command(session, node, "set_process_priority", {"priority": priority})
            _event(session, topics.NODE_CHANGED, node_id, field="process_priority")

    def set_realtime_log(self, node_id: int, enabled: bool) -> None:
        with self.db.transaction() as session:
            node = self._existing(session, node_id, lock=True)
            self._require_online(node)
            repo.update_node(session, node_id, realtime_log=enabled)
            self._queue_command(session, node, "set_realtime_log", {"enabled": enabled})
            _event(session, topics.NODE_CHANGED, node_id, field="realtime_log")

    def simple_command(self, node_id: int, kind: str, payload: dict[str, Any]) -> int:
        """A command that needs the node online and changes nothing stored."""
        with self.db.transaction() as session:
            node = self._existing(session, node_id)
            self._require_online(node)
            return self._queue_command(session, node, kind, payload)

    def run_python_code(self, node_id: int, code: str, timeout_seconds: int) -> int:
        if not code.strip():
            raise InvalidArgument("code: must not be empty")
        if len(code) > MAX_CODE_LENGTH:
            raise InvalidArgument(f"code: longer than {MAX_CODE_LENGTH} characters")
        if timeout_seconds < 0 or timeout_seconds > MAX_CODE_TIMEOUT_SECONDS:
            raise InvalidArgument(
                f"timeout_seconds: must be within 0..{MAX_CODE_TIMEOUT_SECONDS},"
                f" got {timeout_seconds}"
            )
        return self.simple_command(
            node_id,
            "run_python_code",
            {"request_id": uuid.uuid4().hex, "code": code, "timeout_seconds": timeout_seconds},
        )

    def remove_template_exclusions(self, node_id: int, template_id: int) -> None:
        if template_id < 0:
            raise InvalidArgument(f"template_id: must not be negative, got {template_id}")
        with self.db.transaction() as session:
            self._existing(session, node_id)
            if repo.remove_template_exclusions(session, node_id, template_id):
                _event(session, topics.NODE_EXCLUSIONS_PURGED, node_id, template_id=template_id)

    def remove_job_exclusions(self, node_id: int, job_id: int) -> None:
        if job_id < 0:
            raise InvalidArgument(f"job_id: must not be negative, got {job_id}")
        with self.db.transaction() as session:
            self._existing(session, node_id)
            if repo.remove_job_exclusions(session, node_id, job_id):
                _event(session, topics.NODE_EXCLUSIONS_PURGED, node_id, job_id=job_id)

    def delete(self, node_id: int) -> str | None:
        """Remove a node's registration; returns its live session id, if any."""
        with self.db.transaction() as session:
            node = self._existing(session, node_id, lock=True)
            if node.status == "rendering" or for_nodes.node_assignment(session, node_id):
                raise FailedPrecondition(
                    f"node {node_id} ({node.name}) is rendering: kill or wait for its chunk first"
                )
            repo.delete_node(session, node_id)
            _event(session, topics.NODE_DELETED, node_id, name=node.name)
            return str(node.session_id) if node.session_id else None

    def send_message(self, node_id: int, template_id: int, message: str, broadcast: bool) -> int:
        if len(message) > MAX_MESSAGE_LENGTH:
            raise InvalidArgument(f"message: longer than {MAX_MESSAGE_LENGTH} characters")
        payload = {
            "template_id": template_id,
            "message": message,
            "sender": current_caller().label,
        }
        if not broadcast:
            self.simple_command(node_id, "custom_message", payload)
            return 1
        with self.db.transaction() as session:
            targets = repo.online_node_ids(session)
            for target in targets:
                node = repo.get_node(session, target)
                if node is not None:
                    self._queue_command(session, node, "custom_message", payload)
            return len(targets)

    def kill_node(self, node_id: int, follow_up: str) -> int:
        with self.db.transaction() as session:
            node = self._existing(session, node_id, lock=True)
            self._require_online(node)
            assignment = for_nodes.node_assignment(session, node_id)
            if assignment is None:
                raise FailedPrecondition(f"node {node_id} ({node.name}) runs no chunk")
            if follow_up == "pause":
                repo.update_node(session, node_id, paused=True)
            return self._queue_kill(session, node, assignment, follow_up)

    def kill_job(self, job_id: int, follow_up: str) -> list[int]:
        if job_id <= 0:
            raise InvalidArgument(f"job_id: must be a positive id, got {job_id}")
        with self.db.transaction() as session:
            owner = for_nodes.job_owner(session, job_id)
            if owner is None:
                raise NotFound(f"job {job_id} does not exist")
            caller = current_caller()
            if not caller.may_act_for(owner):
                raise PermissionDenied(
                    f"job {job_id} belongs to {owner!r}; {caller.describe()}:"
                    " only its owner or an administrator kills its processes"
                )
            killed = []
            for assignment in for_nodes.job_assignments(session, job_id):
                node = repo.get_node(session, assignment.node_id, lock=True)
                if node is None or not self._online(node):
                    continue
                if follow_up == "pause":
                    repo.update_node(session, node.id, paused=True)
                self._queue_kill(session, node, assignment, follow_up)
                killed.append(node.id)
            return killed

    def kill_requested(self, session: Session, payload: dict[str, Any]) -> None:
        """chunk.kill_requested (chunkSetStatus on a running chunk, in the
        consumer's transaction): the node's agent is told to kill the process;
        the chunk takes the status asked for once the kill is confirmed (or
        the node is declared lost). Nothing when the chunk is no longer the
        node's live assignment, or the node is offline."""
        node = repo.get_node(session, int(payload["node_id"]), lock=True)
        if node is None or not self._online(node):
            return
        live = for_nodes.node_assignment(session, int(node.id))
        if (
            live is None
            or live.state != "killing"
            or (int(live.job_id), int(live.chunk_number))
            != (int(payload["job_id"]), int(payload["chunk_id"]))
        ):
            return
        actor = str(payload.get("actor") or current_caller().label)
        self._queue_kill(session, node, live, "continue", actor)

    def _queue_kill(
        self,
        session: Session,
        node: Row[Any],
        assignment: Row[Any],
        follow_up: str,
        actor: str = "",
    ) -> int:
        """A kill_process command for the node's live assignment."""
        return self._queue_command(
            session,
            node,
            "kill_process",
            {
                "job_id": assignment.job_id,
                "chunk_id": assignment.chunk_number,
                "fencing_token": assignment.fencing_token,
                "follow_up": follow_up,
            },
            actor,
        )
