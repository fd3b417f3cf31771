"""ChunkRun with a template: the real template host builds the command, the
log is checked while the process runs, progress is reported at most once a
second. The code comes from the agent's disk cache (as after a restart)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from muster_agent.config import AgentConfig
from muster_agent.runner import ChunkRun
from muster_agent.system import DEFAULT_PRIORITY
from muster_agent.templates import TemplateCode, TemplateRunner
from muster_gateway.template_engine import version_of
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2
from tests.agent.studio_template import SOURCE
from tests.agent.support import run

VERSION = version_of(SOURCE)


def cached_code(folder: Path) -> TemplateCode:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"1701-{VERSION}.json").write_text(
        json.dumps({"template_id": 1701, "version": VERSION, "source": SOURCE, "file_name": "s.py"})
    )
    return TemplateCode(folder)


def assignment(token: int, script: str, end_frame: float = 1) -> agent_pb2.Assignment:
    job = jobs_pb2.Job(id=3, name="studio", template_id=1701)
    job.attributes.add(name="script", string_value=script)
    return agent_pb2.Assignment(
        job_id=3,
        chunk_id=1,
        fencing_token=token,
        template_id=1701,
        template_version=VERSION,
        job=job,
        chunk=jobs_pb2.Chunk(id=1, job_id=3, start_frame=1, end_frame=end_frame, by_frame=1),
    )


def test_an_abort_verdict_kills_the_render_at_once(config: AgentConfig, tmp_path: Path) -> None:
    runner = TemplateRunner(cached_code(tmp_path / "templates"), {}, 0, 10)
    logs: list[agent_pb2.ChunkLog] = []

    async def body() -> agent_pb2.ChunkResult:
        chunk = ChunkRun(
            assignment(1, "echo 'ABORT: licence lost'; sleep 30"),
            priority=DEFAULT_PRIORITY,
            work_dir=tmp_path,
            kill_grace_seconds=0.5,
            send_log=logs.append,
            template=runner,
        )
        return await chunk.run()

    started = time.monotonic()
    try:
        result = run(body)
    finally:
        runner.close()
    assert time.monotonic() - started < 8
    assert (result.outcome, result.message) == (
        common_pb2.CHUNK_RUN_OUTCOME_FAILED,
        "error in log: ABORT: licence lost",
    )
    lines = [line.text for log in logs for line in log.lines]
    assert "aborted by the template: error in log: ABORT: licence lost" in lines


def test_progress_is_sent_on_change_at_most_once_a_second(
    config: AgentConfig, tmp_path: Path
) -> None:
    runner = TemplateRunner(cached_code(tmp_path / "templates"), {}, 0, 10)
    reports: list[tuple[float, float]] = []

    async def body() -> agent_pb2.ChunkResult:
        chunk = ChunkRun(
            assignment(
                2,
                "for f in 1 2 3 4; do echo Frame $f done; echo Frame $f done again; done;"
                " sleep 1.5; echo 'WARNING: slow disk'",
                end_frame=8,
            ),
            priority=DEFAULT_PRIORITY,
            work_dir=tmp_path,
            kill_grace_seconds=0.5,
            send_log=lambda log: None,
            template=runner,
            send_progress=lambda p: reports.append((time.monotonic(), p.progress)),
        )
        return await chunk.run()

    try:
        result = run(body)
    finally:
        runner.close()
    # 0 once the process started (the chunk is running), then 8 frame-done
    # lines of an 8-frame chunk at once: the newest value a second after the
    # first report, nothing more (no change).
    assert [p for _, p in reports] == [0.0, 100.0]
    assert reports[1][0] - reports[0][0] >= 0.95
    assert (result.outcome, result.message) == (
        common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED_WITH_WARNINGS,
        "warning in log: WARNING: slow disk",
    )
