"""An instance's protocol handling, fed real protobuf messages (no transport).

What goes out is read from the instance's outgoing queue, exactly what the
session would write to the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from muster_agent.config import AgentConfig
from muster_agent.session import Instance
from muster_agent.state import StateStore
from muster_agent.system import HostFacts
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from tests.agent.support import gone, run

FACTS = HostFacts(
    host_name="render-07",
    platform=common_pb2.PLATFORM_LINUX,
    os_version="Debian 12",
    cpu_cores=16,
    memory_bytes=64 << 30,
    ip_address="10.0.0.7",
    mac_address="02:00:00:00:00:07",
)
ACCEPTED = agent_pb2.RegisterAccepted(
    node_id=31,
    node_name="render-07",
    heartbeat_interval_seconds=5,
    process_priority=common_pb2.PROCESS_PRIORITY_NORMAL,
)


def store(config: AgentConfig) -> StateStore:
    return StateStore(config.work_dir, config.dispatcher)


def connected(config: AgentConfig, accepted: agent_pb2.RegisterAccepted = ACCEPTED) -> Instance:
    instance = Instance(0, config, store(config))
    instance.on_accepted(accepted)
    return instance


def assignment(token: int, script: str = "echo frame", **fields: object) -> agent_pb2.Assignment:
    return agent_pb2.Assignment(
        job_id=5,
        chunk_id=token,
        fencing_token=token,
        job_name="shot 10",
        executable="/bin/sh",
        arguments=["-c", script],
        **fields,  # type: ignore[arg-type]
    )


def command(command_id: int, **fields: object) -> agent_pb2.SessionResponse:
    return agent_pb2.SessionResponse(
        command=agent_pb2.Command(command_id=command_id, **fields)  # type: ignore[arg-type]
    )


async def next_of(instance: Instance, kind: str, timeout: float = 10) -> agent_pb2.SessionRequest:
    """The next outgoing message of a kind, skipping others (logs, heartbeats)."""
    while True:
        message = await asyncio.wait_for(instance.outgoing.get(), timeout)
        instance.outgoing.task_done()
        if message.WhichOneof("message") == kind:
            return message


def drained(instance: Instance) -> list[agent_pb2.SessionRequest]:
    messages = []
    while not instance.outgoing.empty():
        messages.append(instance.outgoing.get_nowait())
        instance.outgoing.task_done()
    return messages


async def ack_of(instance: Instance, command_id: int) -> agent_pb2.CommandAck:
    ack = (await next_of(instance, "command_ack")).command_ack
    assert ack.command_id == command_id
    return ack


async def wait_running(instance: Instance) -> None:
    while instance.run is None or not instance.run.pid:
        await asyncio.sleep(0.02)


def test_register_carries_the_host_facts_and_the_stored_node_id(config: AgentConfig) -> None:
    store(config).save(0, 31, [])

    async def body() -> agent_pb2.Register:
        return Instance(0, config, store(config)).register_request(FACTS).register

    register = run(body)
    assert register.node_id == 31
    assert register.host_name == "render-07"
    assert register.instance_number == 0
    assert register.platform == common_pb2.PLATFORM_LINUX
    assert (register.cpu_cores, register.memory_bytes) == (16, 64 << 30)
    assert (register.ip_address, register.mac_address) == ("10.0.0.7", "02:00:00:00:00:07")
    assert register.agent_version
    assert not register.HasField("running_chunk")


def test_accepted_registration_is_applied_and_the_node_id_kept(config: AgentConfig) -> None:
    async def body() -> Instance:
        return connected(
            config,
            agent_pb2.RegisterAccepted(
                node_id=44,
                node_name="render-07-1",
                heartbeat_interval_seconds=9,
                paused=True,
                process_priority=common_pb2.PROCESS_PRIORITY_IDLE,
                realtime_log=True,
            ),
        )

    instance = run(body)
    assert (instance.node_id, instance.node_name, instance.heartbeat_seconds) == (
        44,
        "render-07-1",
        9,
    )
    assert instance.paused and instance.realtime_log
    assert instance.priority == common_pb2.PROCESS_PRIORITY_IDLE
    assert store(config).node_id(0) == 44


def test_a_chunk_runs_and_its_result_is_kept_until_accepted(config: AgentConfig) -> None:
    async def body() -> None:
        instance = connected(config)
        await instance.handle(
            agent_pb2.SessionResponse(assignment=assignment(7, "echo frame; sleep 0.3"))
        )
        await wait_running(instance)
        beat = instance.heartbeat_request().heartbeat
        assert beat.running_chunk.fencing_token == 7
        assert beat.running_chunk.pid == instance.run.pid  # type: ignore[union-attr]
        register = instance.register_request(FACTS).register
        assert register.running_chunk.fencing_token == 7
        log = (await next_of(instance, "log")).log
        assert log.fencing_token == 7
        result = (await next_of(instance, "result")).result
        assert (result.job_id, result.chunk_id, result.fencing_token) == (5, 7, 7)
        assert result.outcome == common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED
        assert instance.run is None
        assert not instance.heartbeat_request().heartbeat.HasField("running_chunk")
        # Kept (and on disk) until the service says it recorded it.
        assert list(instance.pending) == [7]
        assert [r.fencing_token for r in store(config).pending_results(0)] == [7]
        await instance.handle(
            agent_pb2.SessionResponse(
                result_accepted=agent_pb2.ResultAccepted(
                    job_id=5, chunk_id=7, fencing_token=7, applied=True
                )
            )
        )
        assert instance.pending == {}
        assert store(config).pending_results(0) == []
        assert await instance.wait_settled(0.1)

    run(body)


def test_unaccepted_results_and_held_logs_are_sent_after_a_reconnect(
    config: AgentConfig,
) -> None:
    async def body() -> None:
        instance = connected(config)
        await instance.handle(
            agent_pb2.SessionResponse(assignment=assignment(8, "echo frame; sleep 0.3"))
        )
        await wait_running(instance)
        instance.on_disconnected()  # the stream broke while the chunk ran
        while instance.run is not None:
            await asyncio.sleep(0.02)
        assert instance.outgoing.empty()  # nothing goes to a dead stream
        instance.on_accepted(ACCEPTED)
        kinds = [m.WhichOneof("message") for m in drained(instance)]
        assert "result" in kinds and "log" in kinds
        assert kinds.index("log") < kinds.index("result")  # lines before the result
        # Another reconnect without an answer: the result goes again.
        instance.on_disconnected()
        instance.on_accepted(ACCEPTED)
        again = drained(instance)
        assert [m.result.fencing_token for m in again] == [8]

    run(body)


def test_pending_results_survive_a_restart_of_the_agent(config: AgentConfig) -> None:
    result = agent_pb2.ChunkResult(
        job_id=5, chunk_id=2, fencing_token=12, outcome=common_pb2.CHUNK_RUN_OUTCOME_KILLED
    )
    store(config).save(0, 31, [result])

    async def body() -> list[agent_pb2.SessionRequest]:
        instance = Instance(0, config, store(config))
        assert instance.register_request(FACTS).register.node_id == 31
        instance.on_accepted(ACCEPTED)
        return drained(instance)

    assert [m.result for m in run(body)] == [result]


def test_an_assignment_while_busy_is_refused_for_the_new_chunk(config: AgentConfig) -> None:
    async def body() -> None:
        instance = connected(config)
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(1, "sleep 5")))
        await wait_running(instance)
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(2)))
        refused = (await next_of(instance, "result")).result
        assert (refused.fencing_token, refused.message) == (2, "instance busy")
        assert refused.outcome == common_pb2.CHUNK_RUN_OUTCOME_FAILED
        assert instance.run is not None and instance.run.fencing_token == 1  # untouched
        await instance.kill_running("test over")

    run(body)


def test_a_repeated_assignment_is_not_run_twice(config: AgentConfig) -> None:
    async def body() -> None:
        instance = connected(config)
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(3, "sleep 5")))
        await wait_running(instance)
        pid = instance.run.pid  # type: ignore[union-attr]
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(3, "sleep 5")))
        assert instance.run is not None and instance.run.pid == pid
        assert not any(m.WhichOneof("message") == "result" for m in drained(instance))
        await instance.kill_running("test over")
        await next_of(instance, "result")
        # Assigned again after it ended (its result not yet recorded): the
        # result answers, the chunk does not run again.
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(3, "sleep 5")))
        assert instance.run is None
        again = (await next_of(instance, "result")).result
        assert again.fencing_token == 3
        assert again.outcome == common_pb2.CHUNK_RUN_OUTCOME_KILLED

    run(body)


def test_kill_process_checks_the_token_and_pauses_on_request(config: AgentConfig) -> None:
    async def body() -> None:
        instance = connected(config)
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(4, "sleep 30")))
        await wait_running(instance)
        stale = agent_pb2.KillProcessCommand(job_id=5, chunk_id=4, fencing_token=3)
        await instance.handle(command(1, kill_process=stale))
        ack = await ack_of(instance, 1)
        assert not ack.success and ack.error_message.startswith("stale")
        assert instance.run is not None
        kill = agent_pb2.KillProcessCommand(
            job_id=5, chunk_id=4, fencing_token=4, follow_up=common_pb2.KILL_FOLLOW_UP_PAUSE
        )
        await instance.handle(command(2, kill_process=kill))
        result = (await next_of(instance, "result")).result  # the result comes before the ack
        assert result.outcome == common_pb2.CHUNK_RUN_OUTCOME_KILLED
        assert result.message == "killed on request"
        assert (await ack_of(instance, 2)).success
        assert instance.paused and instance.run is None
        # Paused: a new assignment is refused.
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(5)))
        refused = (await next_of(instance, "result")).result
        assert (refused.fencing_token, refused.message) == (5, "instance busy: paused")
        # Nothing runs: a kill now is stale too.
        await instance.handle(command(3, kill_process=kill))
        assert not (await ack_of(instance, 3)).success

    run(body)


def test_a_kill_that_overtakes_its_assignment_ends_the_chunk_killed(config: AgentConfig) -> None:
    """The service sends a kill right after an assignment; the two travel apart
    and the kill may come first. The chunk then never runs: it ends killed as
    it arrives, and the kill's follow-up (here a pause) holds."""

    async def body() -> None:
        instance = connected(config)
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(4)))
        assert (await next_of(instance, "result")).result.fencing_token == 4
        kill = agent_pb2.KillProcessCommand(
            job_id=5, chunk_id=7, fencing_token=7, follow_up=common_pb2.KILL_FOLLOW_UP_PAUSE
        )
        await instance.handle(command(1, kill_process=kill))
        assert (await ack_of(instance, 1)).success and instance.paused
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(7, "sleep 30")))
        assert instance.run is None
        result = (await next_of(instance, "result")).result
        assert (result.fencing_token, result.outcome, result.message) == (
            7,
            common_pb2.CHUNK_RUN_OUTCOME_KILLED,
            "killed on request",
        )
        # Older than what was assigned: stale, as before.
        old = agent_pb2.KillProcessCommand(job_id=5, chunk_id=4, fencing_token=4)
        await instance.handle(command(2, kill_process=old))
        assert not (await ack_of(instance, 2)).success

    run(body)


