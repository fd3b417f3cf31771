"""Protobuf messages of the nodes service, built from its rows and values:
the servicers, the session hub and the client streams use them."""

from __future__ import annotations

from typing import Any, TypeVar

from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.nodes.v1 import nodes_pb2
from muster_services.core.convert import to_timestamp
from muster_services.core.enums import KILL_FOLLOW_UP, PLATFORM, PROCESS_PRIORITY, SYSTEM_EVENT
from muster_services.nodes.domain import NODE_STATUS, shown_status
from muster_services.nodes.service import NodeView


def node_message(view: NodeView) -> nodes_pb2.Node:
    row = view.node
    message = nodes_pb2.Node(
        id=row.id,
        name=row.name,
        host_name=row.host_name,
        ip_address=row.ip_address,
        platform=PLATFORM.number(row.platform),
        instance_number=row.instance_number,
        cpu_cores=row.cpu_cores,
        memory_bytes=row.memory_bytes,
        pools=view.pools,
        # Rendering while it holds its live assignment (read with the row).
        status=NODE_STATUS.number(shown_status(row.status, view.assignment is not None)),
        paused=row.paused,
        process_priority=PROCESS_PRIORITY.number(row.process_priority),
        realtime_log=row.realtime_log,
        notes=row.notes,
        agent_version=row.agent_version,
        excluded_template_ids=view.excluded_template_ids,
        excluded_job_ids=view.excluded_job_ids,
        mac_address=row.mac_address,
        os_version=row.os_version,
    )
    if view.assignment is not None:
        message.job_id = view.assignment.job_id
        message.chunk_id = view.assignment.chunk_number
    for name, value in (
        ("last_heartbeat_time", row.last_heartbeat_at),
        ("registration_time", row.registered_at),
    ):
        stamp = to_timestamp(value)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    return message


def command_message(command_id: int, kind: str, payload: dict[str, Any]) -> agent_pb2.Command:
    """The protocol message for a stored command."""
    command = agent_pb2.Command(command_id=command_id)
    if kind == "kill_process":
        command.kill_process.CopyFrom(
            agent_pb2.KillProcessCommand(
                job_id=int(payload["job_id"]),
                chunk_id=int(payload["chunk_id"]),
                fencing_token=int(payload["fencing_token"]),
                follow_up=KILL_FOLLOW_UP.number(payload.get("follow_up", "")),
            )
        )
    elif kind == "pause":
        command.pause.SetInParent()
    elif kind == "resume":
        command.resume.SetInParent()
    elif kind == "set_process_priority":
        command.set_process_priority.process_priority = PROCESS_PRIORITY.number(payload["priority"])
    elif kind == "soft_restart":
        command.soft_restart.SetInParent()
    elif kind == "set_realtime_log":
        command.set_realtime_log.enabled = bool(payload["enabled"])
    elif kind == "system_event":
        command.system_event.event = SYSTEM_EVENT.number(payload["event"])
    elif kind == "run_python_code":
        command.run_python_code.CopyFrom(
            agent_pb2.RunPythonCodeCommand(
                request_id=str(payload["request_id"]),
                code=str(payload["code"]),
                timeout_seconds=int(payload.get("timeout_seconds", 0)),
            )
        )
    elif kind == "custom_message":
        command.custom_message.CopyFrom(
            common_pb2.CustomMessage(
                template_id=int(payload.get("template_id", 0)),
                message=str(payload["message"]),
                sender=str(payload.get("sender", "")),
            )
        )
    elif kind == "report_status":
        command.report_status.SetInParent()
    else:
        raise ValueError(f"unknown command kind {kind!r}")
    return command


_Client = TypeVar("_Client", nodes_pb2.ConsoleClient, nodes_pb2.NotificatorClient)


def _connection_fields(message: _Client, row: Any) -> _Client:
    """What consoles and notificators show alike, from their client_connections row."""
    message.id = row.id
    message.user_name = row.user_name
    message.host = row.host
    message.version = row.client_version
    message.ip_address = row.ip_address
    stamp = to_timestamp(row.connected_at)
    if stamp is not None:
        message.connected_time.CopyFrom(stamp)
    return message


def console_message(row: Any) -> nodes_pb2.ConsoleClient:
    return _connection_fields(
        nodes_pb2.ConsoleClient(client_kind=nodes_pb2.CLIENT_KIND_CONSOLE), row
    )


def notificator_message(row: Any) -> nodes_pb2.NotificatorClient:
    message = _connection_fields(
        nodes_pb2.NotificatorClient(client_kind=nodes_pb2.CLIENT_KIND_NOTIFICATOR), row
    )
    for name, value in dict(row.notification_preferences).items():
        if name in message.notification_preferences.DESCRIPTOR.fields_by_name:
            setattr(message.notification_preferences, name, bool(value))
    return message


def disconnect_notice(reason: Any, message: str) -> nodes_pb2.ConnectResponse:
    event = nodes_pb2.ClientEvent()
    event.disconnect_notice.reason = reason
    event.disconnect_notice.message = message
    return nodes_pb2.ConnectResponse(event=event)
