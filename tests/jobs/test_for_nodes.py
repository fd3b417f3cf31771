"""The Assignment messages the jobs domain builds for the nodes service
(muster_services/jobs/for_nodes.py): the job's part is built once per job and
platform and kept while the job's values are the same; an edit of the job,
another platform or a new configuration gives the new values."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from sqlalchemy import text

from muster_proto.agent.v1 import agent_pb2
from muster_services.core.database import Database
from muster_services.jobs import messages
from muster_services.jobs.domain import Attribute
from muster_services.jobs.for_nodes import ReferenceCache, build_assignments
from muster_services.jobs.service import JobsService
from tests.jobs.conftest import SPEC, assign
from tests.support import busy_farm, executed


def _built(
    db: Database, nodes: list[int], reference: ReferenceCache
) -> dict[int, agent_pb2.Assignment]:
    """The Assignment messages of build_assignments, by node."""
    return {node: built.message for node, built in build_assignments(db, nodes, reference).items()}


def _node(db: Database, name: str, platform: str, preferences: str = "{}") -> int:
    with db.transaction() as session:
        return int(
            session.execute(
                text(
                    "INSERT INTO nodes (name, host_name, platform, status, session_id,"
                    " template_preferences) VALUES (:n, :n, :p, 'idle', 'live',"
                    " CAST(:prefs AS jsonb)) RETURNING id"
                ),
                {"n": name, "p": platform, "prefs": preferences},
            ).scalar_one()
        )


def _farm(db: Database, service: JobsService) -> tuple[int, list[int]]:
    """A Blender job (scene path mapped per platform) with chunks 1-3 on two
    Linux nodes and a Windows one; the repository of its path."""
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO repositories (name, windows_path, linux_path, macos_path)"
                " VALUES ('shows', 'S:\\', '/shows/', '/Volumes/shows/')"
            )
        )
    job_id = int(service.queue.submit_job(SPEC).id)
    nodes = [
        _node(db, "lin1", "linux"),
        _node(db, "lin2", "linux", json.dumps({str(SPEC.template_id): {"gpu": "1"}})),
        _node(db, "win1", "windows"),
    ]
    for chunk, node in enumerate(nodes, start=1):
        assign(db, job_id, chunk, node)
    return job_id, nodes


def _scene(message: agent_pb2.Assignment) -> str:
    (scene,) = [a.string_value for a in message.job.attributes if a.name == "job_file"]
    return scene


def test_each_assignment_has_its_chunk_and_its_platforms_job(
    db: Database, service: JobsService
) -> None:
    job_id, (lin1, lin2, win1) = _farm(db, service)
    built = _built(db, [lin1, lin2, win1], ReferenceCache())
    assert [built[n].chunk_id for n in (lin1, lin2, win1)] == [1, 2, 3]
    assert [built[n].chunk.node_id for n in (lin1, lin2, win1)] == [lin1, lin2, win1]
    assert len({built[n].fencing_token for n in (lin1, lin2, win1)}) == 3
    assert all(built[n].job.id == job_id for n in built)
    assert _scene(built[lin1]) == _scene(built[lin2]) == "/shows/demo/shot.blend"
    assert _scene(built[win1]) == "S:\\demo\\shot.blend"
    # The node's own preferences, not its neighbour's (the part is shared).
    assert dict(built[lin2].template_preferences) == {"gpu": "1"}
    assert dict(built[lin1].template_preferences) == {}


def test_kept_parts_build_what_a_fresh_build_does(db: Database, service: JobsService) -> None:
    _, nodes = _farm(db, service)
    reference = ReferenceCache()
    first = _built(db, nodes, reference)
    again = _built(db, nodes, reference)  # the parts kept
    fresh = _built(db, nodes, ReferenceCache())
    for node in nodes:
        assert again[node] == first[node] == fresh[node]
        # Copies: changing one message changes no other.
    again[nodes[0]].job.name = "changed"
    assert _built(db, nodes, reference)[nodes[0]].job.name == SPEC.name


def test_an_edited_job_is_built_again(db: Database, service: JobsService) -> None:
    job_id, (lin1, _, win1) = _farm(db, service)
    reference = ReferenceCache()
    _built(db, [lin1, win1], reference)
    moved = Attribute("job_file", "string", "/shows/other/shot.blend", substitute_paths=True)
    service.queue.update_job(
        job_id,
        dataclasses.replace(SPEC, priority=77, attributes=(moved,)),
        ["priority", "attributes"],
    )
    built = _built(db, [lin1, win1], reference)
    assert built[lin1].job.priority == built[win1].job.priority == 77
    assert _scene(built[lin1]) == "/shows/other/shot.blend"
    assert _scene(built[win1]) == "S:\\other\\shot.blend"


def test_a_new_configuration_is_built_with(db: Database, service: JobsService) -> None:
    _, (lin1, _, _) = _farm(db, service)
    reference = ReferenceCache()
    assert _built(db, [lin1], reference)[lin1].timeout_seconds == 0
    with db.transaction() as session:
        session.execute(
            text(
                "UPDATE dispatcher_config SET runtime_config = runtime_config"
                ' || \'{"abort_process_on_chunk_timeout": true,'
                ' "chunk_timeout_seconds": 600}\'::jsonb WHERE id = 1'
            )
        )
    reference.invalidate()  # as a config.changed event does
    assert _built(db, [lin1], reference)[lin1].timeout_seconds == 600


def test_the_kept_part_is_keyed_on_every_column_the_job_message_reads() -> None:
    """job_for_node reads only NODE_JOB_COLUMNS of the row: a column it read
    beyond them could change without the kept part being built again."""
    read: set[str] = set()

    class Recorder:
        def __getattr__(self, name: str) -> Any:
            read.add(name)
            return {"kind": "job", "packet_type": "", "depend_mode": "none"}.get(
                name, "skip_none" if name == "logs_error_check" else None
            )

    messages.job_for_node(Recorder(), [])
    assert read <= set(messages.NODE_JOB_COLUMNS), read - set(messages.NODE_JOB_COLUMNS)
    assert {"priority", "attributes", "environment", "name"} <= set(messages.NODE_JOB_COLUMNS)


def test_a_batch_looks_its_nodes_and_chunks_up_by_key_on_a_large_farm(
    db: Database, service: JobsService
) -> None:
    """The read behind each batch of deliveries joined every node and every
    chunk of the farm (the planner hashed a scan of both while they were
    small enough to look cheap: 14 ms a batch on a farm of 10,000 nodes,
    where the lookups by key take 1 ms); each assignment's node and chunk
    are now found by key."""
    job_id = int(service.queue.submit_job(dataclasses.replace(SPEC, end_frame=3_000)).id)
    nodes = busy_farm(db, job_id, 3_000)
    wanted = [n for i, n in enumerate(nodes, start=1) if i % 10][:250]
    with executed(db, explain="FROM chunk_assignments") as plans:
        built = _built(db, wanted, ReferenceCache())
    assert sorted(built) == sorted(wanted)
    assert [built[n].chunk_id for n in wanted] == [nodes.index(n) + 1 for n in wanted]
    (plan,) = plans
    assert "Seq Scan on nodes" not in plan and "Seq Scan on chunks" not in plan, plan


def test_each_assignment_says_whether_its_nodes_realtime_log_is_on(
    db: Database, service: JobsService
) -> None:
    """The relay forwards a run's lines to consoles by this switch, read with
    the assignment: the command that switches it on may reach the node's
    stream after the chunk's first lines (muster_services/nodes/delivery.py)."""
    _, (lin1, lin2, win1) = _farm(db, service)
    with db.transaction() as session:
        session.execute(text("UPDATE nodes SET realtime_log = true WHERE id = :id"), {"id": lin2})
    built = build_assignments(db, [lin1, lin2, win1], ReferenceCache())
    assert {n: b.realtime_log for n, b in built.items()} == {lin1: False, lin2: True, win1: False}