def test_pause_resume_realtime_log_and_custom_message(config: AgentConfig) -> None:
    async def body() -> None:
        instance = connected(config)
        await instance.handle(command(1, pause=agent_pb2.PauseCommand()))
        assert (await ack_of(instance, 1)).success and instance.paused
        await instance.handle(command(2, resume=agent_pb2.ResumeCommand()))
        assert (await ack_of(instance, 2)).success and not instance.paused
        await instance.handle(
            command(3, set_realtime_log=agent_pb2.SetRealtimeLogCommand(enabled=True))
        )
        assert (await ack_of(instance, 3)).success and instance.realtime_log
        message = common_pb2.CustomMessage(message="render the hero shot\nfirst", sender="ann")
        await instance.handle(command(4, custom_message=message))
        assert (await ack_of(instance, 4)).success

    run(body)


def test_report_status_sends_a_heartbeat_then_acks(config: AgentConfig) -> None:
    async def body() -> list[agent_pb2.SessionRequest]:
        instance = connected(config)
        await instance.handle(command(9, report_status=agent_pb2.ReportStatusCommand()))
        await asyncio.sleep(0.1)  # the command runs as a task
        return drained(instance)

    messages = run(body)
    assert [m.WhichOneof("message") for m in messages] == ["heartbeat", "command_ack"]
    beat = messages[0].heartbeat
    assert beat.send_time.seconds > 0
    assert 0 <= beat.cpu_usage_percent <= 100
    assert beat.memory_used_bytes > 0
    assert messages[1].command_ack.command_id == 9 and messages[1].command_ack.success


