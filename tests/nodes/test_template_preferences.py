"""Per-node template preferences through the real nodes API, and delivered
with the assignments of their template to a real agent session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services import app
from muster_services.core.database import Database
from muster_services.core.settings import Settings
from muster_services.jobs.templates import BLENDER_TEMPLATE_ID, COMMAND_LINE_TEMPLATE_ID
from tests.nodes.conftest import ProtocolAgent
from tests.render.test_render_loop import _assignment, _job
from tests.support import InProcessServer


def _set(
    stub: nodes_pb2_grpc.NodesServiceStub,
    node_id: int,
    template_id: int,
    values: dict[str, str],
    replace: bool = False,
) -> dict[str, str]:
    reply = stub.SetNodeTemplatePreferences(
        nodes_pb2.SetNodeTemplatePreferencesRequest(
            node_id=node_id, template_id=template_id, values=values, replace=replace
        )
    )
    assert reply.preferences.template_id == template_id
    return dict(reply.preferences.values)


def _get(
    stub: nodes_pb2_grpc.NodesServiceStub, node_id: int, template_id: int = 0
) -> list[tuple[int, dict[str, str]]]:
    reply = stub.GetNodeTemplatePreferences(
        nodes_pb2.GetNodeTemplatePreferencesRequest(node_id=node_id, template_id=template_id)
    )
    return [(p.template_id, dict(p.values)) for p in reply.preferences]


def _stored(db: Database, node_id: int) -> object:
    with db.transaction() as session:
        return session.execute(
            text("SELECT template_preferences FROM nodes WHERE id = :n"), {"n": node_id}
        ).scalar_one()


def _changes(db: Database, field: str) -> list[dict[str, Any]]:
    """The payloads of the node.changed events about `field`."""
    with db.transaction() as session:
        payloads = session.execute(
            text("SELECT payload FROM events WHERE topic = 'node.changed' ORDER BY id")
        ).scalars()
        return [dict(p) for p in payloads if p.get("field") == field]


def test_preferences_are_set_merged_replaced_and_read(
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
    channel: grpc.Channel,
    db: Database,
) -> None:
    agent = ProtocolAgent(channel, "prefs-a")
    agents.append(agent)
    node = agent.node_id
    assert _get(nodes_stub, node) == []
    assert _get(nodes_stub, node, 1001) == [(1001, {})]

    assert _set(nodes_stub, node, 1001, {"BLENDER_PATH": "/opt/blender/blender"}) == {
        "BLENDER_PATH": "/opt/blender/blender"
    }
    merged = _set(nodes_stub, node, 1001, {"THREADS": "8"})
    assert merged == {"BLENDER_PATH": "/opt/blender/blender", "THREADS": "8"}
    _set(nodes_stub, node, 1000, {"SHELL": "/bin/bash"})
    # An empty value removes its key.
    assert _set(nodes_stub, node, 1001, {"THREADS": ""}) == {"BLENDER_PATH": "/opt/blender/blender"}
    assert _get(nodes_stub, node) == [
        (1000, {"SHELL": "/bin/bash"}),
        (1001, {"BLENDER_PATH": "/opt/blender/blender"}),
    ]
    assert _stored(db, node) == {
        "1000": {"SHELL": "/bin/bash"},
        "1001": {"BLENDER_PATH": "/opt/blender/blender"},
    }
    assert _set(nodes_stub, node, 1001, {"THREADS": "4"}, replace=True) == {"THREADS": "4"}
    # Replaced by nothing: the template's entry goes.
    assert _set(nodes_stub, node, 1000, {}, replace=True) == {}
    assert _stored(db, node) == {"1001": {"THREADS": "4"}}
    changes = _changes(db, "template_preferences")
    assert [(c["node_id"], c["template_id"]) for c in changes] == [
        (node, 1001),
        (node, 1001),
        (node, 1000),
        (node, 1001),
        (node, 1001),
        (node, 1000),
    ]
    # Setting what is stored changes nothing and publishes nothing.
    assert _set(nodes_stub, node, 1001, {"THREADS": "4"}) == {"THREADS": "4"}
    assert len(_changes(db, "template_preferences")) == len(changes)


@pytest.mark.parametrize(
    ("node", "template_id", "values", "code", "message"),
    [
        (None, 0, {"A": "1"}, grpc.StatusCode.INVALID_ARGUMENT, "template_id"),
        (None, -3, {"A": "1"}, grpc.StatusCode.INVALID_ARGUMENT, "template_id"),
        (None, 1001, {"": "1"}, grpc.StatusCode.INVALID_ARGUMENT, "key is empty"),
        (None, 1001, {"  ": "1"}, grpc.StatusCode.INVALID_ARGUMENT, "key is empty"),
        (None, 1001, {"A": "x" * 4097}, grpc.StatusCode.INVALID_ARGUMENT, "4096"),
        (None, 1001, {f"K{i}": "v" for i in range(101)}, grpc.StatusCode.INVALID_ARGUMENT, "100"),
        (None, 1001, {"A": "a\x00b"}, grpc.StatusCode.INVALID_ARGUMENT, "NUL"),
        (987654, 1001, {"A": "1"}, grpc.StatusCode.NOT_FOUND, "987654"),
        (0, 1001, {"A": "1"}, grpc.StatusCode.INVALID_ARGUMENT, "node_id"),
    ],
)
def test_bad_input_is_refused_precisely_and_changes_nothing(
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
    channel: grpc.Channel,
    db: Database,
    node: int | None,
    template_id: int,
    values: dict[str, str],
    code: grpc.StatusCode,
    message: str,
) -> None:
    agent = ProtocolAgent(channel, "prefs-bad")
    agents.append(agent)
    _set(nodes_stub, agent.node_id, 1001, {"KEEP": "me"})
    with pytest.raises(grpc.RpcError) as caught:
        _set(nodes_stub, agent.node_id if node is None else node, template_id, values)
    assert caught.value.code() == code
    assert message in (caught.value.details() or "")
    assert _stored(db, agent.node_id) == {"1001": {"KEEP": "me"}}


def test_at_most_100_keys_once_merged(
    nodes_stub: nodes_pb2_grpc.NodesServiceStub, agents: list[ProtocolAgent], channel: grpc.Channel
) -> None:
    agent = ProtocolAgent(channel, "prefs-many")
    agents.append(agent)
    _set(nodes_stub, agent.node_id, 1001, {f"A{i}": "v" for i in range(60)})
    with pytest.raises(grpc.RpcError) as caught:
        _set(nodes_stub, agent.node_id, 1001, {f"B{i}": "v" for i in range(60)})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(_get(nodes_stub, agent.node_id, 1001)[0][1]) == 60
    # Replacing is judged on the result alone.
    assert len(_set(nodes_stub, agent.node_id, 1001, {"B": "v"} | {"A1": ""}, replace=True)) == 1


def test_a_user_reads_the_preferences_only_an_administrator_sets_them(
    nodes_server: InProcessServer, agents: list[ProtocolAgent], channel: grpc.Channel
) -> None:
    agent = ProtocolAgent(channel, "prefs-perm")
    agents.append(agent)
    admin = nodes_pb2_grpc.NodesServiceStub(channel)
    _set(admin, agent.node_id, 1001, {"BLENDER_PATH": "/opt/b"})
    with nodes_server.channel("bob", "user") as user_channel:
        user = nodes_pb2_grpc.NodesServiceStub(user_channel)
        assert _get(user, agent.node_id) == [(1001, {"BLENDER_PATH": "/opt/b"})]
        with pytest.raises(grpc.RpcError) as caught:
            _set(user, agent.node_id, 1001, {"BLENDER_PATH": "/tmp/evil"})
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _get(admin, agent.node_id, 1001) == [(1001, {"BLENDER_PATH": "/opt/b"})]
    with pytest.raises(grpc.RpcError) as caught:
        _get(admin, 987654)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture
def farm(db: Database) -> Iterator[InProcessServer]:
    components = app.build_components(list(app.SERVICE_NAMES), db, Settings())
    with InProcessServer(components) as server:
        yield server


def test_an_assignment_carries_the_node_values_of_its_template(
    farm: InProcessServer, agents: list[ProtocolAgent]
) -> None:
    with farm.channel() as channel:
        nodes = nodes_pb2_grpc.NodesServiceStub(channel)
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        first = ProtocolAgent(channel, "prefs-render-a")
        second = ProtocolAgent(channel, "prefs-render-b")
        agents.extend([first, second])
        values = {"SHELL": "/bin/dash", "N": "1"}
        _set(nodes, first.node_id, COMMAND_LINE_TEMPLATE_ID, values)
        _set(nodes, first.node_id, BLENDER_TEMPLATE_ID, {"BLENDER_PATH": "/opt/blender"})
        _set(nodes, second.node_id, BLENDER_TEMPLATE_ID, {"BLENDER_PATH": "/opt/b2"})
        jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=_job(2)))
        got = {agent.node_id: _assignment(agent) for agent in (first, second)}
        assert {a.template_id for a in got.values()} == {COMMAND_LINE_TEMPLATE_ID}
        # Each node's own values of that template, not of another template.
        assert dict(got[first.node_id].template_preferences) == values
        assert dict(got[second.node_id].template_preferences) == {}
