"""Chunk actions and expressions on the node (muster_agent/actions.py), with real
processes."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from muster_agent.actions import ActionRun, ExpressionError, prepare
from muster_agent.config import AgentConfig
from muster_agent.runner import ChunkRun
from muster_agent.system import DEFAULT_PRIORITY
from muster_agent.template_host import TemplateHost
from muster_agent.templates import TemplateRunner
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2
from tests.agent.support import gone, run
from tests.agent.test_template_runs import assignment as template_assignment
from tests.agent.test_template_runs import cached_code


class Lines(list[common_pb2.LogLine]):
    def texts(self, stream: int) -> list[str]:
        return [line.text for line in self if line.stream == stream]


async def action(command: str, lines: Lines, tmp_path: Path, timeout: float = 0) -> str | None:
    return await ActionRun("pre-chunk action", command, lines.append).run(
        cwd=str(tmp_path), env={**os.environ, "WHO": "node"}, identity=None, timeout=timeout
    )


def test_an_action_runs_in_the_shell_with_its_output_in_the_log(tmp_path: Path) -> None:
    lines = Lines()
    failure = run(lambda: action("echo out $WHO; echo err >&2; pwd", lines, tmp_path))
    assert failure is None
    assert lines.texts(common_pb2.LOG_STREAM_STDOUT) == ["out node", str(tmp_path)]
    assert lines.texts(common_pb2.LOG_STREAM_STDERR) == ["err"]
    assert lines.texts(common_pb2.LOG_STREAM_AGENT) == [
        "pre-chunk action: echo out $WHO; echo err >&2; pwd",
        "pre-chunk action succeeded",
    ]


def test_a_failing_action_says_why(tmp_path: Path) -> None:
    lines = Lines()
    assert run(lambda: action("exit 7", lines, tmp_path)) == "pre-chunk action failed: exit code 7"
    assert lines.texts(common_pb2.LOG_STREAM_AGENT)[-1] == "pre-chunk action failed: exit code 7"


def test_an_action_past_its_timeout_is_killed_with_what_it_started(tmp_path: Path) -> None:
    lines = Lines()
    pid_file = tmp_path / "child"
    started = time.monotonic()
    failure = run(lambda: action(f"sleep 60 & echo $! > {pid_file}; wait", lines, tmp_path, 0.5))
    assert failure == "pre-chunk action failed: timed out after 0.5s"
    assert time.monotonic() - started < 10
    assert gone(int(pid_file.read_text()))


def test_a_killed_action_stops(tmp_path: Path) -> None:
    lines = Lines()

    async def body() -> str | None:
        running = ActionRun("post-chunk action", "sleep 60", lines.append)
        task = asyncio.create_task(
            running.run(cwd=str(tmp_path), env=dict(os.environ), identity=None, timeout=0)
        )
        await asyncio.sleep(0.3)
        running.kill("killed on request")
        return await task

    assert run(body) == "post-chunk action failed: killed on request"


@pytest.fixture(params=["template host", "child process"])
def host(request: pytest.FixtureRequest) -> Iterator[TemplateHost | None]:
    """Where the node evaluates: its template host, or a child process."""
    if request.param == "child process":
        yield None
        return
    started = TemplateHost(timeout=5)
    yield started
    started.close()


def test_prepare_evaluates_fields_and_actions_and_leaves_plain_text(
    host: TemplateHost | None,
) -> None:
    job = jobs_pb2.Job(
        id=4,
        name="shot",
        attributes=[
            jobs_pb2.JobAttribute(
                name="arguments", string_value="-f <%= int(chunk.getStartFrame()) %>"
            ),
            jobs_pb2.JobAttribute(name="plain", string_value=r"%ATTR(job_id) \;"),
            jobs_pb2.JobAttribute(name="pre_chunk_action", string_value=r"echo %ATTR(job_id)\;"),
            jobs_pb2.JobAttribute(
                name="post_chunk_action", string_value="echo <%= chunk.getId() %>"
            ),
        ],
        environment={"CTX": "<%= muster.runningContext() %>", "KEEP": "a <b> %c"},
    )
    chunk = jobs_pb2.Chunk(id=2, start_frame=9, end_frame=9)
    a = agent_pb2.Assignment(job=job, chunk=chunk, environment={"SHOT": "<%= job.getName() %>"})
    prepared = run(lambda: prepare(a, 30, host))
    attributes = {x.name: x.string_value for x in prepared.assignment.job.attributes}
    assert attributes["arguments"] == "-f 9"
    assert attributes["plain"] == r"%ATTR(job_id) \;"
    # The job keeps its actions' text; the evaluated lines are the Prepared's.
    assert attributes["pre_chunk_action"] == r"echo %ATTR(job_id)\;"
    assert (prepared.pre_action, prepared.post_action) == ("echo 4;", "echo 2")
    assert dict(prepared.assignment.job.environment) == {"CTX": "renderclient", "KEEP": "a <b> %c"}
    assert dict(prepared.assignment.environment) == {"SHOT": "shot"}
    # Nothing to evaluate: the same assignment.
    plain = agent_pb2.Assignment(job=jobs_pb2.Job(environment={"A": "b"}))
    assert run(lambda: prepare(plain, 30, host)).assignment is plain


def test_prepare_raises_with_the_traceback(host: TemplateHost | None) -> None:
    job = jobs_pb2.Job(environment={"BAD": "<%= job.noSuchThing %>"})
    with pytest.raises(ExpressionError) as caught:
        run(lambda: prepare(agent_pb2.Assignment(job=job), 30, host))
    assert caught.value.field == "job.environment[BAD]"
    assert "Traceback" in caught.value.detail


def test_an_expression_that_kills_the_template_host_fails_only_its_chunk() -> None:
    # A host's start counts against its timeout: the dying host gets a long one
    # (a loaded machine starts it slowly), the hanging one a short one.
    hosts = [TemplateHost(timeout=30), TemplateHost(timeout=2)]
    try:
        for host, code, message in (
            (
                hosts[0],
                "<% import os; os._exit(3) %>",
                "inline expressions: the template host died",
            ),
            (
                hosts[1],
                "<% import time; time.sleep(30) %>",
                "inline expressions: no answer within 2s",
            ),
        ):
            killing = agent_pb2.Assignment(job=jobs_pb2.Job(environment={"X": code}))
            with pytest.raises(ExpressionError) as caught:
                run(functools.partial(prepare, killing, 30, host))
            assert message in str(caught.value), str(caught.value)
        # Each host is started again for the next chunk.
        for host in hosts:
            again = agent_pb2.Assignment(job=jobs_pb2.Job(environment={"X": "<%= 6 * 7 %>"}))
            prepared = run(functools.partial(prepare, again, 30, host))
            assert prepared.assignment.job.environment["X"] == "42"
    finally:
        for host in hosts:
            host.close()


def chunk_run(tmp_path: Path, runner: TemplateRunner, **actions: str) -> ChunkRun:
    a = template_assignment(1, f"echo rendered >> {tmp_path / 'out'}")
    a.job.attributes.extend(
        jobs_pb2.JobAttribute(name=k, string_value=v) for k, v in actions.items()
    )
    return ChunkRun(
        a,
        priority=DEFAULT_PRIORITY,
        work_dir=tmp_path,
        kill_grace_seconds=0.5,
        send_log=lambda log: None,
        template=runner,
    )


@pytest.mark.parametrize("when", ["pre_chunk_action", "post_chunk_action"])
def test_a_kill_while_an_action_runs_stops_it_and_the_run_is_killed(
    config: AgentConfig, tmp_path: Path, when: str
) -> None:
    runner = TemplateRunner(cached_code(tmp_path / "templates"), {}, 0, 10)
    pid_file = tmp_path / "action"

    async def body() -> agent_pb2.ChunkResult:
        chunk = chunk_run(tmp_path, runner, **{when: f"echo $$ > {pid_file}; exec sleep 60"})
        task = asyncio.create_task(chunk.run())
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.05)
        await chunk.kill("killed by alice")
        return await task

    try:
        result = run(body)
    finally:
        runner.close()
    assert (result.outcome, result.message) == (
        common_pb2.CHUNK_RUN_OUTCOME_KILLED,
        "killed by alice",
    )
    assert gone(int(pid_file.read_text()))
    # The render ran only when the action came after it.
    assert (tmp_path / "out").exists() == (when == "post_chunk_action")