def test_set_process_priority_renices_the_running_chunk_and_later_ones(
    config: AgentConfig,
) -> None:
    async def body() -> None:
        instance = connected(config)
        await instance.handle(
            agent_pb2.SessionResponse(assignment=assignment(6, "sleep 0.4; ps -o ni= -p $$"))
        )
        await wait_running(instance)
        idle = agent_pb2.SetProcessPriorityCommand(
            process_priority=common_pb2.PROCESS_PRIORITY_IDLE
        )
        await instance.handle(command(1, set_process_priority=idle))
        assert (await ack_of(instance, 1)).success
        assert instance.priority == common_pb2.PROCESS_PRIORITY_IDLE
        lines: list[str] = []
        while True:
            message = await asyncio.wait_for(instance.outgoing.get(), 10)
            if message.WhichOneof("message") == "log":
                lines += [
                    line.text.strip()
                    for line in message.log.lines
                    if line.stream == common_pb2.LOG_STREAM_STDOUT
                ]
            if message.WhichOneof("message") == "result":
                break
        assert lines == ["19"]
        unspecified = agent_pb2.SetProcessPriorityCommand()
        await instance.handle(command(2, set_process_priority=unspecified))
        assert (await ack_of(instance, 2)).success
        assert instance.priority == common_pb2.PROCESS_PRIORITY_IDLE  # kept

    run(body)


