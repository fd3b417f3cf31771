"""The chunk runner with real child processes."""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from muster_agent.runner import ChunkRun, LogBatcher, kill_live_groups
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from tests.agent.support import gone, pids_in, run

SUCCEEDED = common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED
FAILED = common_pb2.CHUNK_RUN_OUTCOME_FAILED


def assignment(script: str, **fields: object) -> agent_pb2.Assignment:
    """An assignment running a shell script (the service builds argv; /bin/sh stands in)."""
    return agent_pb2.Assignment(
        job_id=7,
        chunk_id=3,
        fencing_token=42,
        executable="/bin/sh",
        arguments=["-c", script],
        **fields,  # type: ignore[arg-type]
    )


class Captured:
    def __init__(self) -> None:
        self.logs: list[agent_pb2.ChunkLog] = []

    def __call__(self, log: agent_pb2.ChunkLog) -> None:
        self.logs.append(log)

    def lines(self, stream: int | None = None) -> list[str]:
        return [
            line.text
            for log in self.logs
            for line in log.lines
            if stream is None or line.stream == stream
        ]

    def output(self) -> list[str]:
        return [
            line.text
            for log in self.logs
            for line in log.lines
            if line.stream != common_pb2.LOG_STREAM_AGENT
        ]


def chunk(
    a: agent_pb2.Assignment, tmp_path: Path, priority: int = 3, grace: float = 0.5
) -> tuple[ChunkRun, Captured]:
    captured = Captured()
    return (
        ChunkRun(
            a,
            priority=priority,  # type: ignore[arg-type]
            work_dir=tmp_path,
            kill_grace_seconds=grace,
            send_log=captured,
        ),
        captured,
    )


def test_lines_of_both_streams_are_sent_with_their_stream_and_time(tmp_path: Path) -> None:
    runner, captured = chunk(assignment("echo one; echo two >&2; printf 'no newline'"), tmp_path)
    before = time.time()
    result = run(runner.run)
    assert result.outcome == SUCCEEDED
    assert result.exit_code == 0
    assert (result.job_id, result.chunk_id, result.fencing_token) == (7, 3, 42)
    assert captured.lines(common_pb2.LOG_STREAM_STDOUT) == ["one", "no newline"]
    assert captured.lines(common_pb2.LOG_STREAM_STDERR) == ["two"]
    agent_lines = captured.lines(common_pb2.LOG_STREAM_AGENT)
    assert agent_lines[0].startswith("starting /bin/sh -c")
    assert "exited with code 0" in agent_lines[-1]
    for log in captured.logs:
        assert (log.job_id, log.chunk_id, log.fencing_token) == (7, 3, 42)
        assert all(line.time.seconds >= int(before) for line in log.lines)
    assert result.end_time.seconds >= int(before)


def test_exit_code_decides_unless_the_template_lists_other_success_codes(tmp_path: Path) -> None:
    failed = run(chunk(assignment("echo rendering; exit 3"), tmp_path)[0].run)
    assert failed.outcome == FAILED
    assert failed.exit_code == 3
    assert failed.message == "exit code 3"
    accepted = run(chunk(assignment("exit 3", success_exit_codes=[0, 3]), tmp_path)[0].run)
    assert accepted.outcome == SUCCEEDED
    zero_refused = run(chunk(assignment("exit 0", success_exit_codes=[1]), tmp_path)[0].run)
    assert zero_refused.outcome == FAILED


def test_log_patterns_decide_the_outcome(tmp_path: Path) -> None:
    patterns = {"log_error_patterns": ["^ERROR:"], "log_warning_patterns": ["[Ww]arning"]}
    error = run(chunk(assignment("echo 'ERROR: no licence' >&2", **patterns), tmp_path)[0].run)
    assert error.outcome == FAILED
    assert error.message == "error in log: ERROR: no licence"
    warning = run(chunk(assignment("echo 'Warning: slow disk'", **patterns), tmp_path)[0].run)
    assert warning.outcome == common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED_WITH_WARNINGS
    assert "slow disk" in warning.message
    both = run(chunk(assignment("echo warning; echo 'ERROR: x'", **patterns), tmp_path)[0].run)
    assert both.outcome == FAILED
    clean = run(chunk(assignment("echo 'all ERROR: fine'", **patterns), tmp_path)[0].run)
    assert clean.outcome == SUCCEEDED


def test_an_invalid_pattern_is_ignored_and_said_in_the_log(tmp_path: Path) -> None:
    runner, captured = chunk(assignment("echo ok", log_error_patterns=["(unclosed"]), tmp_path)
    assert run(runner.run).outcome == SUCCEEDED
    assert any("ignoring invalid error pattern" in t for t in captured.lines())


