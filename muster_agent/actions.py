"""A chunk's custom actions and inline expressions on the node.

Before the template builds the chunk's command, the job's string attributes
(the command-line fields) and environment values holding `<%` are evaluated
(muster_gateway/expressions.py, in the instance's template host: "renderclient"
context, `job` and `chunk` bound), with the pre- and post-chunk actions'
command lines. An expression that raises fails the chunk with its traceback
in the chunk's log.

The pre-chunk action runs just before the render process, the post-chunk
action just after it (when it ended by itself, not killed or timed out):
each through the system shell, with the render process's environment,
working folder and user, in a process group of its own that dies with the
agent (muster_agent/launch.py) or when its lease runs out, within the chunk's
timeout. Their output goes to the chunk's log (stdout and stderr lines
between two agent lines). A pre-chunk action that fails (exit code not 0,
or it cannot start) fails the chunk and the render never starts; a failing
post-chunk action fails the chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from muster_agent.system import RunAs, launch_command, signal_group
from muster_agent.template_host import TemplateFailed, TemplateHost
from muster_gateway.expressions import (
    ACTION_ATTRIBUTES,
    OPEN,
    POST_CHUNK_ACTION,
    PRE_CHUNK_ACTION,
    ExpressionError,
    Field,
    evaluate,
    has_code,
    request,
    shell_command,
    string_attribute,
    values_of,
)
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2

Sink = Callable[[common_pb2.LogLine], None]
_READ_BYTES = 64 * 1024
_KILL_GRACE_SECONDS = 5.0
_POLL_SECONDS = 0.05
_ATTRIBUTE = "job.attributes"
_JOB_ENVIRONMENT = "job.environment"
_ENVIRONMENT = "environment"


def _line(text: str, stream: common_pb2.LogStream.ValueType) -> common_pb2.LogLine:
    from muster_agent.runner import now_timestamp

    return common_pb2.LogLine(time=now_timestamp(), text=text, stream=stream)


@dataclass(frozen=True)
class Prepared:
    """The assignment with its expressions evaluated, and the chunk's actions."""

    assignment: agent_pb2.Assignment
    pre_action: str
    post_action: str


def _fields(a: agent_pb2.Assignment) -> list[Field]:
    # A look at the bytes first: most chunks have neither (a few µs, not a
    # walk through every attribute and variable).
    data = a.SerializeToString()
    if OPEN.encode() not in data and b"_chunk_action" not in data:
        return []
    fields = [
        Field(f"{_ATTRIBUTE}[{x.name}]", x.string_value)
        for x in a.job.attributes
        if x.WhichOneof("value") == "string_value"
        and x.name not in ACTION_ATTRIBUTES
        and has_code(x.string_value)
    ]
    for prefix, environment in (
        (_JOB_ENVIRONMENT, a.job.environment),
        (_ENVIRONMENT, a.environment),
    ):
        fields.extend(
            Field(f"{prefix}[{key}]", value)
            for key, value in sorted(environment.items())
            if has_code(value)
        )
    for name in (PRE_CHUNK_ACTION, POST_CHUNK_ACTION):
        text = string_attribute(a.job, name)
        if text.strip():
            fields.append(Field(f"{_ATTRIBUTE}[{name}]", text, action=True))
    return fields


async def prepare(
    a: agent_pb2.Assignment, timeout: float, host: TemplateHost | None = None
) -> Prepared:
    """Evaluate the assignment's expressions (raises ExpressionError): in the
    instance's template host when given, else in a child process. An
    assignment without expressions or actions is given back as it is."""
    fields = _fields(a)
    if not fields:
        return Prepared(a, "", "")
    if host is not None and any(has_code(f.text) for f in fields):
        try:
            answered = await asyncio.to_thread(
                host.call, {"op": "expand", **request(fields, a.job, a.chunk)}
            )
        except TemplateFailed as exc:
            why = _first_line(str(exc)).removeprefix("template callback (expand): ")
            raise ExpressionError("", f"inline expressions: {why}", str(exc)) from None
        values = values_of(answered)
    else:
        values = await asyncio.to_thread(
            evaluate, fields, a.job, a.chunk, context="renderclient", timeout=timeout
        )
    evaluated = agent_pb2.Assignment()
    evaluated.CopyFrom(a)
    for attribute in evaluated.job.attributes:
        key = f"{_ATTRIBUTE}[{attribute.name}]"
        if key in values and attribute.name not in ACTION_ATTRIBUTES:
            attribute.string_value = values[key]
    for prefix, environment in (
        (_JOB_ENVIRONMENT, evaluated.job.environment),
        (_ENVIRONMENT, evaluated.environment),
    ):
        for key in list(environment):
            environment[key] = values.get(f"{prefix}[{key}]", environment[key])
    return Prepared(
        evaluated,
        values.get(f"{_ATTRIBUTE}[{PRE_CHUNK_ACTION}]", ""),
        values.get(f"{_ATTRIBUTE}[{POST_CHUNK_ACTION}]", ""),
    )


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), text)


