"""Running one chunk: the render process, its output, its end and its outcome.

The process gets a session (and so a process group) of its own, so a kill or
a timeout reaches every process the renderer started, not only the one the
agent knows. Its output is read line by line from both pipes, checked
against the template's patterns and sent as ChunkLog batches; the outcome is
decided once the process group is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from muster_agent.actions import ActionRun, ExpressionError, prepare
from muster_agent.lease import Lease
from muster_agent.system import (
    CannotRunAs,
    Priority,
    RunAs,
    group_alive,
    group_members,
    launch_command,
    nice_value,
    process_start_seconds,
    run_as,
    set_group_priority,
    signal_group,
)
from muster_agent.template_host import Started, TemplateFailed, Verdict
from muster_gateway.expressions import DEFAULT_SECONDS
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2

if TYPE_CHECKING:
    from typing import TypeAlias  # novermin (annotations only: never imported at run time)

    from muster_agent.templates import TemplateRunner
    from muster_gateway.progress import ProgressParser

BATCH_SECONDS = 0.2
BATCH_LINES = 200
# One line longer than this is sent in pieces (a renderer printing a progress
# bar without newlines must not grow the agent's memory without bound).
MAX_LINE_BYTES = 64 * 1024
# After the main process exits, how long its pipes may stay open (held by a
# background child) before the rest of the group is killed.
DRAIN_SECONDS = 2.0
# How much of a pipe is read at once; lines are cut out of it.
READ_BYTES = 64 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")
POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 1.0
# A run of a template keeps the tail of its log for the template's checks.
MAX_KEPT_LOG_BYTES = 16 * 1024 * 1024
# At most this often: a progress report per chunk, an onCheckLog call while it runs.
PROGRESS_SECONDS = 1.0
CHECK_SECONDS = 1.0
# The template's verdicts as run outcomes.
TEMPLATE_OUTCOMES = {
    "succeeded": common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED,
    "warnings": common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED_WITH_WARNINGS,
    "failed": common_pb2.CHUNK_RUN_OUTCOME_FAILED,
}

Outcome: TypeAlias = common_pb2.ChunkRunOutcome.ValueType
LogStream: TypeAlias = common_pb2.LogStream.ValueType
LogMark: TypeAlias = common_pb2.LogMark.ValueType


def now_timestamp() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp


# How far a process's start may be from the one recorded for it and still be it
# (btime has a one-second resolution; the record is taken just after the start).
SAME_PROCESS_SECONDS = 3.0


def _same_group(pgid: int, recorded: float) -> bool:
    """Whether what is left of process group `pgid` is still the chunk's that
    started at `recorded` (a recycled process id is left alone)."""
    started = process_start_seconds(pgid)
    if started is not None:  # the leader (the launcher) lives: is it the same process?
        return abs(started - recorded) <= SAME_PROCESS_SECONDS
    # The leader is gone; a group id is not given to a new process while the
    # group has members, so members that started after the chunk are its own
    # (background processes it left behind).
    for member in group_members(pgid) or []:
        member_started = process_start_seconds(member)
        if member_started is not None and member_started >= recorded - SAME_PROCESS_SECONDS:
            return True
    return False


def end_orphan(running: agent_pb2.RunningChunk) -> agent_pb2.ChunkResult:
    """The result of a chunk whose agent died while it ran (found in the state
    file by the next agent process): what is left of its process group is
    killed, if it is still the same process (a recycled process id is left
    alone), and the run is reported failed with its own fencing token.

    On Linux the group is normally gone already (the launcher killed it when
    the agent died); this is the second line, and the only one elsewhere."""
    what = "the agent stopped while this chunk ran"
    recorded = running.start_time.seconds + running.start_time.nanos / 1e9
    if running.pid and _same_group(running.pid, recorded):
        signal_group(running.pid, signal.SIGKILL)
        what += f"; its process group {running.pid} was killed on the agent's restart"
    return agent_pb2.ChunkResult(
        job_id=running.job_id,
        chunk_id=running.chunk_id,
        fencing_token=running.fencing_token,
        exit_code=-1,
        outcome=common_pb2.CHUNK_RUN_OUTCOME_FAILED,
        message=what,
        end_time=now_timestamp(),
    )


# The process groups of the chunks this agent runs now: killed on every way
# out of the process (kill_live_groups), so none outlives the agent unnoticed.
_LIVE_GROUPS: set[int] = set()


def kill_live_groups() -> int:
    """SIGKILL every chunk process group still running; how many there were.
    For the agent's exit paths: synchronous, safe to call more than once."""
    groups = list(_LIVE_GROUPS)
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)
    _LIVE_GROUPS.clear()
    return len(groups)