def test_environment_is_added_and_working_directory_used(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    os.environ["MUSTER_AGENT_TEST_INHERITED"] = "kept"
    try:
        runner, captured = chunk(
            assignment(
                'pwd; echo "$SCENE $MUSTER_AGENT_TEST_INHERITED"',
                environment={"SCENE": "sh010"},
                working_directory=str(folder),
            ),
            tmp_path,
        )
        assert run(runner.run).outcome == SUCCEEDED
    finally:
        del os.environ["MUSTER_AGENT_TEST_INHERITED"]
    assert captured.output() == [str(folder), "sh010 kept"]


def test_empty_working_directory_means_the_work_folder(tmp_path: Path) -> None:
    runner, captured = chunk(assignment("pwd"), tmp_path)
    run(runner.run)
    assert captured.output() == [str(tmp_path)]


def test_a_missing_executable_fails_without_a_process(tmp_path: Path) -> None:
    missing = agent_pb2.Assignment(job_id=1, chunk_id=1, fencing_token=5, executable="/no/such")
    runner, captured = chunk(missing, tmp_path)
    result = run(runner.run)
    assert result.outcome == FAILED
    assert result.exit_code == -1
    assert result.message.startswith("cannot start /no/such")
    assert captured.lines(common_pb2.LOG_STREAM_AGENT)[-1] == result.message


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # The shell starts a grandchild in the background and reports both pids.
    script = "sleep 60 & echo $! $$; sleep 60"
    runner, captured = chunk(assignment(script, timeout_seconds=1), tmp_path)
    started = time.monotonic()
    result = run(runner.run)
    assert time.monotonic() - started < 5
    assert result.outcome == common_pb2.CHUNK_RUN_OUTCOME_TIMED_OUT
    assert result.message == "timed out after 1s"
    pids = pids_in(captured.output()[0])
    assert len(pids) == 2
    assert all(gone(pid) for pid in pids)


def test_kill_stops_the_group_and_reports_killed(tmp_path: Path) -> None:
    runner, captured = chunk(assignment("sleep 60 & echo $!; sleep 60"), tmp_path)

    async def body() -> agent_pb2.ChunkResult:
        task = asyncio.create_task(runner.run())
        while not captured.output():
            await asyncio.sleep(0.02)
        await runner.kill()
        return await task

    result = run(body)
    assert result.outcome == common_pb2.CHUNK_RUN_OUTCOME_KILLED
    assert result.message == "killed on request"
    assert result.exit_code == -15
    assert gone(pids_in(captured.output()[0])[0])


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    script = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
    runner, captured = chunk(assignment(script), tmp_path, grace=0.3)

    async def body() -> tuple[agent_pb2.ChunkResult, float]:
        task = asyncio.create_task(runner.run())
        while "ready" not in captured.output():
            await asyncio.sleep(0.02)
        started = time.monotonic()
        await runner.kill("killed for a test")
        return await task, time.monotonic() - started

    result, took = run(body)
    assert result.outcome == common_pb2.CHUNK_RUN_OUTCOME_KILLED
    assert result.message == "killed for a test"
    assert result.exit_code == -9
    assert 0.25 < took < 3


def test_background_children_left_behind_are_killed(tmp_path: Path) -> None:
    # The render process exits at once, its child keeps stdout open.
    runner, captured = chunk(assignment("sleep 60 & echo $!"), tmp_path)
    started = time.monotonic()
    result = run(runner.run)
    assert result.outcome == SUCCEEDED
    assert time.monotonic() - started < 6
    assert gone(pids_in(captured.output()[0])[0])
    assert any("left behind" in t for t in captured.lines(common_pb2.LOG_STREAM_AGENT))


def test_priority_is_applied_to_the_process(tmp_path: Path) -> None:
    # The nice value is set just after the start: the child reads it a moment later.
    code = "import os, time; time.sleep(0.3); print(os.nice(0))"
    a = agent_pb2.Assignment(
        job_id=1, chunk_id=1, fencing_token=1, executable=sys.executable, arguments=["-c", code]
    )
    runner, captured = chunk(a, tmp_path, priority=common_pb2.PROCESS_PRIORITY_IDLE)
    assert run(runner.run).outcome == SUCCEEDED
    assert captured.output() == ["19"]


def test_priority_of_a_running_group_can_change(tmp_path: Path) -> None:
    script = "echo started; sleep 0.5; ps -o ni= -p $$"
    runner, captured = chunk(assignment(script), tmp_path)

    async def body() -> agent_pb2.ChunkResult:
        task = asyncio.create_task(runner.run())
        while not captured.output():
            await asyncio.sleep(0.02)
        runner.set_priority(common_pb2.PROCESS_PRIORITY_BELOW_NORMAL)
        return await task

    assert run(body).outcome == SUCCEEDED
    assert [t.strip() for t in captured.output()] == ["started", "10"]


def test_running_chunk_reports_pid_and_token(tmp_path: Path) -> None:
    runner, captured = chunk(assignment("echo go; sleep 0.3"), tmp_path)

    async def body() -> agent_pb2.RunningChunk:
        task = asyncio.create_task(runner.run())
        while not captured.output():
            await asyncio.sleep(0.02)
        running = runner.running_chunk()
        await task
        return running

    running = run(body)
    assert (running.job_id, running.chunk_id, running.fencing_token) == (7, 3, 42)
    assert running.pid > 0
    assert running.start_time.seconds > 0


def test_many_lines_are_batched_and_long_lines_split(tmp_path: Path) -> None:
    script = (
        "i=0; while [ $i -lt 450 ]; do echo line $i; i=$((i+1)); done;"
        " head -c 100000 /dev/zero | tr '\\0' x"
    )
    runner, captured = chunk(assignment(script), tmp_path)
    assert run(runner.run).outcome == SUCCEEDED
    output = captured.output()
    assert output[:450] == [f"line {i}" for i in range(450)]
    assert "".join(output[450:]) == "x" * 100000
    assert all(len(t) <= 64 * 1024 for t in output)
    assert all(len(log.lines) <= 200 for log in captured.logs)
    assert len(captured.logs) < 10


def test_a_line_redrawn_with_carriage_returns_is_a_line_per_redraw(tmp_path: Path) -> None:
    # ffmpeg's stats line: \r between redraws, \r\n and \n ends kept as one end.
    script = "printf 'frame=  1\\rframe=  2\\r'; sleep 0.2; printf '\\nwin\\r\\nend\\n\\nlast'"
    runner, captured = chunk(assignment(script), tmp_path)
    assert run(runner.run).outcome == SUCCEEDED
    assert captured.output() == ["frame=  1", "frame=  2", "win", "end", "", "last"]


def test_the_batcher_sends_by_time_and_by_count() -> None:
    async def body() -> list[int]:
        sizes: list[int] = []
        batcher = LogBatcher(lambda lines: sizes.append(len(lines)), seconds=0.1, lines=3)
        for text in "abcd":
            batcher.add(common_pb2.LogLine(text=text))
        assert sizes == [3]  # full batch at once
        await asyncio.sleep(0.2)  # the rest after the delay
        batcher.add(common_pb2.LogLine(text="e"))
        batcher.flush()
        return sizes

    assert run(body) == [3, 1, 1]


# --- run as another user (onDispatcherOverrideImpersonationUser) --------------------------


def test_the_process_runs_as_the_assignments_user_when_the_agent_is_root(
    shared_tmp: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only an agent running as root may switch users")
    nobody = pwd.getpwnam("nobody")
    out = shared_tmp / "ids.txt"
    shared_tmp.chmod(0o777)
    runner, captured = chunk(
        assignment(f"id -u > {out}; id -g >> {out}; echo $USER", run_as_user="nobody"),
        shared_tmp,
    )
    result = run(runner.run)
    assert result.outcome == SUCCEEDED, captured.lines()
    assert out.read_text().split() == [str(nobody.pw_uid), str(nobody.pw_gid)]
    assert captured.output() == ["nobody"]
    assert f"running as user nobody (uid {nobody.pw_uid})" in captured.lines()


def test_the_agents_own_user_needs_no_switch(tmp_path: Path) -> None:
    me = pwd.getpwuid(os.geteuid()).pw_name
    runner, captured = chunk(assignment("id -u", run_as_user=me), tmp_path)
    result = run(runner.run)
    assert result.outcome == SUCCEEDED
    assert captured.output() == [str(os.geteuid())]


def test_an_unknown_user_fails_the_chunk_and_says_why(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    runner, captured = chunk(
        assignment(f"touch {marker}", run_as_user="no-such-user-xyz"), tmp_path
    )
    result = run(runner.run)
    assert result.outcome == FAILED
    message = "cannot run as user 'no-such-user-xyz': no such user on this node"
    assert result.message == message
    assert captured.lines(common_pb2.LOG_STREAM_AGENT) == [message]
    assert not marker.exists()  # never ran as the agent instead


def test_an_agent_that_is_not_root_refuses_another_user() -> None:
    # In a child process that (when the tests run as root) first drops to nobody.
    code = (
        "import os, pwd\n"
        "from muster_agent.system import CannotRunAs, run_as\n"
        "if os.geteuid() == 0:\n"
        "    nobody = pwd.getpwnam('nobody')\n"
        "    os.setgid(nobody.pw_gid)\n"
        "    os.setuid(nobody.pw_uid)\n"
        "try:\n"
        "    run_as('root')\n"
        "except CannotRunAs as exc:\n"
        "    print(exc)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "cannot run as user 'root': the agent runs as uid" in output
    assert "only an agent running as root may start processes as another user" in output


def test_an_agent_on_its_way_out_kills_every_running_chunk_group_at_once(tmp_path: Path) -> None:
    # What the agent's exit paths call (a second stop signal, an error in the agent).
    first, first_log = chunk(assignment("sleep 60 & echo $!; sleep 60"), tmp_path)
    second, second_log = chunk(assignment("trap '' TERM; echo $$; sleep 60"), tmp_path)

    async def body() -> tuple[int, list[agent_pb2.ChunkResult]]:
        tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
        while not (first_log.output() and second_log.output()):
            await asyncio.sleep(0.02)
        killed = kill_live_groups()
        return killed, list(await asyncio.gather(*tasks))

    started = time.monotonic()
    killed, results = run(body)
    assert time.monotonic() - started < 5
    assert killed == 2
    assert [r.exit_code for r in results] == [-9, -9]
    assert gone(pids_in(first_log.output()[0])[0])
    assert gone(pids_in(second_log.output()[0])[0])
    assert kill_live_groups() == 0  # a run that ended is no longer counted
