"""Dispatcher hooks: real hook files run by the dispatcher, calling MDispatcherAPI."""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import MClientAPI
import MDispatcherAPI
import pytest

from muster_gateway import errors
from muster_gateway.connection import reset_connection
from muster_services import app
from muster_services.core.database import Database
from muster_services.core.settings import Settings
from muster_services.jobs.templates import BLENDER_TEMPLATE_ID, COMMAND_LINE_TEMPLATE_ID
from tests.support import InProcessServer


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "hooks"
    folder.mkdir()
    return folder


@pytest.fixture
def farm(db: Database, hooks_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    settings = Settings(hooks_dir=hooks_dir, hook_timeout_seconds=2.0, event_poll_seconds=0.5)
    with InProcessServer(app.build_components(list(app.SERVICE_NAMES), db, settings)) as server:
        monkeypatch.setenv("MUSTER_DISPATCHER", server.address)
        monkeypatch.setenv("MUSTER_USER", "td")
        monkeypatch.setenv("MUSTER_TOKEN", server.token("td"))
        monkeypatch.delenv("MUSTER_RUNNING_CONTEXT", raising=False)
        reset_connection()
        yield server.address
    reset_connection()


def _hook(folder: Path, name: str, code: str) -> None:
    (folder / name).write_text(textwrap.dedent(code))


def _job(name: str, template: int = COMMAND_LINE_TEMPLATE_ID) -> Any:
    job = MClientAPI.MJob()
    job.setName(name)
    job.setTemplateID(template)
    job.attributeSetString("executable", "/bin/true")
    job.attributeSetString("job_file", "/tmp/scene.blend")
    job.attributeSetString("output_pattern", "/tmp/out_####")
    job.attributeSetFloat("start_frame", 1)
    job.attributeSetFloat("end_frame", 2)
    job.setPacketSize(1)
    return job


def _eventually(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def _names() -> list[str]:
    err, jobs = MDispatcherAPI.jobGetList()
    assert err.getErrorCode() == 0, err
    return [j.getName() for j in jobs]


def test_a_validator_refuses_a_submission_with_its_reason(farm: str, hooks_dir: Path) -> None:
    _hook(
        hooks_dir,
        "naming.py",
        """
        import MClientAPI

        def onValidateJobSubmission(job):
            if not job.getName().startswith("shot"):
                return MClientAPI.MUSTERERR(1, "job names start with 'shot'")
    """,
    )
    err, job_id = MDispatcherAPI.jobSubmit(_job("lighting"), "td")
    assert err.getErrorCode() == errors.kErrorFailedPrecondition
    assert "job names start with 'shot'" in err.getDescription()
    assert job_id == 0
    assert _names() == []
    err, job_id = MDispatcherAPI.jobSubmit(_job("shot010"), "td")
    assert err.getErrorCode() == 0 and job_id > 0


def test_reactions_run_in_the_dispatcher_context_and_may_submit_jobs(
    farm: str, hooks_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "context.txt"
    _hook(
        hooks_dir,
        "follow_up.py",
        f"""
        import muster
        import MDispatcherAPI
        import MClientAPI

        def onSubmitJob(job):
            open({str(marker)!r}, "a").write(muster.runningContext() + " " + job.getName() + "\\n")

        def onJobCompleted(job):
            if job.getName().startswith("follow-up"):
                return
            follow = MClientAPI.MJob()
            follow.setName("follow-up of " + job.getName())
            follow.setTemplateID(job.getTemplateID())
            follow.attributeSetString("executable", "/bin/true")
            err, new_id = MDispatcherAPI.jobSubmit(follow, job.getOwner())
            assert err.getErrorCode() == 0, err.getDescription()
    """,
    )
    err, job_id = MDispatcherAPI.jobSubmit(_job("comp"), "td")
    assert err.getErrorCode() == 0
    _eventually(lambda: marker.exists() and "dispatcher comp" in marker.read_text())
    for chunk in (1, 2):
        err = MDispatcherAPI.chunkSetStatus(job_id, chunk, MClientAPI.MChunk.kChunkStatusCompleted)
        assert err.getErrorCode() == 0, err
    _eventually(lambda: "follow-up of comp" in _names())


def test_a_hook_that_raises_or_hangs_never_stops_the_service(farm: str, hooks_dir: Path) -> None:
    _hook(
        hooks_dir,
        "broken.py",
        """
        import time

        def onValidateJobSubmission(job):
            if job.getName() == "hang":
                time.sleep(60)
            raise RuntimeError("this hook is broken")
    """,
    )
    err, _ = MDispatcherAPI.jobSubmit(_job("raise"), "td")
    assert err.getErrorCode() == 0
    started = time.monotonic()
    err, _ = MDispatcherAPI.jobSubmit(_job("hang"), "td")
    assert err.getErrorCode() == 0
    assert time.monotonic() - started < 10  # abandoned after the 2 s limit
    assert sorted(_names()) == ["hang", "raise"]


def test_a_hook_tied_to_templates_only_sees_their_jobs(farm: str, hooks_dir: Path) -> None:
    _hook(
        hooks_dir,
        "blender_only.py",
        f"""
        TEMPLATES = ({BLENDER_TEMPLATE_ID},)

        def onValidateJobSubmission(job):
            return False
    """,
    )
    err, _ = MDispatcherAPI.jobSubmit(_job("cmd"), "td")
    assert err.getErrorCode() == 0
    err, _ = MDispatcherAPI.jobSubmit(_job("blend", BLENDER_TEMPLATE_ID), "td")
    assert err.getErrorCode() == errors.kErrorFailedPrecondition


def _dependent_farm(
    db: Database, nodes: int, frames: int = 1, done: int = 1, depend_chunks: bool = False
) -> int:
    """A job of `frames` one-frame chunks whose first `done` completed, a job of
    `frames` one-frame chunks depending on it (chunk by chunk with
    `depend_chunks`), and `nodes` idle nodes; returns the dependent job's id."""
    from sqlalchemy import text

    from muster_services.core.bus import publish
    from muster_services.jobs.domain import Attribute, JobSpec
    from muster_services.jobs.service import JobsService

    jobs = JobsService(db)
    jobs.templates.seed_templates()
    spec: dict[str, Any] = dict(
        owner="td",
        template_id=COMMAND_LINE_TEMPLATE_ID,
        attributes=(Attribute("executable", "string", "/bin/true"),),
    )
    first = jobs.queue.submit_job(JobSpec(name="first", start_frame=1, end_frame=frames, **spec))
    for chunk in range(1, done + 1):
        jobs.chunks.set_chunk_status(first.id, chunk, "completed")
    second = jobs.queue.submit_job(
        JobSpec(
            name="second",
            depend_ids=(first.id,),
            depend_chunks=depend_chunks,
            priority=1,  # before its dependency
            start_frame=1,
            end_frame=frames,
            **spec,
        )
    )
    with db.transaction() as session:
        for n in range(nodes):
            session.execute(
                text(
                    "INSERT INTO nodes (name, host_name, platform, status, session_id)"
                    " VALUES (:n, :n, 'linux', 'idle', 'live')"
                ),
                {"n": f"n{n}"},
            )
        publish(session, "test.node", {})
    return int(second.id)


def test_idling_and_dependency_hooks_run_from_the_scheduler(
    db: Database, hooks_dir: Path, tmp_path: Path
) -> None:
    from muster_services.jobs.hooks import HookRunner
    from muster_services.jobs.scheduler import Scheduler

    marker = tmp_path / "idle.txt"
    _hook(
        hooks_dir,
        "farm.py",
        f"""
        import muster

        def onDispatcherIdling():
            open({str(marker)!r}, "w").write(muster.runningContext())

        def onValidateJobDependancies(job):
            return False  # hold every job that depends on another
    """,
    )
    runner = HookRunner(hooks_dir, timeout=5)
    try:
        scheduler = Scheduler(db, hooks=runner, idle_seconds=0)
        scheduler._note_idling(0)
        assert marker.read_text() == "dispatcher"

        _dependent_farm(db, nodes=1)
        assert scheduler.tick() == 0  # the dependency is met, the hook holds it
        (hooks_dir / "farm.py").unlink()
        assert scheduler.tick() == 1  # without the hook it goes
    finally:
        runner.close()


@contextmanager
def _scheduler_with_hooks(db: Database, hooks_dir: Path, code: str) -> Iterator[Any]:
    """A scheduler (not started: the test ticks it) whose hooks are `code`."""
    from muster_services.jobs.hooks import HookRunner
    from muster_services.jobs.scheduler import Scheduler

    _hook(hooks_dir, "frames.py", code)
    runner = HookRunner(hooks_dir, timeout=5)
    try:
        yield Scheduler(db, hooks=runner)
    finally:
        runner.close()


def _assigned(db: Database) -> list[tuple[int, int]]:
    from sqlalchemy import text

    with db.transaction() as session:
        rows = session.execute(
            text("SELECT job_id, chunk_number FROM chunk_assignments ORDER BY 1, 2")
        ).all()
    return [(int(job), int(chunk)) for job, chunk in rows]


def test_the_chunk_dependency_hook_holds_back_single_chunks(
    db: Database, hooks_dir: Path, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    code = f"""
        def onValidateChunkDependancies(job, chunk):
            with open({str(calls)!r}, "a") as out:
                out.write(f"{{job.getName()}} {{chunk.getId()}} {{chunk.getStartFrame():g}}\\n")
            if chunk.getStartFrame() == 2:
                return MClientAPI.MUSTERERR(1, "frame 2 waits for its plates")
            return chunk.getStartFrame() != 4

        import MClientAPI
    """
    with _scheduler_with_hooks(db, hooks_dir, code) as scheduler:
        second = _dependent_farm(db, nodes=4, frames=5, done=5)
        # Chunks 2 and 4 are held; 1, 3 and 5 go to three of the four nodes.
        assert scheduler.tick() == 3
        assert _assigned(db) == [(second, 1), (second, 3), (second, 5)]
        # Only the chunks of the job with dependencies were asked about.
        assert calls.read_text().splitlines() == [f"second {n} {n}" for n in range(1, 6)]
        assert scheduler.tick() == 0  # asked again, held again
        assert calls.read_text().splitlines()[5:] == ["second 2 2", "second 4 4"]
        (hooks_dir / "frames.py").unlink()
        assert scheduler.tick() == 1  # without the hook the next goes (one node left)


def test_with_chunk_dependencies_the_hooks_are_asked_about_the_ready_chunks_only(
    db: Database, hooks_dir: Path, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    code = f"""
        def onValidateJobDependancies(job):
            with open({str(calls)!r}, "a") as out:
                out.write(f"job {{job.getName()}}\\n")

        def onValidateChunkDependancies(job, chunk):
            with open({str(calls)!r}, "a") as out:
                out.write(f"chunk {{chunk.getId()}}\\n")
            return chunk.getStartFrame() != 2
    """
    with _scheduler_with_hooks(db, hooks_dir, code) as scheduler:
        # Frames 1-2 of the dependency are done, 3-5 are queued.
        second = _dependent_farm(db, nodes=1, frames=5, done=2, depend_chunks=True)
        assert scheduler.tick() == 1
        assert _assigned(db) == [(second, 1)]
        # The job is asked while its dependency is unmet; only its two ready
        # chunks are asked about, not the three still waiting for frames.
        assert calls.read_text().splitlines() == ["job second", "chunk 1", "chunk 2"]


def test_every_job_reaction_fires_in_the_dispatcher_context(
    farm: str, hooks_dir: Path, tmp_path: Path, db: Database
) -> None:
    from sqlalchemy import text

    from muster_services.core.bus import publish

    marker = tmp_path / "reactions.txt"
    reactions = (
        "onSubmitJob",
        "onEditJob",
        "onJobPropertiesChanged",
        "onReinitJob",
        "onJobStart",
        "onJobCompleted",
        "onJobEnd",
        "onDeleteJob",
    )
    _hook(
        hooks_dir,
        "reactions.py",
        "import muster\n"
        + "".join(
            f"def {name}(job):\n"
            f"    open({str(marker)!r}, 'a').write("
            f"'{name} ' + muster.runningContext() + ' ' + job.getName() + '\\n')\n"
            for name in reactions
        ),
    )

    def fired(name: str) -> bool:
        return marker.exists() and f"{name} dispatcher shot" in marker.read_text()

    err, job_id = MDispatcherAPI.jobSubmit(_job("shot"), "td")
    assert err.getErrorCode() == 0, err
    _eventually(lambda: fired("onSubmitJob"))

    err, job = MDispatcherAPI.jobGet(job_id)
    assert err.getErrorCode() == 0 and job is not None
    job.setPriority(70)
    assert MDispatcherAPI.jobEdit(job).getErrorCode() == 0
    _eventually(lambda: fired("onEditJob"))

    done = MClientAPI.MChunk.kChunkStatusCompleted
    assert MDispatcherAPI.chunkSetStatus(job_id, 1, done).getErrorCode() == 0
    _eventually(lambda: fired("onJobPropertiesChanged"))

    assert MDispatcherAPI.jobReinit(job_id).getErrorCode() == 0
    _eventually(lambda: fired("onReinitJob"))

    # An idle node: the scheduler gives it a chunk and the job starts.
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO nodes (name, host_name, platform, status, session_id)"
                " VALUES ('hook-node', 'hook-node', 'linux', 'idle', 'live')"
            )
        )
        publish(session, "test.node", {})
    _eventually(lambda: fired("onJobStart"))

    for chunk in (1, 2):
        assert MDispatcherAPI.chunkSetStatus(job_id, chunk, done).getErrorCode() == 0
    _eventually(lambda: fired("onJobCompleted") and fired("onJobEnd"))

    assert MDispatcherAPI.jobDelete(job_id).getErrorCode() == 0
    _eventually(lambda: fired("onDeleteJob"))
    order = [line.split()[0] for line in marker.read_text().splitlines()]
    assert order.index("onJobCompleted") < order.index("onJobEnd") < order.index("onDeleteJob")


def test_hook_files_reload_when_they_change_and_on_a_soft_restart(
    farm: str, hooks_dir: Path, tmp_path: Path
) -> None:
    helper = tmp_path / "studio_rules.py"  # a module the hook imports
    helper.write_text("REFUSED = 'alpha'\n")
    _hook(
        hooks_dir,
        "rules.py",
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import studio_rules

        def onValidateJobSubmission(job):
            if job.getName() == studio_rules.REFUSED:
                return False
    """,
    )

    def refused(name: str) -> bool:
        err, _ = MDispatcherAPI.jobSubmit(_job(name), "td")
        return bool(err.getErrorCode() == errors.kErrorFailedPrecondition)

    assert refused("alpha") and not refused("beta")
    # The hook file changes: the next call sees the new file.
    rules = hooks_dir / "rules.py"
    rules.write_text(rules.read_text().replace("studio_rules.REFUSED", "'gamma'"))
    stamp = rules.stat().st_mtime + 2
    os.utime(rules, (stamp, stamp))
    assert refused("gamma") and not refused("alpha")
    # Back to the imported rule; the module it imports changes too, which
    # only a soft restart picks up (Python keeps an imported module).
    rules.write_text(rules.read_text().replace("'gamma'", "studio_rules.REFUSED"))
    os.utime(rules, (stamp + 2, stamp + 2))
    helper.write_text("REFUSED = 'delta'\n")
    assert refused("alpha") and not refused("delta")
    assert MDispatcherAPI.systemSoftRestart().getErrorCode() == 0
    _eventually(lambda: refused("delta"))
    assert not refused("alpha")


def test_a_worker_slow_to_start_does_not_use_up_the_hook_timeout(hooks_dir: Path) -> None:
    """Starting Python and loading the files is not the hook's time: a cold
    worker on a busy node still answers (before, the call was stopped and a
    validator silently skipped)."""
    from muster_services.jobs.hooks import HookRunner

    _hook(
        hooks_dir,
        "slow_start.py",
        """
        import time

        time.sleep(2.5)  # a slow import, as on a loaded node
        print("loading")  # a hook's print goes to the log, not into the answers

        def onDispatcherIdling():
            return "answered"
    """,
    )
    runner = HookRunner(hooks_dir, timeout=1)
    try:
        assert runner.call("onDispatcherIdling")["value"] == "answered"
    finally:
        runner.close()


def test_a_worker_that_never_finishes_starting_is_stopped(hooks_dir: Path) -> None:
    from muster_services.jobs.hooks import HookError, HookRunner

    _hook(hooks_dir, "stuck.py", "import time\ntime.sleep(60)\n")
    runner = HookRunner(hooks_dir, timeout=0.5)
    runner.STARTUP_SECONDS = 1.0
    try:
        started = time.monotonic()
        with pytest.raises(HookError, match="did not start within 1s"):
            runner.call("onDispatcherIdling")
        assert time.monotonic() - started < 10
        assert runner.validate("onValidateJobSubmission") is None  # the service goes on
    finally:
        runner.close()


def test_a_hook_file_that_fails_to_load_is_a_warning_with_its_traceback(
    hooks_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The other files keep working; the broken one is one WARNING record
    naming it, traceback included (it was INFO, line by line)."""
    from muster_services.jobs.hooks import HookRunner

    _hook(hooks_dir, "broken.py", "import no_such_studio_module\n")
    _hook(hooks_dir, "fine.py", "def onDispatcherIdling():\n    return 'fine'\n")
    runner = HookRunner(hooks_dir, timeout=10)
    try:
        with caplog.at_level("INFO", logger="muster_services.jobs.hooks"):
            assert runner.call("onDispatcherIdling")["value"] == "fine"
            deadline = time.monotonic() + 10
            while not [r for r in caplog.records if "broken.py" in r.getMessage()]:
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.05)
    finally:
        runner.close()
    (record,) = [r for r in caplog.records if "broken.py" in r.getMessage()]
    assert record.levelname == "WARNING"
    text = record.getMessage()
    assert "hook file broken.py failed to load" in text
    assert "Traceback (most recent call last)" in text
    assert "ModuleNotFoundError: No module named 'no_such_studio_module'" in text
