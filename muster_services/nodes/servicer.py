"""gRPC servicers of the nodes service (grpc.aio): translation only.

Database work runs in worker threads (`asyncio.to_thread`) so the event loop
keeps serving thousands of agent streams.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import grpc.aio

from muster_proto.agent.v1 import agent_pb2, agent_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services.core.convert import to_timestamp
from muster_services.core.enums import KILL_FOLLOW_UP, PLATFORM, PROCESS_PRIORITY, SYSTEM_EVENT
from muster_services.core.errors import DomainError, status_of
from muster_services.core.server import contract_base
from muster_services.nodes import commands, template_code
from muster_services.nodes.client_hub import ClientHub, ClientStream, batch_response
from muster_services.nodes.clients import ClientsService
from muster_services.nodes.delivery import AssignmentDelivery
from muster_services.nodes.domain import (
    CLIENT_KIND,
    DEFAULT_PREFERENCES,
    NODE_STATUS,
    Registration,
)
from muster_services.nodes.enrollment import Enrollment
from muster_services.nodes.messages import (
    console_message,
    disconnect_notice,
    node_message,
    notificator_message,
)
from muster_services.nodes.preferences import TemplatePreferences
from muster_services.nodes.relay import ResultRelay
from muster_services.nodes.service import NodesService, RunningChunk
from muster_services.nodes.sessions import AgentStream, SessionHub
from muster_services.nodes.timings import NodeTimings

_LOG = logging.getLogger(__name__)

NODES_SERVICE = nodes_pb2.DESCRIPTOR.services_by_name["NodesService"]
AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]


async def _call(function: Any, *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


T = TypeVar("T")


async def next_message(
    outgoing: asyncio.Queue[T], closed: asyncio.Event, also: asyncio.Future[Any] | None = None
) -> T | None:
    """The next queued message, or None once `closed` is set (or `also` ends)."""
    if closed.is_set():
        return None
    getter = asyncio.ensure_future(outgoing.get())
    closer = asyncio.ensure_future(closed.wait())
    waited: set[asyncio.Future[Any]] = {getter, closer}
    if also is not None:
        waited.add(also)
    try:
        await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closer.cancel()
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    return None


class NodesServicer(contract_base(nodes_pb2_grpc.NodesServiceServicer, NODES_SERVICE)):  # type: ignore[misc]
    def __init__(self, service: NodesService) -> None:
        self.service = service
        self.preferences = TemplatePreferences(service.db)

    async def ListNodes(
        self, request: nodes_pb2.ListNodesRequest, context: Any
    ) -> nodes_pb2.ListNodesResponse:
        statuses = [NODE_STATUS.text(s, "statuses") for s in request.statuses]
        platform = PLATFORM.text(request.platform, "platform") if request.platform else ""
        page = await _call(
            self.service.page,
            request.page_size,
            request.page_token,
            request.pool,
            statuses,
            platform,
        )
        return nodes_pb2.ListNodesResponse(
            nodes=[node_message(v) for v in page.items], next_page_token=page.next_page_token
        )

    async def GetNode(
        self, request: nodes_pb2.GetNodeRequest, context: Any
    ) -> nodes_pb2.GetNodeResponse:
        return nodes_pb2.GetNodeResponse(
            node=node_message(await _call(self.service.get, request.node_id))
        )

    async def FindNode(
        self, request: nodes_pb2.FindNodeRequest, context: Any
    ) -> nodes_pb2.FindNodeResponse:
        return nodes_pb2.FindNodeResponse(
            node=node_message(await _call(self.service.find, request.name))
        )

    async def PauseNode(
        self, request: nodes_pb2.PauseNodeRequest, context: Any
    ) -> nodes_pb2.PauseNodeResponse:
        await _call(self.service.set_paused, request.node_id, True)
        return nodes_pb2.PauseNodeResponse()

    async def ResumeNode(
        self, request: nodes_pb2.ResumeNodeRequest, context: Any
    ) -> nodes_pb2.ResumeNodeResponse:
        await _call(self.service.set_paused, request.node_id, False)
        return nodes_pb2.ResumeNodeResponse()

    async def SetNodeNotes(
        self, request: nodes_pb2.SetNodeNotesRequest, context: Any
    ) -> nodes_pb2.SetNodeNotesResponse:
        await _call(self.service.set_notes, request.node_id, request.notes)
        return nodes_pb2.SetNodeNotesResponse()

    async def SetNodeTemplatePreferences(
        self, request: nodes_pb2.SetNodeTemplatePreferencesRequest, context: Any
    ) -> nodes_pb2.SetNodeTemplatePreferencesResponse:
        values = await _call(
            self.preferences.set,
            request.node_id,
            request.template_id,
            dict(request.values),
            request.replace,
        )
        return nodes_pb2.SetNodeTemplatePreferencesResponse(
            preferences=nodes_pb2.NodeTemplatePreferences(
                template_id=request.template_id, values=values
            )
        )

    async def GetNodeTemplatePreferences(
        self, request: nodes_pb2.GetNodeTemplatePreferencesRequest, context: Any
    ) -> nodes_pb2.GetNodeTemplatePreferencesResponse:
        found = await _call(self.preferences.get, request.node_id, request.template_id)
        return nodes_pb2.GetNodeTemplatePreferencesResponse(
            preferences=[
                nodes_pb2.NodeTemplatePreferences(template_id=t, values=v) for t, v in found
            ]
        )

    async def SetNodeProcessPriority(
        self, request: nodes_pb2.SetNodeProcessPriorityRequest, context: Any
    ) -> nodes_pb2.SetNodeProcessPriorityResponse:
        priority = PROCESS_PRIORITY.text(request.process_priority, "process_priority")
        await _call(self.service.set_process_priority, request.node_id, priority)
        return nodes_pb2.SetNodeProcessPriorityResponse()

    async def SetNodeRealtimeLog(
        self, request: nodes_pb2.SetNodeRealtimeLogRequest, context: Any
    ) -> nodes_pb2.SetNodeRealtimeLogResponse:
        await _call(self.service.set_realtime_log, request.node_id, request.enabled)
        return nodes_pb2.SetNodeRealtimeLogResponse()

    async def RefreshNode(
        self, request: nodes_pb2.RefreshNodeRequest, context: Any
    ) -> nodes_pb2.RefreshNodeResponse:
        await _call(self.service.simple_command, request.node_id, "report_status", {})
        return nodes_pb2.RefreshNodeResponse()

    async def RestartNodeAgent(
        self, request: nodes_pb2.RestartNodeAgentRequest, context: Any
    ) -> nodes_pb2.RestartNodeAgentResponse:
        await _call(self.service.simple_command, request.node_id, "soft_restart", {})
        return nodes_pb2.RestartNodeAgentResponse()

    async def RemoveNodeTemplateExclusion(
        self, request: nodes_pb2.RemoveNodeTemplateExclusionRequest, context: Any
    ) -> nodes_pb2.RemoveNodeTemplateExclusionResponse:
        await _call(self.service.remove_template_exclusions, request.node_id, request.template_id)
        return nodes_pb2.RemoveNodeTemplateExclusionResponse()

    async def RemoveNodeJobExclusion(
        self, request: nodes_pb2.RemoveNodeJobExclusionRequest, context: Any
    ) -> nodes_pb2.RemoveNodeJobExclusionResponse:
        await _call(self.service.remove_job_exclusions, request.node_id, request.job_id)
        return nodes_pb2.RemoveNodeJobExclusionResponse()

    async def DeleteNode(
        self, request: nodes_pb2.DeleteNodeRequest, context: Any
    ) -> nodes_pb2.DeleteNodeResponse:
        await _call(self.service.delete, request.node_id)
        return nodes_pb2.DeleteNodeResponse()

    async def SendNodeMessage(
        self, request: nodes_pb2.SendNodeMessageRequest, context: Any
    ) -> nodes_pb2.SendNodeMessageResponse:
        count = await _call(
            self.service.send_message,
            request.node_id,
            request.template_id,
            request.message,
            request.broadcast,
        )
        return nodes_pb2.SendNodeMessageResponse(recipients_count=count)

    async def KillNodeProcess(
        self, request: nodes_pb2.KillNodeProcessRequest, context: Any
    ) -> nodes_pb2.KillNodeProcessResponse:
        follow_up = KILL_FOLLOW_UP.text(request.follow_up, "follow_up")
        await _call(self.service.kill_node, request.node_id, follow_up)
        return nodes_pb2.KillNodeProcessResponse()

    async def KillJobProcesses(
        self, request: nodes_pb2.KillJobProcessesRequest, context: Any
    ) -> nodes_pb2.KillJobProcessesResponse:
        follow_up = KILL_FOLLOW_UP.text(request.follow_up, "follow_up")
        node_ids = await _call(self.service.kill_job, request.job_id, follow_up)
        return nodes_pb2.KillJobProcessesResponse(node_ids=node_ids)

    async def SendNodeSystemEvent(
        self, request: nodes_pb2.SendNodeSystemEventRequest, context: Any
    ) -> nodes_pb2.SendNodeSystemEventResponse:
        event = SYSTEM_EVENT.text(request.event, "event")
        await commands.send_system_event(self.service, request.node_id, event)
        return nodes_pb2.SendNodeSystemEventResponse()

    async def RunNodePythonCode(
        self, request: nodes_pb2.RunNodePythonCodeRequest, context: Any
    ) -> nodes_pb2.RunNodePythonCodeResponse:
        result = await commands.run_python_code(
            self.service, request.node_id, request.code, request.timeout_seconds
        )
        return nodes_pb2.RunNodePythonCodeResponse(
            output=result.output, exit_code=result.exit_code, timed_out=result.timed_out
        )


class AgentServicer(contract_base(agent_pb2_grpc.AgentServiceServicer, AGENT_SERVICE)):  # type: ignore[misc]
    """One bidirectional stream per agent instance."""

    def __init__(
        self,
        service: NodesService,
        hub: SessionHub,
        delivery: AssignmentDelivery,
        relay: ResultRelay,
        timings: NodeTimings,
        enrollment: Enrollment,
    ) -> None:
        self.service = service
        self.hub = hub
        self.delivery = delivery
        self.relay = relay
        self.timings = timings
        self.enrollment = enrollment

    def Enroll(self, request: agent_pb2.EnrollRequest, context: Any) -> agent_pb2.EnrollResponse:
        token, expires_at = self.enrollment.enroll(
            request.enrollment_secret, request.host_name, request.instance_number
        )
        return agent_pb2.EnrollResponse(
            token=token, expire_time=to_timestamp(datetime.fromtimestamp(expires_at, UTC))
        )

    async def GetTemplateSource(
        self, request: agent_pb2.GetTemplateSourceRequest, context: Any
    ) -> agent_pb2.GetTemplateSourceResponse:
        found = await _call(
            template_code.template_source, self.service.db, request.template_id, request.version
        )
        return agent_pb2.GetTemplateSourceResponse(
            template_id=found.template_id,
            version=found.version,
            source=found.source,
            file_name=found.file_name,
        )

    async def Session(
        self, request_iterator: AsyncIterator[agent_pb2.SessionRequest], context: Any
    ) -> None:
        self.hub.bind(asyncio.get_running_loop())
        try:
            first = await request_iterator.__anext__()
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "register":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be register"
            )
            return
        stream: AgentStream | None = None
        try:
            stream, pending = await self._register(first.register)
            await context.write(agent_pb2.SessionResponse(register_accepted=pending[0]))
            await self.hub.deliver_rows(stream, pending[1])
            await self.delivery.reconcile(stream, self.relay.release_unconfirmed, pending[2])
            reader = asyncio.ensure_future(self._read(request_iterator, stream))
            try:
                while (
                    message := await next_message(stream.outgoing, stream.closed, reader)
                ) is not None:
                    await context.write(message)
            finally:
                reader.cancel()
        except DomainError as exc:
            await context.abort(status_of(exc), exc.message)
        finally:
            if stream is not None:
                self.hub.remove(stream)
                await asyncio.to_thread(
                    self.service.disconnected, stream.node_id, stream.session_id
                )

    async def _register(
        self, register: agent_pb2.Register
    ) -> tuple[AgentStream, tuple[agent_pb2.RegisterAccepted, list[Any], int]]:
        running = _running(register.running_chunk)
        platform = PLATFORM.to_text.get(register.platform, "")
        registration = Registration(
            host_name=register.host_name,
            instance_number=register.instance_number,
            platform=platform,
            os_version=register.os_version,
            cpu_cores=register.cpu_cores,
            memory_bytes=register.memory_bytes,
            agent_version=register.agent_version,
            ip_address=register.ip_address,
            mac_address=register.mac_address,
            node_id=register.node_id,
            pools=list(register.pools),
            instance_count=max(0, register.instance_count),
        )
        session_id = uuid.uuid4().hex
        node, pending, owed = await asyncio.to_thread(
            self.service.register, registration, session_id, running
        )
        stream = AgentStream(node.id, session_id, running=running)
        self.hub.add(stream)
        if node.realtime_log:
            self.hub.realtime.add(node.id)
        accepted = agent_pb2.RegisterAccepted(
            node_id=node.id,
            node_name=node.name,
            heartbeat_interval_seconds=await asyncio.to_thread(self.timings.heartbeat_interval),
            lease_seconds=await asyncio.to_thread(self.timings.lease_seconds),
            paused=node.paused,
            process_priority=PROCESS_PRIORITY.number(node.process_priority),
            realtime_log=node.realtime_log,
        )
        return stream, (accepted, pending, owed)

    async def _read(
        self, request_iterator: AsyncIterator[agent_pb2.SessionRequest], stream: AgentStream
    ) -> None:
        async for message in request_iterator:
            kind = message.WhichOneof("message")
            if kind == "heartbeat":
                beat = message.heartbeat
                self.hub.heartbeat(stream, _running(beat.running_chunk), beat.sequence)
            elif kind == "command_ack":
                ack = message.command_ack
                await asyncio.to_thread(
                    self.service.command_answered,
                    ack.command_id,
                    {"ok": ack.success, "message": ack.error_message},
                    True,
                )
            elif kind == "python_code_result":
                await self._python_result(message.python_code_result)
            elif kind == "result":
                await self.relay.result(stream, message.result)
            elif kind == "log":
                await self.relay.log(stream, message.log)
            elif kind == "progress":
                await self.relay.progress(stream, message.progress)

    async def _python_result(self, result: agent_pb2.PythonCodeResult) -> None:
        command_id = await asyncio.to_thread(self.service.command_for_request, result.request_id)
        if command_id is None:
            _LOG.warning("python code result for unknown request %s", result.request_id)
            return
        await asyncio.to_thread(
            self.service.command_answered,
            command_id,
            {
                "output": result.output,
                "exit_code": result.exit_code,
                "timed_out": result.timed_out,
                "ok": True,
            },
            False,
        )


CLIENTS_SERVICE = nodes_pb2.DESCRIPTOR.services_by_name["ClientsService"]
# DisconnectReason -> client_connections.disconnect_reason.
# The most events in one batched response (about 100 bytes each).
BATCH_LIMIT = 2_000
CLOSE_REASONS: dict[int, str] = {
    nodes_pb2.DISCONNECT_REASON_FORCED: "forced",
    nodes_pb2.DISCONNECT_REASON_SERVER_SHUTDOWN: "server_shutdown",
    nodes_pb2.DISCONNECT_REASON_TOO_SLOW: "too_slow",
}


class ClientsServicer(contract_base(nodes_pb2_grpc.ClientsServiceServicer, CLIENTS_SERVICE)):  # type: ignore[misc]
    """Consoles and notificators: their live streams, lists and messages."""

    def __init__(self, service: ClientsService, hub: ClientHub) -> None:
        self.service = service
        self.hub = hub

    async def Connect(
        self, request: nodes_pb2.ConnectRequest, context: Any
    ) -> AsyncIterator[nodes_pb2.ConnectResponse | bytes]:
        kind = CLIENT_KIND.text(request.client_kind, "client_kind")
        preferences = dict(DEFAULT_PREFERENCES)
        if request.HasField("notification_preferences"):
            prefs = request.notification_preferences
            preferences = {f.name: bool(getattr(prefs, f.name)) for f in prefs.DESCRIPTOR.fields}
        subscription = {
            "job_ids": list(request.job_ids),
            "folder_ids": list(request.folder_ids),
            "node_ids": list(request.node_ids),
        }
        self.hub.bind(asyncio.get_running_loop())
        row = await _call(
            self.service.connect, kind, request.host, request.version, subscription, preferences
        )
        stream = ClientStream(
            connection_id=row.id,
            kind=kind,
            user_name=row.user_name,
            job_ids=frozenset(request.job_ids),
            folder_ids=frozenset(request.folder_ids),
            node_ids=frozenset(request.node_ids),
            preferences=preferences,
            batched=request.batch_events,
        )
        reason = "closed"
        try:
            yield nodes_pb2.ConnectResponse(
                accepted=nodes_pb2.ConnectionAccepted(
                    connection_id=row.id, last_event_id=self.hub.position.id
                )
            )
            replay: list[nodes_pb2.ClientEvent] = []

            async def collect(message: nodes_pb2.ClientEvent) -> None:
                replay.append(message)

            if not await self.hub.attach(stream, request.resume_after_event_id, collect):
                reason = "resume_too_old"
                yield disconnect_notice(
                    nodes_pb2.DISCONNECT_REASON_RESUME_TOO_OLD,
                    f"event {request.resume_after_event_id} is no longer kept; reload and"
                    " reconnect without resume_after_event_id",
                )
                return
            for message in replay:
                yield nodes_pb2.ConnectResponse(event=message)
            while (items := await stream.next_items(self.hub.spacing(stream))) is not None:
                if stream.batched:
                    for start in range(0, len(items), BATCH_LIMIT):
                        yield batch_response(items[start : start + BATCH_LIMIT])
                else:
                    for item in items:
                        yield item.single()
            if stream.closed.is_set():
                reason = CLOSE_REASONS.get(stream.close_reason, "closed")
                yield disconnect_notice(stream.close_reason, stream.close_message)
        finally:
            self.hub.detach(stream)
            await _call(self.service.closed, row.id, reason)

    async def ListConsoles(
        self, request: nodes_pb2.ListConsolesRequest, context: Any
    ) -> nodes_pb2.ListConsolesResponse:
        page = await _call(
            self.service.page, "console", request.user_name, request.page_size, request.page_token
        )
        return nodes_pb2.ListConsolesResponse(
            consoles=[console_message(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListNotificators(
        self, request: nodes_pb2.ListNotificatorsRequest, context: Any
    ) -> nodes_pb2.ListNotificatorsResponse:
        page = await _call(
            self.service.page,
            "notificator",
            request.user_name,
            request.page_size,
            request.page_token,
        )
        return nodes_pb2.ListNotificatorsResponse(
            notificators=[notificator_message(r) for r in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetConsole(
        self, request: nodes_pb2.GetConsoleRequest, context: Any
    ) -> nodes_pb2.GetConsoleResponse:
        row = await _call(self.service.get, "console", request.connection_id)
        return nodes_pb2.GetConsoleResponse(console=console_message(row))

    async def GetNotificator(
        self, request: nodes_pb2.GetNotificatorRequest, context: Any
    ) -> nodes_pb2.GetNotificatorResponse:
        row = await _call(self.service.get, "notificator", request.connection_id)
        return nodes_pb2.GetNotificatorResponse(notificator=notificator_message(row))

    async def DisconnectConsole(
        self, request: nodes_pb2.DisconnectConsoleRequest, context: Any
    ) -> nodes_pb2.DisconnectConsoleResponse:
        await _call(self.service.force_disconnect, "console", request.connection_id)
        return nodes_pb2.DisconnectConsoleResponse()

    async def DisconnectNotificator(
        self, request: nodes_pb2.DisconnectNotificatorRequest, context: Any
    ) -> nodes_pb2.DisconnectNotificatorResponse:
        await _call(self.service.force_disconnect, "notificator", request.connection_id)
        return nodes_pb2.DisconnectNotificatorResponse()

    async def SendConsoleMessage(
        self, request: nodes_pb2.SendConsoleMessageRequest, context: Any
    ) -> nodes_pb2.SendConsoleMessageResponse:
        count = await _call(
            self.service.send_message,
            "console",
            request.connection_id,
            request.template_id,
            request.message,
            request.broadcast,
        )
        return nodes_pb2.SendConsoleMessageResponse(recipients_count=count)

    async def SendNotificatorMessage(
        self, request: nodes_pb2.SendNotificatorMessageRequest, context: Any
    ) -> nodes_pb2.SendNotificatorMessageResponse:
        count = await _call(
            self.service.send_message,
            "notificator",
            request.connection_id,
            request.template_id,
            request.message,
            request.broadcast,
        )
        return nodes_pb2.SendNotificatorMessageResponse(recipients_count=count)


def _running(chunk: agent_pb2.RunningChunk) -> RunningChunk | None:
    if not chunk.fencing_token:
        return None
    return RunningChunk(chunk.job_id, chunk.chunk_id, chunk.fencing_token)