class LogBatcher:
    """Collects lines and hands them on every BATCH_SECONDS or BATCH_LINES,
    whichever comes first: one message per line would swamp the stream."""

    def __init__(
        self,
        send: Callable[[list[common_pb2.LogLine]], None],
        seconds: float = BATCH_SECONDS,
        lines: int = BATCH_LINES,
    ) -> None:
        self._send = send
        self._seconds = seconds
        self._max = lines
        self._lines: list[common_pb2.LogLine] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, line: common_pb2.LogLine) -> None:
        self._lines.append(line)
        if len(self._lines) >= self._max:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._seconds, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            self._send(lines)


def _compile(patterns: list[str], kind: str, notes: list[str]) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            # A broken template pattern must not fail every chunk of the job.
            notes.append(f"ignoring invalid {kind} pattern {pattern!r}: {exc}")
    return compiled


class KeptLog:
    """The text of a run's log, at most `limit` bytes (the tail is kept)."""

    def __init__(self, limit: int = MAX_KEPT_LOG_BYTES) -> None:
        self.limit = limit
        self._lines: deque[str] = deque()
        self._size = 0

    def add(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self.limit and len(self._lines) > 1:
            self._size -= len(self._lines.popleft()) + 1

    def take(self) -> str:
        """The text so far, and forget it."""
        text = self.text()
        self._lines.clear()
        self._size = 0
        return text

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self._lines)

    def __bool__(self) -> bool:
        return bool(self._lines)


