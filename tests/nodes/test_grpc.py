"""The nodes service over gRPC, with agents speaking the real protocol."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services.core.bus import publish
from muster_services.core.database import Database
from muster_services.nodes.service import NodesService
from muster_services.nodes.timings import heartbeat_flush_for, lease_for
from tests.nodes.conftest import ProtocolAgent
from tests.support import agent_auth


def _code(call: Any) -> tuple[str, str]:
    try:
        call()
    except grpc.RpcError as err:
        return err.code().name, err.details() or ""
    return "OK", ""


def _connect(
    channel: grpc.Channel, agents: list[ProtocolAgent], host: str, instance: int = 0
) -> ProtocolAgent:
    agent = ProtocolAgent(channel, host, instance)
    agents.append(agent)
    return agent


def test_an_agent_registers_and_is_listed_idle_under_its_host_name(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
) -> None:
    first = _connect(channel, agents, "render-01")
    second = _connect(channel, agents, "render-01", instance=1)
    assert first.node_id != second.node_id
    assert first.accepted.node_name == "render-01"
    assert second.accepted.node_name == "render-01-1"
    assert first.accepted.heartbeat_interval_seconds > 0

    node = nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=first.node_id)).node
    assert node.status == nodes_pb2.NODE_STATUS_IDLE
    assert node.platform == common_pb2.PLATFORM_LINUX
    assert node.cpu_cores == 8
    found = nodes_stub.FindNode(nodes_pb2.FindNodeRequest(name="RENDER-01-1")).node
    assert found.id == second.node_id

    page = nodes_stub.ListNodes(nodes_pb2.ListNodesRequest(page_size=1))
    assert [n.id for n in page.nodes] == [first.node_id]
    rest = nodes_stub.ListNodes(
        nodes_pb2.ListNodesRequest(page_size=1, page_token=page.next_page_token)
    )
    assert [n.id for n in rest.nodes] == [second.node_id]
    assert rest.next_page_token == ""


def test_a_reconnecting_agent_keeps_its_node(
    channel: grpc.Channel, agents: list[ProtocolAgent]
) -> None:
    first = _connect(channel, agents, "render-02")
    first.close()
    again = _connect(channel, agents, "render-02")
    assert again.node_id == first.node_id


def test_pause_and_resume_reach_the_agent_and_change_the_status(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
) -> None:
    agent = _connect(channel, agents, "render-03")
    nodes_stub.PauseNode(nodes_pb2.PauseNodeRequest(node_id=agent.node_id))
    assert agent.next_command().WhichOneof("command") == "pause"
    node = nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=agent.node_id)).node
    assert (node.status, node.paused) == (nodes_pb2.NODE_STATUS_PAUSED, True)

    nodes_stub.ResumeNode(nodes_pb2.ResumeNodeRequest(node_id=agent.node_id))
    assert agent.next_command().WhichOneof("command") == "resume"
    node = nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=agent.node_id)).node
    assert (node.status, node.paused) == (nodes_pb2.NODE_STATUS_IDLE, False)


def test_python_code_runs_on_the_agent_and_its_output_comes_back(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
) -> None:
    agent = _connect(channel, agents, "render-04")
    future = nodes_stub.RunNodePythonCode.future(
        nodes_pb2.RunNodePythonCodeRequest(node_id=agent.node_id, code="print(6*7)")
    )
    command = agent.next_command()
    assert command.run_python_code.code == "print(6*7)"
    agent.send(command_ack=agent_pb2.CommandAck(command_id=command.command_id, success=True))
    agent.send(
        python_code_result=agent_pb2.PythonCodeResult(
            request_id=command.run_python_code.request_id, output="42\n", exit_code=0
        )
    )
    reply = future.result(timeout=20)
    assert (reply.output, reply.exit_code, reply.timed_out) == ("42\n", 0, False)


def test_a_system_event_the_node_refuses_is_failed_precondition_with_its_reason(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
) -> None:
    agent = _connect(channel, agents, "render-05")
    future = nodes_stub.SendNodeSystemEvent.future(
        nodes_pb2.SendNodeSystemEventRequest(
            node_id=agent.node_id, event=common_pb2.SYSTEM_EVENT_REBOOT
        )
    )
    command = agent.next_command()
    assert command.system_event.event == common_pb2.SYSTEM_EVENT_REBOOT
    agent.send(
        command_ack=agent_pb2.CommandAck(
            command_id=command.command_id,
            success=False,
            error_message="system event reboot is not configured on this node",
        )
    )
    with pytest.raises(grpc.RpcError) as error:
        future.result(timeout=20)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not configured" in (error.value.details() or "")


def test_messages_reach_one_node_or_every_online_node(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
) -> None:
    one, two = _connect(channel, agents, "render-06"), _connect(channel, agents, "render-07")
    nodes_stub.SendNodeMessage(
        nodes_pb2.SendNodeMessageRequest(node_id=one.node_id, template_id=3, message="hi")
    )
    command = one.next_command()
    assert (command.custom_message.template_id, command.custom_message.message) == (3, "hi")
    reply = nodes_stub.SendNodeMessage(
        nodes_pb2.SendNodeMessageRequest(message="all", broadcast=True)
    )
    assert reply.recipients_count == 2
    assert one.next_command().custom_message.message == "all"
    assert two.next_command().custom_message.message == "all"


def test_actions_on_offline_or_unknown_nodes_are_refused_and_change_nothing(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
    db: Database,
) -> None:
    agent = _connect(channel, agents, "render-08")
    node_id = agent.node_id
    with db.transaction() as session:
        session.execute(text("UPDATE nodes SET status = 'offline', session_id = NULL"))

    code, message = _code(
        lambda: nodes_stub.SetNodeProcessPriority(
            nodes_pb2.SetNodeProcessPriorityRequest(
                node_id=node_id, process_priority=common_pb2.PROCESS_PRIORITY_HIGH
            )
        )
    )
    assert code == "FAILED_PRECONDITION" and "offline" in message
    node = nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=node_id)).node
    assert node.process_priority == common_pb2.PROCESS_PRIORITY_NORMAL

    # Notes and pause are stored for offline nodes.
    nodes_stub.SetNodeNotes(nodes_pb2.SetNodeNotesRequest(node_id=node_id, notes="fan noisy"))
    assert nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=node_id)).node.notes == "fan noisy"

    assert _code(lambda: nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=999_999)))[0] == (
        "NOT_FOUND"
    )
    assert _code(lambda: nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=-1)))[0] == (
        "INVALID_ARGUMENT"
    )
    assert _code(lambda: nodes_stub.FindNode(nodes_pb2.FindNodeRequest(name="nope")))[0] == (
        "NOT_FOUND"
    )
    assert (
        _code(
            lambda: nodes_stub.KillNodeProcess(nodes_pb2.KillNodeProcessRequest(node_id=node_id))
        )[0]
        == "INVALID_ARGUMENT"
    )
    code, message = _code(
        lambda: nodes_stub.RunNodePythonCode(
            nodes_pb2.RunNodePythonCodeRequest(node_id=node_id, code="   ")
        )
    )
    assert code == "INVALID_ARGUMENT" and "code" in message


def test_kill_on_a_node_that_runs_nothing_is_failed_precondition(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
) -> None:
    agent = _connect(channel, agents, "render-09")
    code, message = _code(
        lambda: nodes_stub.KillNodeProcess(
            nodes_pb2.KillNodeProcessRequest(
                node_id=agent.node_id, follow_up=common_pb2.KILL_FOLLOW_UP_CONTINUE
            )
        )
    )
    assert code == "FAILED_PRECONDITION" and "runs no chunk" in message


def test_removing_a_registration_ends_the_agent_stream(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
) -> None:
    agent = _connect(channel, agents, "render-10")
    nodes_stub.DeleteNode(nodes_pb2.DeleteNodeRequest(node_id=agent.node_id))
    assert (
        _code(lambda: nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=agent.node_id)))[0]
        == "NOT_FOUND"
    )
    agent._reader.join(10)
    assert not agent._reader.is_alive()


def test_declared_and_administered_pools_show_on_the_node_and_filter_the_list(
    db: Database,
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
) -> None:
    gpu = ProtocolAgent(channel, "gpu-box", pools=("GPU", "fast"))
    plain = ProtocolAgent(channel, "plain-box")
    agents.extend([gpu, plain])
    with db.transaction() as session:
        pool = session.execute(
            text("INSERT INTO pools (name) VALUES ('gpu') RETURNING id")
        ).scalar_one()
        session.execute(
            text("INSERT INTO pool_members (pool_id, node_name) VALUES (:p, 'PLAIN-BOX')"),
            {"p": pool},
        )
    node = nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=gpu.node_id)).node
    assert list(node.pools) == ["GPU", "fast"]  # "gpu" is the same pool, listed once
    node = nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=plain.node_id)).node
    assert list(node.pools) == ["gpu"]

    def listed(pool: str) -> set[int]:
        return {n.id for n in nodes_stub.ListNodes(nodes_pb2.ListNodesRequest(pool=pool)).nodes}

    assert listed("Gpu") == {gpu.node_id, plain.node_id}
    assert listed("FAST") == {gpu.node_id}
    assert listed("none") == set()
    # A re-registration replaces what the agent declares.
    gpu.close()
    again = ProtocolAgent(channel, "gpu-box", pools=("cpu",))
    agents.append(again)
    assert again.node_id == gpu.node_id
    assert listed("fast") == set()
    assert listed("cpu") == {gpu.node_id}


@pytest.mark.parametrize(
    "pools", [("",), ("x" * 256,), ("bad\nname",), tuple(f"p{i}" for i in range(65))]
)
def test_unusable_declared_pools_are_refused(channel: grpc.Channel, pools: tuple[str, ...]) -> None:
    from muster_proto.agent.v1 import agent_pb2_grpc

    register = agent_pb2.Register(
        host_name="pool-host", platform=common_pb2.PLATFORM_LINUX, pools=pools
    )
    responses = agent_pb2_grpc.AgentServiceStub(channel).Session(
        iter([agent_pb2.SessionRequest(register=register)]), metadata=agent_auth("pool-host")
    )
    with pytest.raises(grpc.RpcError) as error:
        list(responses)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "register.pools" in (error.value.details() or "")


def test_a_session_must_start_with_register(channel: grpc.Channel) -> None:
    from muster_proto.agent.v1 import agent_pb2_grpc

    stub = agent_pb2_grpc.AgentServiceStub(channel)
    responses = stub.Session(
        iter([agent_pb2.SessionRequest(heartbeat=agent_pb2.Heartbeat())]),
        metadata=agent_auth("first-message-host"),
    )
    with pytest.raises(grpc.RpcError) as error:
        list(responses)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_silent_nodes_become_offline_after_the_timeout(
    channel: grpc.Channel,
    agents: list[ProtocolAgent],
    db: Database,
) -> None:
    agent = _connect(channel, agents, "render-11")
    service = NodesService(db, "test")
    assert service.sweep_lost(60) == []
    with db.transaction() as session:
        session.execute(text("UPDATE nodes SET last_heartbeat_at = now() - interval '2 minutes'"))
    assert service.sweep_lost(60) == [agent.node_id]
    with db.transaction() as session:
        status, topic = session.execute(
            text(
                "SELECT n.status, (SELECT topic FROM events ORDER BY id DESC LIMIT 1) FROM nodes n"
            )
        ).one()
    assert (status, topic) == ("offline", "node.lost")


def test_heartbeats_keep_a_node_fresh(
    channel: grpc.Channel, agents: list[ProtocolAgent], db: Database
) -> None:
    agent = _connect(channel, agents, "render-12")
    with db.transaction() as session:
        session.execute(text("UPDATE nodes SET last_heartbeat_at = now() - interval '1 hour'"))
    agent.send(heartbeat=agent_pb2.Heartbeat())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with db.transaction() as session:
            age = session.execute(
                text("SELECT extract(epoch FROM now() - last_heartbeat_at) FROM nodes")
            ).scalar_one()
        if age < 60:
            break
        time.sleep(0.2)
    assert age < 60


def test_a_recorded_heartbeat_is_answered_so_the_agent_s_lease_runs_on(
    channel: grpc.Channel, agents: list[ProtocolAgent], db: Database
) -> None:
    """The answer comes once the heartbeat is in the database (where the
    lost-node sweep reads), with the lease: shorter than the lost timeout."""
    agent = _connect(channel, agents, "render-13")
    assert 0 < agent.accepted.lease_seconds < 60  # the default lost timeout
    with db.transaction() as session:
        session.execute(text("UPDATE nodes SET last_heartbeat_at = now() - interval '1 hour'"))
    agent.send(heartbeat=agent_pb2.Heartbeat(sequence=7))
    agent.send(heartbeat=agent_pb2.Heartbeat(sequence=8))
    answer = agent.next(10)
    while answer.WhichOneof("message") != "heartbeat_recorded":
        answer = agent.next(10)
    with db.transaction() as session:
        age = session.execute(
            text("SELECT extract(epoch FROM now() - last_heartbeat_at) FROM nodes")
        ).scalar_one()
    assert age < 60
    # The newest heartbeat received is answered (a later flush may answer 8 alone).
    assert answer.heartbeat_recorded.sequence in (7, 8)
    assert answer.heartbeat_recorded.lease_seconds == agent.accepted.lease_seconds


def test_heartbeats_of_an_older_agent_get_no_answer(
    channel: grpc.Channel, agents: list[ProtocolAgent]
) -> None:
    agent = _connect(channel, agents, "render-14")
    agent.send(heartbeat=agent_pb2.Heartbeat())  # sequence 0
    time.sleep(2.5)  # past a flush
    assert agent.received.empty()


@pytest.mark.parametrize(
    ("lost", "lease", "flush"), [(3.0, 2.25, 0.3), (6.0, 5.25, 0.6), (60.0, 57.0, 1.0)]
)
def test_the_lease_ends_before_the_node_can_be_declared_lost(
    lost: float, lease: float, flush: float
) -> None:
    assert lease_for(lost) == pytest.approx(lease)
    assert heartbeat_flush_for(lost) == pytest.approx(flush)


def test_purging_exclusions_lets_the_node_take_the_work_again(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
    db: Database,
) -> None:
    agent = _connect(channel, agents, "render-13")
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO node_job_exclusions (node_id, job_id, failures, excluded_until)"
                " VALUES (:n, 5, 3, now() + interval '1 hour'),"
                " (:n, 6, 3, now() + interval '1 hour')"
            ),
            {"n": agent.node_id},
        )
        session.execute(
            text("INSERT INTO node_template_exclusions (node_id, template_id) VALUES (:n, 1000)"),
            {"n": agent.node_id},
        )
    node = nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=agent.node_id)).node
    assert (list(node.excluded_job_ids), list(node.excluded_template_ids)) == ([5, 6], [1000])
    nodes_stub.RemoveNodeJobExclusion(
        nodes_pb2.RemoveNodeJobExclusionRequest(node_id=agent.node_id, job_id=5)
    )
    nodes_stub.RemoveNodeTemplateExclusion(
        nodes_pb2.RemoveNodeTemplateExclusionRequest(node_id=agent.node_id, template_id=0)
    )
    node = nodes_stub.GetNode(nodes_pb2.GetNodeRequest(node_id=agent.node_id)).node
    assert (list(node.excluded_job_ids), list(node.excluded_template_ids)) == ([6], [])
    assert (
        _code(
            lambda: nodes_stub.RemoveNodeJobExclusion(
                nodes_pb2.RemoveNodeJobExclusionRequest(node_id=999_999, job_id=5)
            )
        )[0]
        == "NOT_FOUND"
    )


def test_a_dispatcher_soft_restart_makes_agents_re_register_without_losing_their_node(
    channel: grpc.Channel, agents: list[ProtocolAgent], db: Database
) -> None:
    agent = _connect(channel, agents, "render-14")
    with db.transaction() as session:
        publish(session, "system.soft_restart", {"actor": "admin"})
    agent._reader.join(15)  # the stream ends
    assert not agent._reader.is_alive()
    again = _connect(channel, agents, "render-14")
    assert again.node_id == agent.node_id


def test_orphaned_instances_go_when_their_host_registers_with_fewer(
    channel: grpc.Channel,
    nodes_stub: nodes_pb2_grpc.NodesServiceStub,
    agents: list[ProtocolAgent],
) -> None:
    three = [ProtocolAgent(channel, "render-15", n, instance_count=3) for n in range(3)]
    agents.extend(three)
    for agent in three:
        agent.close()
    survivor = ProtocolAgent(channel, "render-15", 0, instance_count=1)
    agents.append(survivor)
    names = [n.name for n in nodes_stub.ListNodes(nodes_pb2.ListNodesRequest()).nodes]
    assert names == ["render-15"]
    assert survivor.node_id == three[0].node_id


def test_instances_can_be_told_apart_by_address_instead_of_host_name(
    channel: grpc.Channel,
    agents: list[ProtocolAgent],
    db: Database,
) -> None:
    with db.transaction() as session:
        session.execute(
            text(
                "UPDATE dispatcher_config SET runtime_config = jsonb_set(runtime_config,"
                " '{instance_identity}', '\"ip_address\"')"
            )
        )
    first = _connect(channel, agents, "old-name")
    first.close()
    renamed = ProtocolAgent(channel, "new-name")  # same address, same instance
    agents.append(renamed)
    assert renamed.node_id == first.node_id
