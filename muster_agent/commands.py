"""What the agent does for each Command, and the acknowledgement it answers with.

Every command gets exactly one CommandAck (the session sends it from the
returned `Ack`); a command that cannot be carried out says why in words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from muster_agent.config import SYSTEM_EVENT_NAMES
from muster_agent.system import Priority, nice_value, signal_group
from muster_agent.template_host import TemplateFailed
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2

if TYPE_CHECKING:
    from muster_agent.session import Instance

_LOG = logging.getLogger("muster-agent")

DEFAULT_PYTHON_TIMEOUT_SECONDS = 30
# The reply travels in one gRPC message (4 MB by default): keep the end, where
# the traceback is.
MAX_PYTHON_OUTPUT_BYTES = 1 << 20
# A system-event command that has not ended by then is left running: a
# shutdown may well take longer, and it may take the agent with it.
SYSTEM_EVENT_WAIT_SECONDS = 60.0


@dataclass
class Ack:
    success: bool
    error: str = ""
    # Runs after the ack is queued (a soft restart must answer before it execs).
    after: Callable[[], Awaitable[None]] | None = None


async def execute(instance: Instance, command: agent_pb2.Command) -> Ack:
    kind = command.WhichOneof("command")
    if kind == "kill_process":
        return await kill_process(instance, command.kill_process)
    if kind == "pause":
        instance.paused = True
        _LOG.info("%s: paused: no new chunks", instance.label)
        return Ack(True)
    if kind == "resume":
        instance.paused = False
        _LOG.info("%s: resumed", instance.label)
        return Ack(True)
    if kind == "set_process_priority":
        return set_process_priority(instance, command.set_process_priority.process_priority)
    if kind == "soft_restart":
        return await soft_restart(instance)
    if kind == "set_realtime_log":
        # Logs are always streamed; the flag tells the service whether to forward them.
        instance.realtime_log = command.set_realtime_log.enabled
        return Ack(True)
    if kind == "system_event":
        return await system_event(
            command.system_event.event, instance.config.system_events, instance.config.work_dir
        )
    if kind == "run_python_code":
        code = command.run_python_code
        result = await run_python_code(
            code.request_id,
            code.code,
            code.timeout_seconds,
            instance.config.work_dir,
            instance.render_client_environment(),
        )
        instance.send(agent_pb2.SessionRequest(python_code_result=result))
        return Ack(True)
    if kind == "custom_message":
        message = command.custom_message
        sender = f" from {message.sender}" if message.sender else ""
        text = message.message.replace("\n", " ")
        _LOG.info("%s: message%s: %s", instance.label, sender, text)
        if message.template_id and instance.templates.host.loaded_any(message.template_id):
            # The template's onCustomMessage, when it defines one, in the host.
            try:
                await instance.templates.message(message.template_id, message.message)
            except TemplateFailed as exc:
                return Ack(False, _summary_of(str(exc)))
        return Ack(True)
    if kind == "report_status":
        instance.send(instance.heartbeat_request())
        return Ack(True)
    return Ack(False, f"unknown command {kind or '(none)'}: this agent is too old for it")


# Kills of tokens not yet assigned that an instance keeps (older ones go first).
KILLED_AHEAD_KEPT = 16


async def kill_process(instance: Instance, kill: agent_pb2.KillProcessCommand) -> Ack:
    run = instance.run
    token = kill.fencing_token
    running_it = run is not None and run.fencing_token == token
    # A newer token than any assigned: its assignment, sent before the kill but
    # apart from commands, has not arrived yet. The chunk ends killed when it
    # does (Instance._assign).
    ahead = not running_it and token > instance.last_token
    if not running_it and not ahead:
        running = f"token {run.fencing_token}" if run is not None else "nothing"
        return Ack(False, f"stale: token {token} is not running here ({running} is)")
    if ahead:
        instance.killed_ahead.add(token)
        for old in sorted(instance.killed_ahead)[:-KILLED_AHEAD_KEPT]:
            instance.killed_ahead.discard(old)
    if kill.follow_up == common_pb2.KILL_FOLLOW_UP_PAUSE:
        # Paused before the kill ends, so no assignment can slip in between.
        instance.paused = True
    _LOG.info(
        "%s: killing job %d chunk %d (token %d)%s",
        instance.label,
        kill.job_id,
        kill.chunk_id,
        token,
        " before its assignment arrived" if ahead else "",
    )
    if running_it:
        await instance.kill_running("killed on request")
    return Ack(True)


def set_process_priority(instance: Instance, priority: Priority) -> Ack:
    if nice_value(priority) is None:
        return Ack(True)  # UNSPECIFIED: keep the current priority
    instance.priority = priority
    run = instance.run
    if run is None:
        return Ack(True)
    try:
        run.set_priority(priority)
    except OSError as exc:
        return Ack(
            False,
            f"cannot renice process group {run.pid} to nice {nice_value(priority)}:"
            f" {exc.strerror} (raising priority needs privileges); later chunks will try again",
        )
    return Ack(True)


async def soft_restart(instance: Instance) -> Ack:
    hooks = instance.hooks
    if hooks is None:
        return Ack(False, "soft restart is not available in this agent")
    _LOG.warning("%s: soft restart requested: stopping chunks, then restarting", instance.label)
    await hooks.prepare_restart()
    return Ack(True, after=hooks.restart)


async def system_event(event: int, configured: Mapping[str, Sequence[str]], cwd: Path) -> Ack:
    name = SYSTEM_EVENT_NAMES.get(event)
    if name is None:
        return Ack(False, f"unknown system event {event}")
    argv = configured.get(name)
    if not argv:
        # Never a default: powering off a machine must be something its owner chose.
        return Ack(False, f"system event {name} is not configured on this node")
    _LOG.warning("system event %s: running %s", name, " ".join(argv))
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return Ack(False, f"system event {name}: cannot run {argv[0]}: {exc.strerror or exc}")
    try:
        output, _ = await asyncio.wait_for(process.communicate(), SYSTEM_EVENT_WAIT_SECONDS)
    except TimeoutError:
        return Ack(True)  # still running (a shutdown in progress): it was carried out
    if process.returncode != 0:
        tail = output.decode("utf-8", "replace").strip()[-300:]
        return Ack(False, f"system event {name}: exit code {process.returncode}: {tail}")
    return Ack(True)


async def run_python_code(
    request_id: str,
    code: str,
    timeout_seconds: int,
    cwd: Path,
    environment: Mapping[str, str] | None = None,
) -> agent_pb2.PythonCodeResult:
    """Run code in a separate interpreter (never in the agent: it could block
    or crash it); stdout and stderr interleaved, as the user would see them.
    `environment` is added to the agent's (the renderclient context)."""
    timeout = timeout_seconds if timeout_seconds > 0 else DEFAULT_PYTHON_TIMEOUT_SECONDS
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            cwd=cwd,
            # Unbuffered: keep the interleaving true.
            env={**os.environ, **(environment or {}), "PYTHONUNBUFFERED": "1"},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return agent_pb2.PythonCodeResult(
            request_id=request_id, output=f"cannot start Python: {exc}", exit_code=-1
        )
    assert process.stdout is not None
    output = bytearray()
    timed_out = False

    async def collect() -> None:
        assert process.stdout is not None
        while block := await process.stdout.read(65536):
            output.extend(block)
            if len(output) > 2 * MAX_PYTHON_OUTPUT_BYTES:  # bounded, whatever the code prints
                del output[:-MAX_PYTHON_OUTPUT_BYTES]

    try:
        await asyncio.wait_for(asyncio.gather(collect(), process.wait()), timeout)
    except TimeoutError:
        timed_out = True
        signal_group(process.pid, signal.SIGKILL)  # the code's own children too
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
    text = bytes(output[-MAX_PYTHON_OUTPUT_BYTES:]).decode("utf-8", "replace")
    if len(output) > MAX_PYTHON_OUTPUT_BYTES:
        text = "[output truncated]\n" + text
    return agent_pb2.PythonCodeResult(
        request_id=request_id,
        output=text,
        exit_code=process.returncode if process.returncode is not None else -1,
        timed_out=timed_out,
    )


def _summary_of(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else text)[:500]
