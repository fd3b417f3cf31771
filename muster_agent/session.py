"""One agent instance: its state and protocol handling (`Instance`), and the
stream that carries it to the nodes service (`Session`).

`Instance` never touches gRPC: it takes SessionResponse messages in
`handle()` and puts SessionRequest messages on its `outgoing` queue. It
outlives any one stream: a chunk keeps running while the stream is down, and
every result stays pending until the service answers ResultAccepted with its
fencing token, then is re-sent after each reconnect. `Session` opens the
stream, registers, pumps the queue, sends heartbeats and reconnects with
jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import grpc
import grpc.aio

from muster_agent import VERSION, commands
from muster_agent.config import AgentConfig
from muster_agent.lease import Lease
from muster_agent.runner import ChunkRun, end_orphan, now_timestamp
from muster_agent.state import StateStore
from muster_agent.system import DEFAULT_PRIORITY, HostFacts, UsageMeter, nice_value
from muster_agent.templates import TemplateCode, TemplateRunner
from muster_gateway import context
from muster_proto.agent.v1 import agent_pb2, agent_pb2_grpc
from muster_proto.common.v1 import common_pb2

_LOG = logging.getLogger("muster-agent")

DEFAULT_HEARTBEAT_SECONDS = 5.0
JITTER = 0.2  # heartbeats and reconnects vary by +-20% so a farm does not beat in step
BACKOFF_START_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 10.0
REGISTER_TIMEOUT_SECONDS = 30.0
# How long fetching one template version's code may take.
TEMPLATE_FETCH_SECONDS = 60.0
# Messages kept while disconnected (logs, acks, code results); the oldest go first.
HELD_MESSAGES = 2000
# Kinds worth keeping for the next stream; heartbeats and progress are stale
# by then, and results are re-sent from `pending` anyway.
_HELD_KINDS = ("log", "command_ack", "python_code_result")
EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
SessionCall = grpc.aio.StreamStreamCall[agent_pb2.SessionRequest, agent_pb2.SessionResponse]


class AgentHooks(Protocol):
    """What an instance asks of the whole agent process (a soft restart
    restarts every instance: they share one process)."""

    async def prepare_restart(self) -> None: ...

    async def restart(self) -> None: ...

    @property
    def instances(self) -> Sequence[Instance]:
        """Every instance of the agent (MInstanceAPI reports them)."""
        ...


def jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)


class Instance:
    """One node of this agent: registration, chunk, commands, pending results."""

    def __init__(
        self,
        number: int,
        config: AgentConfig,
        state: StateStore,
        hooks: AgentHooks | None = None,
        templates: TemplateCode | None = None,
    ) -> None:
        self.number = number
        self.config = config
        self.state = state
        self.hooks = hooks
        self.node_id = state.node_id(number)
        self.node_name = ""
        self.heartbeat_seconds = DEFAULT_HEARTBEAT_SECONDS
        self.paused = False
        self.priority = DEFAULT_PRIORITY
        self.realtime_log = False
        self.connected = False
        # Set when the agent stops or restarts: no new chunk may start then.
        self.closing = False
        self.outgoing: asyncio.Queue[agent_pb2.SessionRequest] = asyncio.Queue()
        self.run: ChunkRun | None = None
        # Chunks started by this process (the agent trims its memory after them).
        self.chunks_started = 0
        # The newest fencing token assigned to this instance, and the kills of
        # newer tokens: a kill sent just after its chunk's assignment may reach
        # the agent first (the two travel separately); the chunk then ends
        # killed as it arrives, instead of running to its end.
        self.last_token = 0
        self.killed_ahead: set[int] = set()
        self.pending: dict[int, agent_pb2.ChunkResult] = {
            r.fencing_token: r for r in state.pending_results(number)
        }
        orphan = state.running_chunk(number)
        if orphan is not None:
            # The previous agent process died running it: its result goes out
            # with the others (stale, and refused, if the chunk went elsewhere).
            result = end_orphan(orphan)
            _LOG.warning(
                "instance %d: job %d chunk %d (token %d) was running when the agent stopped:"
                " reporting it failed",
                number,
                result.job_id,
                result.chunk_id,
                result.fencing_token,
            )
            self.pending[result.fencing_token] = result
            self._save()
        self._settled = asyncio.Event()
        if not self.pending:
            self._settled.set()
        self._run_task: asyncio.Task[None] | None = None
        self._held: deque[agent_pb2.SessionRequest] = deque(maxlen=HELD_MESSAGES)
        self._tasks: set[asyncio.Task[None]] = set()
        self._usage = UsageMeter()
        # Until when the dispatcher knows this instance alive (muster_agent/lease.py).
        self.lease = Lease(config.work_dir / "leases" / f"instance-{number}")
        self._beats_sent = 0
        # Template code runs in this instance's own host process (started on
        # the first chunk that needs it): a hanging callback holds up no other.
        self.templates = TemplateRunner(
            templates or TemplateCode(config.work_dir / "templates"),
            config.template_preferences,
            number,
            config.template_callback_seconds,
        )
        # Template callbacks see the instances as they are at each call.
        self.templates.host.render_client = self.render_client_environment

    @property
    def label(self) -> str:
        return self.node_name or f"instance {self.number}"

    def instance_state(self) -> context.InstanceState:
        if not self.connected:
            status = context.STATUS_OFFLINE
        elif self.run is not None:
            status = context.STATUS_RENDERING
        else:
            status = context.STATUS_PAUSED if self.paused else context.STATUS_IDLE
        running = self.run.running_chunk() if self.run is not None else None
        return context.InstanceState(
            self.number,
            status,
            self.node_id,
            running.job_id if running else 0,
            running.chunk_id if running else 0,
        )

    def render_client_environment(self) -> dict[str, str]:
        """What code this instance runs is told (muster_gateway/context.py): the
        renderclient context and every instance of this agent."""
        siblings = self.hooks.instances if self.hooks is not None else [self]
        return context.render_client_environment(
            self.number, [i.instance_state() for i in siblings]
        )

    # --- the stream's life -----------------------------------------------------------------

    def register_request(self, facts: HostFacts) -> agent_pb2.SessionRequest:
        register = agent_pb2.Register(
            node_id=self.node_id,
            host_name=facts.host_name,
            instance_number=self.number,
            platform=facts.platform,  # type: ignore[arg-type]
            os_version=facts.os_version,
            cpu_cores=facts.cpu_cores,
            memory_bytes=facts.memory_bytes,
            agent_version=VERSION,
            ip_address=facts.ip_address,
            mac_address=facts.mac_address,
            instance_count=self.config.instances,
            pools=self.config.pools,
        )
        if self.run is not None:
            register.running_chunk.CopyFrom(self.run.running_chunk())
        self.lease.register_sent()
        return agent_pb2.SessionRequest(register=register)

    def on_accepted(self, accepted: agent_pb2.RegisterAccepted) -> None:
        if self.node_id and accepted.node_id != self.node_id:
            _LOG.warning(
                "%s: the dispatcher gave node id %d (was %d)",
                self.label,
                accepted.node_id,
                self.node_id,
            )
        self.node_id = accepted.node_id
        self.node_name = accepted.node_name
        self.heartbeat_seconds = float(
            accepted.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_SECONDS
        )
        self.paused = accepted.paused
        self.realtime_log = accepted.realtime_log
        self.lease.accepted(accepted.lease_seconds)
        if nice_value(accepted.process_priority) is not None:
            self.priority = accepted.process_priority
            if self.run is not None:
                with contextlib.suppress(OSError):
                    self.run.set_priority(self.priority)
        self._save()
        self.connected = True
        # Held log lines first: they belong before the results of their chunks.
        while self._held:
            self.outgoing.put_nowait(self._held.popleft())
        for result in self.pending.values():
            self.outgoing.put_nowait(agent_pb2.SessionRequest(result=result))
        _LOG.info(
            "%s: registered as node %d%s, %d result(s) to confirm",
            self.label,
            self.node_id,
            " (paused)" if self.paused else "",
            len(self.pending),
        )

    def on_disconnected(self) -> None:
        """The stream is gone: keep what is worth re-sending, drop the rest."""
        self.connected = False
        while not self.outgoing.empty():
            message = self.outgoing.get_nowait()
            self.outgoing.task_done()
            if message.WhichOneof("message") in _HELD_KINDS:
                self._held.append(message)

    def forget_node_id(self) -> None:
        """The dispatcher removed this node's registration: register anew."""
        self.node_id = 0
        self._save()

    def send(self, message: agent_pb2.SessionRequest) -> None:
        if self.connected:
            self.outgoing.put_nowait(message)
        elif message.WhichOneof("message") in _HELD_KINDS:
            self._held.append(message)

    async def flush(self, timeout: float) -> None:
        """Wait until the stream has written everything queued (at most timeout)."""
        if self.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outgoing.join(), timeout)

    def heartbeat_request(self) -> agent_pb2.SessionRequest:
        self._beats_sent += 1
        self.lease.heartbeat_sent(self._beats_sent)
        beat = agent_pb2.Heartbeat(
            sequence=self._beats_sent,
            send_time=now_timestamp(),
            cpu_usage_percent=self._usage.cpu_percent(),
            memory_used_bytes=self._usage.memory_used(),
        )
        if self.run is not None:
            beat.running_chunk.CopyFrom(self.run.running_chunk())
        return agent_pb2.SessionRequest(heartbeat=beat)

    # --- messages from the service -----------------------------------------------------

    async def handle(self, response: agent_pb2.SessionResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "assignment":
            self._assign(response.assignment)
        elif kind == "command":
            # Commands run as tasks: a kill waits for its process, run-code for its
            # code; the stream must keep reading meanwhile.
            self._spawn(self._command(response.command))
        elif kind == "result_accepted":
            self._result_accepted(response.result_accepted)
        elif kind == "register_accepted":
            self.on_accepted(response.register_accepted)
        elif kind == "heartbeat_recorded":
            recorded = response.heartbeat_recorded
            self.lease.recorded(recorded.sequence, recorded.lease_seconds)

    def _assign(self, assignment: agent_pb2.Assignment) -> None:
        token = assignment.fencing_token
        what = f"job {assignment.job_id} chunk {assignment.chunk_id} (token {token})"
        if self.run is not None and self.run.fencing_token == token:
            _LOG.info("%s: %s is already running; repeated assignment ignored", self.label, what)
            return
        if self.closing:
            # Not refused as a failure: after the restart (or when the node is
            # declared lost) the service sends it again or requeues it.
            _LOG.warning("%s: %s ignored: the agent is stopping", self.label, what)
            return
        if token in self.pending:
            # The run ended but its result was not recorded before a reconnect:
            # the service sent the assignment again; the result answers it.
            _LOG.info("%s: %s already ran; sending its result again", self.label, what)
            self.send(agent_pb2.SessionRequest(result=self.pending[token]))
            return
        self.last_token = max(self.last_token, token)
        if token in self.killed_ahead:
            self.killed_ahead.discard(token)
            _LOG.info("%s: %s was killed on request before it arrived", self.label, what)
            self._end_unrun(assignment, common_pb2.CHUNK_RUN_OUTCOME_KILLED, "killed on request")
            return
        if self.run is not None or self.paused:
            reason = "instance busy" if self.run is not None else "instance busy: paused"
            _LOG.error(
                "%s: REFUSED %s: %s (the dispatcher should never send this)",
                self.label,
                what,
                reason,
            )
            self._end_unrun(assignment, common_pb2.CHUNK_RUN_OUTCOME_FAILED, reason)
            return
        _LOG.info("%s: running %s of %r", self.label, what, assignment.job_name)
        run = ChunkRun(
            assignment,
            priority=self.priority,
            work_dir=self.config.work_dir,
            kill_grace_seconds=self.config.kill_grace_seconds,
            send_log=lambda log: self.send(agent_pb2.SessionRequest(log=log)),
            on_start=self._save,
            template=self.templates,
            send_progress=lambda p: self.send(agent_pb2.SessionRequest(progress=p)),
            lease=self.lease,
        )
        self.run = run
        self.chunks_started += 1
        self._save()  # on disk before the process exists: a restart finds it
        self._run_task = asyncio.create_task(self._run_chunk(run))

    def _end_unrun(
        self,
        assignment: agent_pb2.Assignment,
        outcome: common_pb2.ChunkRunOutcome.ValueType,
        message: str,
    ) -> None:
        """Report an assignment that never ran as ended now with `outcome`."""
        self._finish(
            agent_pb2.ChunkResult(
                job_id=assignment.job_id,
                chunk_id=assignment.chunk_id,
                fencing_token=assignment.fencing_token,
                exit_code=-1,
                outcome=outcome,
                message=message,
                end_time=now_timestamp(),
            )
        )

    async def _run_chunk(self, run: ChunkRun) -> None:
        try:
            result = await run.run()
        except Exception as exc:  # the agent's own fault: report it, never go silent
            _LOG.exception("%s: running the chunk failed", self.label)
            a = run.assignment
            result = agent_pb2.ChunkResult(
                job_id=a.job_id,
                chunk_id=a.chunk_id,
                fencing_token=a.fencing_token,
                exit_code=-1,
                outcome=common_pb2.CHUNK_RUN_OUTCOME_FAILED,
                message=f"agent error: {exc}",
                end_time=now_timestamp(),
            )
        self.run = None
        self._run_task = None
        _LOG.info(
            "%s: job %d chunk %d ended: %s (%s)",
            self.label,
            result.job_id,
            result.chunk_id,
            common_pb2.ChunkRunOutcome.Name(result.outcome),
            result.message,
        )
        self._finish(result)

    def _finish(self, result: agent_pb2.ChunkResult) -> None:
        self.pending[result.fencing_token] = result
        self._settled.clear()
        self._save()
        self.send(agent_pb2.SessionRequest(result=result))

    def _result_accepted(self, accepted: agent_pb2.ResultAccepted) -> None:
        if self.pending.pop(accepted.fencing_token, None) is None:
            return  # a duplicate answer to a re-sent result
        if not accepted.applied:
            _LOG.warning(
                "%s: result of job %d chunk %d was stale (token %d): it changed nothing",
                self.label,
                accepted.job_id,
                accepted.chunk_id,
                accepted.fencing_token,
            )
        self._save()
        if not self.pending:
            self._settled.set()

    async def _command(self, command: agent_pb2.Command) -> None:
        try:
            ack = await commands.execute(self, command)
        except Exception as exc:
            _LOG.exception("%s: command %d failed", self.label, command.command_id)
            ack = commands.Ack(False, f"agent error: {exc}")
        if not ack.success:
            _LOG.warning(
                "%s: command %d (%s) not carried out: %s",
                self.label,
                command.command_id,
                command.WhichOneof("command"),
                ack.error,
            )
        self.send(
            agent_pb2.SessionRequest(
                command_ack=agent_pb2.CommandAck(
                    command_id=command.command_id, success=ack.success, error_message=ack.error
                )
            )
        )
        if ack.after is not None:
            await ack.after()

    # --- used by commands and the agent --------------------------------------------------------

    async def kill_running(self, message: str) -> agent_pb2.RunningChunk | None:
        """Kill the running chunk (its result is reported KILLED); the chunk it was."""
        run, task = self.run, self._run_task
        if run is None or task is None:
            return None
        chunk = run.running_chunk()
        await run.kill(message)
        await asyncio.shield(task)
        return chunk

    async def wait_settled(self, timeout: float) -> bool:
        """Wait until the service has accepted every result (at most timeout)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        return not self.pending

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _save(self) -> None:
        try:
            self.state.save(
                self.number,
                self.node_id,
                list(self.pending.values()),
                self.run.running_chunk() if self.run is not None else None,
            )
        except OSError as exc:
            _LOG.error("%s: cannot write the state file: %s", self.label, exc)


class Session:
    """Carries one Instance over AgentService.Session, reconnecting forever."""

    def __init__(
        self,
        instance: Instance,
        channel: grpc.aio.Channel,
        facts: Callable[[], Awaitable[HostFacts]],
    ) -> None:
        self.instance = instance
        self.stub: agent_pb2_grpc.AgentServiceAsyncStub = agent_pb2_grpc.AgentServiceStub(channel)
        self.facts = facts

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = BACKOFF_START_SECONDS
        while not stopping.is_set():
            registered = stalled = False
            try:
                registered = await self._session(stopping)
            except grpc.aio.AioRpcError as exc:
                self._rpc_failed(exc)
            except Stalled as exc:
                # Register again at once: the dispatcher decides what is still ours.
                _LOG.warning("%s: %s; registering again", self.instance.label, exc)
                registered = stalled = True
            except (OSError, TimeoutError, ProtocolError) as exc:
                _LOG.warning("%s: session ended: %s", self.instance.label, exc)
            except Exception as exc:  # grpc.aio's state errors on a call that just ended
                _LOG.warning(
                    "%s: session ended: %s: %s", self.instance.label, type(exc).__name__, exc
                )
            finally:
                self.instance.on_disconnected()
            if registered:
                backoff = BACKOFF_START_SECONDS
            if stopping.is_set():
                return
            if stalled:
                continue
            delay = jittered(backoff)
            _LOG.info("%s: reconnecting in %.1fs", self.instance.label, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    def _rpc_failed(self, exc: grpc.aio.AioRpcError) -> None:
        code = exc.code()
        if code == grpc.StatusCode.FAILED_PRECONDITION and self.instance.node_id:
            _LOG.warning(
                "%s: the dispatcher refused node id %d (%s); registering as a new node",
                self.instance.label,
                self.instance.node_id,
                exc.details(),
            )
            self.instance.forget_node_id()
        elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            _LOG.warning("%s: dispatcher unreachable: %s", self.instance.label, exc.details())
        else:
            # Not a network fault (bad registration, no credentials): say so loudly,
            # but keep trying: an agent is a daemon, the dispatcher may get fixed.
            _LOG.error("%s: dispatcher said %s: %s", self.instance.label, code.name, exc.details())

    async def _session(self, stopping: asyncio.Event) -> bool:
        """One stream; True once it registered (the backoff starts again)."""
        instance = self.instance
        facts = await self.facts()
        enrolled = await self.stub.Enroll(
            agent_pb2.EnrollRequest(
                enrollment_secret=instance.config.enrollment_secret,
                host_name=facts.host_name,
                instance_number=instance.number,
            ),
            timeout=REGISTER_TIMEOUT_SECONDS,
        )
        metadata = (("authorization", f"Bearer {enrolled.token}"),)
        stub = self.stub

        async def fetch(template_id: int, version: str) -> agent_pb2.GetTemplateSourceResponse:
            return await stub.GetTemplateSource(
                agent_pb2.GetTemplateSourceRequest(template_id=template_id, version=version),
                metadata=metadata,
                timeout=TEMPLATE_FETCH_SECONDS,
            )

        instance.templates.fetch = fetch
        # messages go through call.write
        call = self.stub.Session(None, metadata=metadata)
        try:
            await call.write(instance.register_request(facts))
            first = await asyncio.wait_for(call.read(), REGISTER_TIMEOUT_SECONDS)
            if first is EOF:
                raise ProtocolError("the dispatcher closed the stream before accepting")
            assert isinstance(first, agent_pb2.SessionResponse)
            if first.WhichOneof("message") != "register_accepted":
                raise ProtocolError(
                    f"expected register_accepted, got {first.WhichOneof('message')}"
                )
            instance.on_accepted(first.register_accepted)
            watch = StallWatch(lambda: STALL_HEARTBEATS * instance.heartbeat_seconds)
            tasks = [
                asyncio.create_task(self._write(call)),
                asyncio.create_task(self._read(call, watch)),
                asyncio.create_task(self._beat()),
                asyncio.create_task(watch.tick()),
                asyncio.create_task(stopping.wait()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
            if not stopping.is_set():
                _LOG.warning("%s: the dispatcher closed the stream", instance.label)
            return True
        finally:
            call.cancel()

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:  # type: ignore[type-arg]
        queue = self.instance.outgoing
        while True:
            message = await queue.get()
            try:
                await call.write(message)
            finally:
                queue.task_done()

    async def _read(
        self,
        call: grpc.aio.StreamStreamCall,  # type: ignore[type-arg]
        watch: StallWatch,
    ) -> None:
        while True:
            message = await call.read()
            if message is EOF:
                return
            assert isinstance(message, agent_pb2.SessionResponse)
            if message.WhichOneof("message") == "assignment":
                watch.check()  # never start what waited in the socket while stalled
            await self.instance.handle(message)

    async def _beat(self) -> None:
        lease = self.instance.lease
        while True:
            await asyncio.sleep(jittered(self.instance.heartbeat_seconds))
            if lease.expired():
                raise LeaseLapsed(
                    f"the dispatcher recorded no heartbeat for {lease.seconds:g}s (the lease)"
                )
            self.instance.send(self.instance.heartbeat_request())


class ProtocolError(Exception):
    """The service broke the protocol's order of messages."""


class Stalled(Exception):
    """The agent's process did not run for longer than the dispatcher waits
    for its heartbeats (SIGSTOP, a paused VM, a swapped-out machine): the
    stream may hold assignments the dispatcher has since given to another
    node, so none is started and the agent registers again, where the
    dispatcher says what is still its (muster_services/nodes/delivery.py reconcile)."""


class LeaseLapsed(Stalled):
    """The stream is open but nothing answers the heartbeats (a frozen nodes
    replica, a half-open connection): the lease ran out and the render, if
    any, was stopped (muster_agent/lease.py); the agent registers again, through
    whichever replica answers."""


# How often the agent looks at its own clock, and after how many heartbeat
# intervals without running it counts as stalled.
STALL_CHECK_SECONDS = 0.5
STALL_HEARTBEATS = 2.0


class StallWatch:
    """Notices that the process stopped running for a while: a monotonic gap
    seen either by its own ticker or by the reader before an assignment
    (whichever the event loop runs first after the process resumes)."""

    def __init__(self, limit: Callable[[], float]) -> None:
        self._limit = limit
        self._alive_at = time.monotonic()
        # Once seen, a stall stays: the ticker and the reader may both run in the
        # loop's first turn after the process resumes, the ticker first.
        self._stall = ""

    def check(self) -> None:
        """Raise Stalled when the process did not run for longer than the limit
        (on this stream, ever)."""
        now = time.monotonic()
        gap, self._alive_at = now - self._alive_at, now
        if not self._stall and gap > self._limit():
            self._stall = f"the agent did not run for {gap:.1f}s (limit {self._limit():.1f}s)"
        if self._stall:
            raise Stalled(self._stall)

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(STALL_CHECK_SECONDS)
            self.check()