class ActionRun:
    """One chunk action's process: started, its output sent to the chunk's
    log, waited for; killable. `run` answers None on success, else why not."""

    def __init__(self, what: str, command: str, sink: Sink) -> None:
        self.what = what
        self.command = command
        self._sink = sink
        self._pid = 0
        self._killed = ""

    def _agent(self, text: str) -> None:
        self._sink(_line(text, common_pb2.LOG_STREAM_AGENT))

    async def run(
        self,
        *,
        cwd: str,
        env: Mapping[str, str],
        identity: RunAs | None,
        timeout: float,
        lease: Path | None = None,
    ) -> str | None:
        if self._killed:
            return self._killed
        self._agent(f"{self.what}: {self.command}")
        executable, arguments = shell_command(self.command)
        status_read, status_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *launch_command(executable, arguments, status_write, identity, lease),
                cwd=cwd,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=(status_write,),
            )
        except OSError as exc:
            os.close(status_read)
            return self._failed(f"cannot start: {exc.strerror or exc}")
        finally:
            os.close(status_write)
        self._pid = process.pid
        readers = [
            asyncio.create_task(self._pump(process.stdout, common_pb2.LOG_STREAM_STDOUT)),
            asyncio.create_task(self._pump(process.stderr, common_pb2.LOG_STREAM_STDERR)),
        ]
        try:
            await self._wait(process, timeout)
        finally:
            # What the action left behind in its group goes with it.
            signal_group(self._pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*readers), _KILL_GRACE_SECONDS)
            for reader in readers:
                reader.cancel()
            failure = _read_status(status_read)
        if failure:
            return self._failed(f"cannot start: {failure.partition(' ')[2] or failure}")
        if self._killed:
            return self._failed(self._killed)
        code = process.returncode
        if code != 0:
            return self._failed(f"exit code {code}")
        self._agent(f"{self.what} succeeded")
        return None

    def _failed(self, why: str) -> str:
        message = f"{self.what} failed: {why}"
        self._agent(message)
        return message

    def kill(self, message: str) -> None:
        """Stop the action (its wait sends the signals)."""
        self._killed = self._killed or message

    async def _wait(self, process: asyncio.subprocess.Process, timeout: float) -> None:
        """Until the action's process ends (its exit code, not its pipes: a
        background child may hold them), stopping it at the timeout or a kill."""
        deadline = time.monotonic() + timeout if timeout > 0 else None
        stop_at: float | None = None
        while process.returncode is None:
            now = time.monotonic()
            if stop_at is None and (self._killed or (deadline is not None and now > deadline)):
                self._killed = self._killed or f"timed out after {timeout:g}s"
                signal_group(self._pid, signal.SIGTERM)
                stop_at = now + _KILL_GRACE_SECONDS
            elif stop_at is not None and now > stop_at:
                signal_group(self._pid, signal.SIGKILL)
            await asyncio.sleep(_POLL_SECONDS)

    async def _pump(
        self, reader: asyncio.StreamReader | None, stream: common_pb2.LogStream.ValueType
    ) -> None:
        if reader is None:
            return
        pending = b""
        while data := await reader.read(_READ_BYTES):
            *lines, pending = (pending + data).split(b"\n")
            for raw in lines:
                self._sink(_line(raw.rstrip(b"\r").decode("utf-8", "replace"), stream))
        if pending:
            self._sink(_line(pending.decode("utf-8", "replace"), stream))


def _read_status(fd: int) -> str:
    """What the launcher wrote to its status pipe (it has exited)."""
    os.set_blocking(fd, False)
    data = b""
    try:
        with contextlib.suppress(BlockingIOError, OSError):
            while part := os.read(fd, 4096):
                data += part
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")


__all__ = ["ActionRun", "ExpressionError", "Prepared", "prepare"]