class ChunkRun:
    """One run of one assigned chunk as a child process group.

    When the assignment names a template version, the template's code (in the
    instance's template host) builds the command, reads the progress from the
    log, may abort the run while it goes (onCheckLog) and judges its end."""

    def __init__(
        self,
        assignment: agent_pb2.Assignment,
        *,
        priority: Priority,
        work_dir: Path,
        kill_grace_seconds: float,
        send_log: Callable[[agent_pb2.ChunkLog], None],
        batch_seconds: float = BATCH_SECONDS,
        batch_lines: int = BATCH_LINES,
        on_start: Callable[[], None] | None = None,
        template: TemplateRunner | None = None,
        send_progress: Callable[[agent_pb2.ChunkProgress], None] | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.assignment = assignment
        # The instance's lease: the launcher stops the render when it runs out.
        self._lease = lease
        self._template = template
        self._send_progress = send_progress
        # Told once the process exists (its pid is known): the state file records it.
        self._on_start = on_start
        self.priority = priority
        self.work_dir = work_dir
        self.kill_grace_seconds = kill_grace_seconds
        self._send_log = send_log
        self._batcher = LogBatcher(self._send_lines, batch_seconds, batch_lines)
        self.pid = 0
        self.start_time = now_timestamp()
        self._process: asyncio.subprocess.Process | None = None
        self._kill_message = ""
        self._timed_out = False
        self._terminating: asyncio.Future[None] | None = None
        self._error_line = ""
        self._warning_line = ""
        notes: list[str] = []
        self._errors = _compile(list(assignment.log_error_patterns), "error", notes)
        self._warnings = _compile(list(assignment.log_warning_patterns), "warning", notes)
        self._notes = notes
        # Template runs: the log for onCheckLog, the progress, the template's word.
        self._started: Started | None = None
        self._log = KeptLog()
        self._unchecked = KeptLog()
        self._parser: ProgressParser | None = None
        self._progress: float | None = None
        self._progress_sent: float | None = None
        self._progress_at = 0.0
        self._progress_timer: asyncio.TimerHandle | None = None
        self._ended = asyncio.Event()
        self._checker: asyncio.Task[None] | None = None
        self._abort_message = ""
        self._template_failure = ""
        # Custom actions (muster_agent/actions.py): the post-chunk one, the one running.
        self._post_action = ""
        self._action: ActionRun | None = None

    # --- what the session asks -----------------------------------------------------------

    @property
    def fencing_token(self) -> int:
        return self.assignment.fencing_token

    def running_chunk(self) -> agent_pb2.RunningChunk:
        return agent_pb2.RunningChunk(
            job_id=self.assignment.job_id,
            chunk_id=self.assignment.chunk_id,
            fencing_token=self.assignment.fencing_token,
            pid=self.pid,
            start_time=self.start_time,
        )

    def set_priority(self, priority: Priority) -> None:
        """Renice the whole process group now (raises OSError); later chunks
        get the priority from the instance."""
        if nice_value(priority) is None:
            return
        self.priority = priority
        if self.pid and self._process is not None and self._process.returncode is None:
            set_group_priority(self.pid, priority)

    async def kill(self, message: str = "killed on request") -> None:
        """Stop the process group; returns once it is gone (or SIGKILLed)."""
        if not self._kill_message and not self._timed_out:
            self._kill_message = message
        if self._action is not None:
            self._action.kill(self._kill_message)
        await self._terminate()

    # --- the run ----------------------------------------------------------------------------

    async def run(self) -> agent_pb2.ChunkResult:
        a = self.assignment
        if self._kill_message:  # killed before it could start
            return self._result(-1, common_pb2.CHUNK_RUN_OUTCOME_KILLED, self._kill_message)
        for note in self._notes:
            self._agent_line(note)
        executable, arguments = a.executable, tuple(a.arguments)
        cwd = a.working_directory or str(self.work_dir)
        env = {**os.environ, **dict(a.environment)}
        if a.template_version:
            refused = await self._prepare() or await self._begin_template()
            if refused is not None:
                return refused
            started = self._started
            assert started is not None
            executable, arguments = started.executable, started.arguments
            cwd = started.working_directory or str(self.work_dir)
            # The agent's own environment under the template's.
            env = {**os.environ, **started.environment}
        try:
            identity = run_as(a.run_as_user)
        except CannotRunAs as exc:
            return self._refuse(str(exc))
        if identity is not None:
            env.update(identity.environment())
            self._agent_line(f"running as user {identity.user} (uid {identity.uid})")
        refused = await self._pre_action(cwd, env, identity)
        if refused is not None:
            return refused
        if self._lease is not None and self._lease.expired():
            await self._forget_template_run()
            return self._lease_ran_out(-1)
        self._agent_line(f"starting {executable} {' '.join(arguments)} in {cwd}")
        # The launcher (muster_agent/launch.py) is the group's leader and starts the
        # renderer; it tells a failure to start through this pipe.
        status_read, status_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *launch_command(
                    executable,
                    arguments,
                    status_write,
                    identity,
                    self._lease.path if self._lease is not None else None,
                ),
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=(status_write,),
                limit=MAX_LINE_BYTES,
            )
        except OSError as exc:
            os.close(status_read)
            await self._forget_template_run()
            return self._refuse(f"cannot start {executable}: {exc.strerror or exc}")
        finally:
            os.close(status_write)
        self._process = process
        self.pid = process.pid  # == its process group id (start_new_session)
        _LIVE_GROUPS.add(self.pid)
        try:
            result = await self._run_started(process, status_read, executable)
        finally:
            _LIVE_GROUPS.discard(self.pid)
        return await self._after_action(result, cwd, env, identity)

    async def _run_started(
        self, process: asyncio.subprocess.Process, status: int, executable: str
    ) -> agent_pb2.ChunkResult:
        a = self.assignment
        self.start_time = now_timestamp()
        if self._on_start is not None:
            self._on_start()
        failure = await _read_all(status)
        if failure:  # the launcher could not start the renderer: no render process
            await process.wait()
            await self._forget_template_run()
            _, _, reason = failure.partition(" ")
            return self._refuse(f"cannot start {executable}: {reason or failure}")
        self._apply_priority()
        # The chunk is running (no longer only assigned) once its process is.
        self._progress_changed(0.0)
        if self._kill_message:  # the kill came while the process was starting
            self._terminate()
        readers = [
            asyncio.create_task(self._pump(process.stdout, common_pb2.LOG_STREAM_STDOUT)),
            asyncio.create_task(self._pump(process.stderr, common_pb2.LOG_STREAM_STDERR)),
        ]
        if self._started is not None and self._started.checks_log:
            self._checker = asyncio.create_task(self._check_while_running())
        exit_code = await self._wait(process)
        self._ended.set()
        if self._checker is not None:
            await self._checker
        if self._terminating is not None:
            await self._terminating
        await self._drain(readers)
        if self._kill_message:
            self._agent_line(self._kill_message)
        elif self._timed_out:
            self._agent_line(f"timed out after {a.timeout_seconds}s: process group killed")
        elif self._abort_message:
            self._agent_line(f"aborted by the template: {self._abort_message}")
        if self._progress_timer is not None:
            self._progress_timer.cancel()
        if (
            exit_code == -signal.SIGKILL
            and not self._kill_message
            and not self._timed_out
            and self._lease is not None
            and self._lease.expired()
        ):
            await self._forget_template_run()
            return self._lease_ran_out(exit_code)
        verdict = await self._template_verdict(exit_code)
        outcome, message = self._judge(exit_code, verdict)
        self._agent_line(f"process {self.pid} exited with code {exit_code}: {message}")
        self._batcher.flush()
        return self._result(exit_code, outcome, message)

    # --- custom actions and inline expressions (muster_agent/actions.py) ------------------------

    async def _prepare(self) -> agent_pb2.ChunkResult | None:
        """Evaluate the job's expressions; a result when one fails."""
        host = self._template.host if self._template is not None else None
        try:
            prepared = await prepare(self.assignment, DEFAULT_SECONDS, host)
        except ExpressionError as exc:
            return self._refuse(_summary(str(exc)), exc.detail)
        self.assignment = prepared.assignment
        self._post_action = prepared.post_action
        if prepared.pre_action:
            self._action = ActionRun("pre-chunk action", prepared.pre_action, self._batcher.add)
        return None

    async def _run_action(
        self, action: ActionRun, cwd: str, env: dict[str, str], identity: RunAs | None
    ) -> str | None:
        self._action = action
        try:
            return await action.run(
                cwd=cwd,
                env=env,
                identity=identity,
                timeout=self.assignment.timeout_seconds,
                lease=self._lease.path if self._lease is not None else None,
            )
        finally:
            self._action = None

    async def _pre_action(
        self, cwd: str, env: dict[str, str], identity: RunAs | None
    ) -> agent_pb2.ChunkResult | None:
        """The pre-chunk action; a failed (or killed) result when it fails."""
        if self._action is None:
            return None
        failure = await self._run_action(self._action, cwd, env, identity)
        if failure is None and not self._kill_message:
            return None
        await self._forget_template_run()
        self._batcher.flush()
        if self._kill_message:
            return self._result(-1, common_pb2.CHUNK_RUN_OUTCOME_KILLED, self._kill_message)
        assert failure is not None
        return self._result(-1, common_pb2.CHUNK_RUN_OUTCOME_FAILED, failure)

    async def _after_action(
        self,
        result: agent_pb2.ChunkResult,
        cwd: str,
        env: dict[str, str],
        identity: RunAs | None,
    ) -> agent_pb2.ChunkResult:
        """The post-chunk action after a render that ended by itself: its
        failure fails a chunk that had not failed already."""
        if (
            not self._post_action
            or self._kill_message
            or self._timed_out
            or result.outcome == common_pb2.CHUNK_RUN_OUTCOME_LOST
        ):
            return result
        action = ActionRun("post-chunk action", self._post_action, self._batcher.add)
        failure = await self._run_action(action, cwd, env, identity)
        self._batcher.flush()
        result.end_time.CopyFrom(now_timestamp())  # the run ends with its action
        if self._kill_message:  # killed while the action ran
            result.outcome, result.message = common_pb2.CHUNK_RUN_OUTCOME_KILLED, self._kill_message
        elif failure is not None and result.outcome != common_pb2.CHUNK_RUN_OUTCOME_FAILED:
            result.outcome = common_pb2.CHUNK_RUN_OUTCOME_FAILED
            result.message = failure
        return result

    # --- template runs ------------------------------------------------------------------------

    async def _begin_template(self) -> agent_pb2.ChunkResult | None:
        """Build the command through the template; a result when the chunk
        cannot start (the template failed, its code cannot be had, a kill)."""
        a = self.assignment
        what = f"template {a.template_id} version {a.template_version}"
        if self._template is None:
            return self._refuse(f"{what}: this agent instance runs no template code")
        try:
            self._started = await self._template.begin(a)
        except TemplateFailed as exc:
            return self._refuse(_summary(str(exc)), str(exc))
        except grpc.RpcError as exc:
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            return self._refuse(f"cannot get the code of {what}: {details}")
        except (OSError, ConnectionError) as exc:
            return self._refuse(f"cannot get the code of {what}: {exc}")
        started = self._started
        if self._kill_message:  # killed while the template built the command
            await self._forget_template_run()
            return self._result(-1, common_pb2.CHUNK_RUN_OUTCOME_KILLED, self._kill_message)
        if started.progress_regexes or started.frame_done_regexes:
            # Imported by the first chunk that reads progress: an idle agent
            # keeps the template engine's modules out of memory (docs/agent.md).
            from muster_gateway.progress import ProgressParser

            self._parser = ProgressParser(
                started.progress_regexes, started.frame_done_regexes, started.frames
            )
        return None

    async def _check_while_running(self) -> None:
        """onCheckLog on the new lines, at most once a second: an abort
        verdict, or a callback that fails, kills the process group now."""
        assert self._template is not None
        while not self._ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), CHECK_SECONDS)
            if self._ended.is_set() or not self._unchecked:
                continue
            try:
                verdict = await self._template.check(self.fencing_token, self._unchecked.take())
            except TemplateFailed as exc:
                self._callback_failed(str(exc))
                self._terminate()
                return
            if verdict is not None and verdict.abort:
                self._abort_message = verdict.message
                self._terminate()
                return

    async def _template_verdict(self, exit_code: int) -> Verdict | None:
        """The template's judgement of a process that ended by itself."""
        if self._started is None or self._template is None:
            return None
        if self._kill_message or self._timed_out or self._abort_message or self._template_failure:
            await self._forget_template_run()
            return None
        try:
            return await self._template.end(
                self.fencing_token,
                self._log.text(),
                exit_code,
                self.assignment.job.logs_error_check,
            )
        except TemplateFailed as exc:
            self._callback_failed(str(exc))
            return None

    async def _forget_template_run(self) -> None:
        if self._started is not None and self._template is not None:
            await self._template.forget(self.fencing_token)

    def _callback_failed(self, text: str) -> None:
        if not self._template_failure:
            self._template_failure = _summary(text)
            for line in text.splitlines():
                self._agent_line(line)

    def _progress_changed(self, value: float) -> None:
        self._progress = value
        if self._send_progress is None or self._progress_timer is not None:
            return
        wait = self._progress_at + PROGRESS_SECONDS - time.monotonic()
        if wait <= 0:
            self._report_progress()
        else:
            self._progress_timer = asyncio.get_running_loop().call_later(
                wait, self._report_progress
            )

    def _report_progress(self) -> None:
        self._progress_timer = None
        if self._send_progress is None or self._progress is None:
            return
        if self._progress == self._progress_sent:
            return
        assert self._progress is not None
        a = self.assignment
        self._progress_sent, self._progress_at = self._progress, time.monotonic()
        self._send_progress(
            agent_pb2.ChunkProgress(
                job_id=a.job_id,
                chunk_id=a.chunk_id,
                fencing_token=a.fencing_token,
                progress=self._progress,
            )
        )

    async def _wait(self, process: asyncio.subprocess.Process) -> int:
        """The exit code of the render process, killing its group at the timeout.

        asyncio's `wait()` also waits for the pipes to close, which a child
        left in the background may never do; the exit code itself is known as
        soon as the process is reaped, so it is checked too (more rarely as
        the run goes on: an idle render costs no CPU).
        """
        timeout = self.assignment.timeout_seconds
        deadline = time.monotonic() + timeout if timeout > 0 else None
        waiting = asyncio.ensure_future(process.wait())
        step = POLL_SECONDS
        try:
            while process.returncode is None:
                wait = step
                if deadline is not None and not self._timed_out:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        if not self._kill_message:
                            self._timed_out = True
                            self._terminate()
                    else:
                        wait = min(wait, left)
                done, _ = await asyncio.wait({waiting}, timeout=wait)
                if done:
                    break
                step = min(step * 2, MAX_POLL_SECONDS)
        finally:
            waiting.cancel()
        assert process.returncode is not None
        return process.returncode

    async def _drain(self, readers: list[asyncio.Task[None]]) -> None:
        """Read the pipes to their end; a background child that keeps them
        open past DRAIN_SECONDS is killed with the rest of its group."""
        _, pending = await asyncio.wait(readers, timeout=DRAIN_SECONDS)
        if pending or group_alive(self.pid):
            self._agent_line("killing processes left behind by the render process")
            signal_group(self.pid, signal.SIGKILL)
            _, pending = await asyncio.wait(readers, timeout=DRAIN_SECONDS)
            for reader in pending:
                reader.cancel()

    def _terminate(self) -> asyncio.Future[None]:
        # One termination however many kills and timeouts ask for it.
        if self._process is None:  # not started yet: run() terminates it once it is
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        if self._terminating is None:
            self._terminating = asyncio.ensure_future(self._terminate_group(self._process))
        return self._terminating

    async def _terminate_group(self, process: asyncio.subprocess.Process) -> None:
        signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_seconds
        while time.monotonic() < deadline:
            if process.returncode is not None and not group_alive(self.pid):
                return
            await asyncio.sleep(POLL_SECONDS)
        signal_group(self.pid, signal.SIGKILL)
        # The exit code, not process.wait(): that also waits for the pipes, which
        # a process that left the group could hold open forever.
        while process.returncode is None:
            await asyncio.sleep(POLL_SECONDS)

    def _apply_priority(self) -> None:
        # Set after the start, on the whole group: a preexec_fn would run in a
        # forked copy of a multi-threaded process (gRPC's threads), which is unsafe.
        try:
            set_group_priority(self.pid, self.priority)
        except ProcessLookupError:
            pass  # the whole group already ended: nothing left to renice
        except OSError as exc:
            self._agent_line(
                f"cannot set priority nice {nice_value(self.priority)}: {exc.strerror};"
                " running at the agent's priority"
            )

    async def _pump(self, reader: asyncio.StreamReader | None, stream: LogStream) -> None:
        """Lines end at \n, \r\n or a lone \r: renderers that redraw a progress
        line with \r (ffmpeg's stats, V-Ray, Arnold) give a line per redraw,
        as it is drawn, not one huge line when the process ends."""
        if reader is None:
            return
        pending = b""
        after_cr = False  # the last chunk ended with \r: a \n opening the next ends nothing
        while True:
            data = await reader.read(READ_BYTES)
            if not data:
                if pending:
                    self._line(pending, stream)
                return
            if after_cr and data.startswith(b"\n"):
                data = data[1:]
            after_cr = data.endswith(b"\r")
            *lines, pending = _LINE_END.split(pending + data)
            for line in lines:
                self._line(line, stream)
            while len(pending) > MAX_LINE_BYTES:
                self._line(pending[:MAX_LINE_BYTES], stream)
                pending = pending[MAX_LINE_BYTES:]

    def _line(self, raw: bytes, stream: LogStream) -> None:
        text = raw.decode("utf-8", "replace")
        # Every matching line is marked (tools jump to them); the first one
        # of each kind decides the outcome (_judge).
        mark: LogMark = common_pb2.LOG_MARK_UNSPECIFIED
        if any(p.search(text) for p in self._errors):
            mark = common_pb2.LOG_MARK_ERROR
            self._error_line = self._error_line or text
        elif any(p.search(text) for p in self._warnings):
            mark = common_pb2.LOG_MARK_WARNING
            self._warning_line = self._warning_line or text
        if self._started is not None:
            self._log.add(text)
            if self._started.checks_log:
                self._unchecked.add(text)
            if self._parser is not None:
                value = self._parser.feed(text)
                if value is not None:
                    self._progress_changed(value)
        self._batcher.add(
            common_pb2.LogLine(time=now_timestamp(), text=text, stream=stream, mark=mark)
        )

    def _agent_line(self, text: str) -> None:
        self._batcher.add(
            common_pb2.LogLine(time=now_timestamp(), text=text, stream=common_pb2.LOG_STREAM_AGENT)
        )

    def _send_lines(self, lines: list[common_pb2.LogLine]) -> None:
        a = self.assignment
        self._send_log(
            agent_pb2.ChunkLog(
                job_id=a.job_id, chunk_id=a.chunk_id, fencing_token=a.fencing_token, lines=lines
            )
        )

    def _judge(self, exit_code: int, verdict: Verdict | None = None) -> tuple[Outcome, str]:
        if self._kill_message:
            return common_pb2.CHUNK_RUN_OUTCOME_KILLED, self._kill_message
        if self._timed_out:
            return (
                common_pb2.CHUNK_RUN_OUTCOME_TIMED_OUT,
                f"timed out after {self.assignment.timeout_seconds}s",
            )
        if self._abort_message:
            return common_pb2.CHUNK_RUN_OUTCOME_FAILED, self._abort_message
        if self._template_failure:
            return common_pb2.CHUNK_RUN_OUTCOME_FAILED, self._template_failure
        if verdict is not None:
            return TEMPLATE_OUTCOMES[verdict.outcome], verdict.message
        success = list(self.assignment.success_exit_codes) or [0]
        if exit_code not in success:
            return common_pb2.CHUNK_RUN_OUTCOME_FAILED, f"exit code {exit_code}"
        if self._error_line:
            return common_pb2.CHUNK_RUN_OUTCOME_FAILED, f"error in log: {self._error_line[:500]}"
        if self._warning_line:
            return (
                common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED_WITH_WARNINGS,
                f"warning in log: {self._warning_line[:500]}",
            )
        return common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED, f"exit code {exit_code}"

    def _lease_ran_out(self, exit_code: int) -> agent_pb2.ChunkResult:
        """The dispatcher recorded no heartbeat of this agent for the lease's
        length: it declares the node lost, if it has not yet, and gives the
        chunk to another node; the launcher stopped (or never began) the render."""
        assert self._lease is not None
        message = (
            f"lost: no heartbeat of this agent recorded by the dispatcher for"
            f" {self._lease.seconds:g}s (its lease): render stopped, the chunk may run elsewhere"
        )
        self._agent_line(message)
        self._batcher.flush()
        return self._result(exit_code, common_pb2.CHUNK_RUN_OUTCOME_LOST, message)

    def _refuse(self, message: str, detail: str = "") -> agent_pb2.ChunkResult:
        """A chunk failed before its process could start: said in its log too
        (with `detail`, a callback's traceback, line by line)."""
        self._agent_line(message)
        for line in detail.splitlines():
            self._agent_line(line)
        self._batcher.flush()
        return self._result(-1, common_pb2.CHUNK_RUN_OUTCOME_FAILED, message)

    def _result(self, exit_code: int, outcome: Outcome, message: str) -> agent_pb2.ChunkResult:
        a = self.assignment
        return agent_pb2.ChunkResult(
            job_id=a.job_id,
            chunk_id=a.chunk_id,
            fencing_token=a.fencing_token,
            exit_code=exit_code,
            outcome=outcome,
            message=message,
            end_time=now_timestamp(),
        )


async def _read_all(fd: int) -> str:
    """Everything written to a pipe until its other end closes (then closed)."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    data = bytearray()

    def readable() -> None:
        try:
            part = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            part = b""
        if part:
            data.extend(part)
        elif not closed.done():
            closed.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        await closed
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return data.decode("utf-8", "replace")


def _summary(text: str) -> str:
    """A callback failure in one line: what failed, and the exception."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "template callback failed"
    first = lines[0].rstrip(":")
    summary = first if len(lines) == 1 else f"{first}: {lines[-1]}"
    return summary[:500]