def test_system_events_are_refused_unless_configured(config: AgentConfig, tmp_path: Path) -> None:
    async def refused() -> agent_pb2.CommandAck:
        instance = connected(config)
        event = agent_pb2.SystemEventCommand(event=common_pb2.SYSTEM_EVENT_SHUTDOWN)
        await instance.handle(command(1, system_event=event))
        return await ack_of(instance, 1)

    ack = run(refused)
    assert not ack.success
    assert ack.error_message == "system event shutdown is not configured on this node"

    marker = tmp_path / "rebooted"
    configured = AgentConfig(
        dispatcher=config.dispatcher,
        work_dir=config.work_dir,
        system_events={
            "reboot": ["/bin/sh", "-c", f"touch {marker}"],
            "logoff": ["/bin/sh", "-c", "echo no session; exit 4"],
        },
    )

    async def carried_out() -> tuple[agent_pb2.CommandAck, agent_pb2.CommandAck]:
        instance = connected(configured)
        reboot = agent_pb2.SystemEventCommand(event=common_pb2.SYSTEM_EVENT_REBOOT)
        await instance.handle(command(2, system_event=reboot))
        first = await ack_of(instance, 2)
        logoff = agent_pb2.SystemEventCommand(event=common_pb2.SYSTEM_EVENT_LOGOFF)
        await instance.handle(command(3, system_event=logoff))
        return first, await ack_of(instance, 3)

    reboot_ack, logoff_ack = run(carried_out)
    assert reboot_ack.success and marker.exists()
    assert not logoff_ack.success
    assert "exit code 4" in logoff_ack.error_message and "no session" in logoff_ack.error_message


def test_run_python_code_answers_with_output_and_exit_code(config: AgentConfig) -> None:
    async def body() -> agent_pb2.PythonCodeResult:
        instance = connected(config)
        code = agent_pb2.RunPythonCodeCommand(
            request_id="r-1",
            code="import sys\nprint('out')\nsys.stderr.write('err\\n')\nraise SystemExit(5)",
        )
        await instance.handle(command(1, run_python_code=code))
        result = (await next_of(instance, "python_code_result")).python_code_result
        assert (await ack_of(instance, 1)).success
        return result

    result = run(body)
    assert result.request_id == "r-1"
    assert result.output == "out\nerr\n"
    assert result.exit_code == 5
    assert not result.timed_out


def test_run_python_code_is_stopped_at_its_timeout(config: AgentConfig) -> None:
    async def body() -> agent_pb2.PythonCodeResult:
        instance = connected(config)
        code = agent_pb2.RunPythonCodeCommand(
            request_id="r-2",
            code="import time\nprint('begun', flush=True)\ntime.sleep(30)",
            timeout_seconds=1,
        )
        await instance.handle(command(1, run_python_code=code))
        return (await next_of(instance, "python_code_result")).python_code_result

    result = run(body)
    assert result.timed_out
    assert result.output == "begun\n"
    assert result.exit_code != 0


def test_python_errors_exit_with_one(config: AgentConfig) -> None:
    async def body() -> agent_pb2.PythonCodeResult:
        instance = connected(config)
        code = agent_pb2.RunPythonCodeCommand(request_id="r-3", code="1/0")
        await instance.handle(command(1, run_python_code=code))
        return (await next_of(instance, "python_code_result")).python_code_result

    result = run(body)
    assert result.exit_code == 1
    assert "ZeroDivisionError" in result.output


class RecordingHooks:
    """The agent-wide side of a soft restart, recorded instead of exec'd."""

    def __init__(self, instance_box: list[Instance]) -> None:
        self.calls: list[str] = []
        self.instances = instance_box

    async def prepare_restart(self) -> None:
        self.calls.append("prepare")
        for instance in self.instances:
            await instance.kill_running("agent soft restart")

    async def restart(self) -> None:
        self.calls.append("restart")


def test_soft_restart_kills_the_chunk_acks_then_restarts(config: AgentConfig) -> None:
    async def body() -> list[str]:
        box: list[Instance] = []
        hooks = RecordingHooks(box)
        instance = Instance(0, config, store(config), hooks)
        box.append(instance)
        instance.on_accepted(ACCEPTED)
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(11, "sleep 30")))
        await wait_running(instance)
        await instance.handle(command(5, soft_restart=agent_pb2.SoftRestartCommand()))
        result = (await next_of(instance, "result")).result
        assert result.outcome == common_pb2.CHUNK_RUN_OUTCOME_KILLED
        assert result.message == "agent soft restart"
        assert (await ack_of(instance, 5)).success
        while "restart" not in hooks.calls:
            await asyncio.sleep(0.01)
        return hooks.calls

    assert run(body) == ["prepare", "restart"]


def test_soft_restart_without_an_agent_is_refused(config: AgentConfig) -> None:
    async def body() -> agent_pb2.CommandAck:
        instance = connected(config)
        await instance.handle(command(5, soft_restart=agent_pb2.SoftRestartCommand()))
        return await ack_of(instance, 5)

    assert not run(body).success


def test_a_closing_instance_starts_nothing(config: AgentConfig) -> None:
    async def body() -> None:
        instance = connected(config)
        instance.closing = True
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(12)))
        assert instance.run is None
        assert drained(instance) == []

    run(body)


def test_the_running_chunk_is_on_disk_while_it_runs(config: AgentConfig) -> None:
    async def body() -> None:
        instance = connected(config)
        await instance.handle(agent_pb2.SessionResponse(assignment=assignment(9, "sleep 0.5")))
        recorded = store(config).running_chunk(0)  # written before the process starts
        assert recorded is not None and recorded.fencing_token == 9
        await wait_running(instance)
        recorded = store(config).running_chunk(0)
        assert recorded is not None and recorded.pid == instance.run.pid  # type: ignore[union-attr]
        result = (await next_of(instance, "result")).result
        assert result.fencing_token == 9
        # The result replaces the running chunk in one write.
        assert store(config).running_chunk(0) is None
        assert [r.fencing_token for r in store(config).pending_results(0)] == [9]

    run(body)


def _orphan(config: AgentConfig, start_offset: float) -> subprocess.Popen[bytes]:
    """A process group left behind by an agent that died running token 14."""
    process = subprocess.Popen(["sleep", "30"], start_new_session=True)
    started = Timestamp()
    started.FromNanoseconds(time.time_ns() + int(start_offset * 1e9))
    running = agent_pb2.RunningChunk(
        job_id=5, chunk_id=3, fencing_token=14, pid=process.pid, start_time=started
    )
    store(config).save(0, 31, [], running)
    return process


def test_a_chunk_left_running_by_a_dead_agent_is_ended_and_reported(config: AgentConfig) -> None:
    orphan = _orphan(config, 0)

    async def body() -> list[agent_pb2.SessionRequest]:
        instance = Instance(0, config, store(config))
        instance.on_accepted(ACCEPTED)
        return drained(instance)

    try:
        results = [m.result for m in run(body) if m.WhichOneof("message") == "result"]
        assert orphan.wait(5) == -signal.SIGKILL
    finally:
        orphan.kill()
    assert [(r.job_id, r.chunk_id, r.fencing_token) for r in results] == [(5, 3, 14)]
    assert results[0].outcome == common_pb2.CHUNK_RUN_OUTCOME_FAILED
    assert "agent stopped" in results[0].message
    assert store(config).running_chunk(0) is None
    assert [r.fencing_token for r in store(config).pending_results(0)] == [14]


def test_a_recycled_process_id_is_left_alone(config: AgentConfig) -> None:
    stranger = _orphan(config, -3600)  # same pid, but started an hour off: not ours

    async def body() -> None:
        Instance(0, config, store(config))

    try:
        run(body)
        time.sleep(0.2)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
    assert [r.fencing_token for r in store(config).pending_results(0)] == [14]


def test_what_a_dead_chunk_left_in_its_group_is_killed_when_its_leader_is_gone_too(
    config: AgentConfig,
) -> None:
    # The group's leader ended (and was reaped) but left a process in the background.
    leader = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 30 >/dev/null & echo $!"],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    out, _ = leader.communicate(timeout=5)
    left = int(out)
    started = Timestamp()
    started.FromNanoseconds(time.time_ns() - int(0.5e9))
    running = agent_pb2.RunningChunk(
        job_id=5, chunk_id=3, fencing_token=15, pid=leader.pid, start_time=started
    )
    store(config).save(0, 31, [], running)

    async def body() -> None:
        Instance(0, config, store(config))

    try:
        run(body)
        assert gone(left)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(left, signal.SIGKILL)
    [result] = store(config).pending_results(0)
    assert result.message == (
        "the agent stopped while this chunk ran;"
        f" its process group {leader.pid} was killed on the agent's restart"
    )
