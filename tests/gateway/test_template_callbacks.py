"""Dispatcher callbacks as methods of MTemplateAPI templates: a real studio
template file, run by the real hook worker, for the jobs of that template only."""

from __future__ import annotations

import logging
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import MClientAPI
import MDispatcherAPI
import pytest
from sqlalchemy import text

from muster_gateway import errors
from muster_gateway.connection import reset_connection
from muster_services import app
from muster_services.core.database import Database
from muster_services.core.settings import Settings
from muster_services.jobs.hooks import HookRunner
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.gateway.test_hooks import _dependent_farm, _eventually, _job, _names
from tests.support import InProcessServer

STUDIO_ID = 4200


def _template(folder: Path, methods: str, template_id: int = STUDIO_ID) -> Path:
    """A studio template file whose class has `methods`; returns its path."""
    path = folder / f"studio_{template_id}.py"
    body = textwrap.indent(textwrap.dedent(methods), "    ")
    path.write_text(
        "import MClientAPI\n"
        "import MDispatcherAPI\n"
        "import MTemplateAPI\n"
        "import muster\n\n\n"
        "class Studio(MTemplateAPI.MTemplate):\n"
        "    def __init__(self):\n"
        "        MTemplateAPI.MTemplate.__init__(self)\n"
        f"        self.setID({template_id})\n"
        f"        self.setName('studio {template_id}')\n\n"
        f"{body}\n\n"
        "MTemplateAPI.MManager.getUniqueClass().installPyTemplate(Studio())\n"
    )
    return path


def _touch_later(path: Path, seconds: float) -> None:
    stamp = path.stat().st_mtime + seconds
    os.utime(path, (stamp, stamp))


def _register_template(db: Database, template_id: int = STUDIO_ID) -> None:
    """The templates row the catalogue will write (jobs reference it)."""
    with db.transaction() as session:
        session.execute(
            text("INSERT INTO templates (id, name) VALUES (:i, :n) ON CONFLICT (id) DO NOTHING"),
            {"i": template_id, "n": f"studio {template_id}"},
        )


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    return folder


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "hooks"  # empty: only the templates define callbacks
    folder.mkdir()
    return folder


@pytest.fixture
def farm(
    db: Database, hooks_dir: Path, templates_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    settings = Settings(
        hooks_dir=hooks_dir,
        templates_dir=templates_dir,
        hook_timeout_seconds=2.0,
        event_poll_seconds=0.5,
    )
    with InProcessServer(app.build_components(list(app.SERVICE_NAMES), db, settings)) as server:
        _register_template(db)
        monkeypatch.setenv("MUSTER_DISPATCHER", server.address)
        monkeypatch.setenv("MUSTER_USER", "td")
        monkeypatch.setenv("MUSTER_TOKEN", server.token("td"))
        monkeypatch.delenv("MUSTER_RUNNING_CONTEXT", raising=False)
        reset_connection()
        yield server.address
    reset_connection()


def _submit(name: str, template: int = STUDIO_ID) -> tuple[int, str]:
    err, job_id = MDispatcherAPI.jobSubmit(_job(name, template), "td")
    return err.getErrorCode(), err.getDescription() if err.getErrorCode() else str(job_id)


def test_the_template_validator_refuses_jobs_of_its_template_only(
    farm: str, templates_dir: Path
) -> None:
    _template(
        templates_dir,
        """
        def onValidateJobSubmission(self, job):
            if job.getName() == "warned":
                return MTemplateAPI.MTemplateError(
                    3, "a warning", MTemplateAPI.MTemplateError.kTemplateErrorTypeWarning
                )
            if not job.getName().startswith("shot"):
                error = MTemplateAPI.MTemplateError.kTemplateErrorTypeError
                return MTemplateAPI.MTemplateError(2, "studio jobs are named shot*", error)
            return MTemplateAPI.MTemplateError()
        """,
    )
    code, reason = _submit("lighting")
    assert code == errors.kErrorFailedPrecondition
    assert "studio jobs are named shot*" in reason
    assert _names() == []  # nothing stored
    assert _submit("shot010")[0] == 0
    assert _submit("warned")[0] == 0  # a warning does not refuse
    # A job of another template is not the template's business.
    assert _submit("lighting", COMMAND_LINE_TEMPLATE_ID)[0] == 0
    assert sorted(_names()) == ["lighting", "shot010", "warned"]


def test_template_reactions_run_in_the_dispatcher_context_with_mdispatcherapi(
    farm: str, templates_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "reactions.txt"
    _template(
        templates_dir,
        f"""
        def _note(self, what):
            with open({str(marker)!r}, "a") as out:
                out.write(what + "\\n")

        def onSubmitJob(self, job):
            self._note("submit " + muster.runningContext() + " " + job.getName())

        def onJobEnd(self, job):
            err, stored = MDispatcherAPI.jobGet(job.getJobId())
            assert err.getErrorCode() == 0, err.getDescription()
            self._note("end " + stored.getName() + " " + str(stored.getStatus()))
            return MTemplateAPI.MTemplateError()
        """,
    )
    code, job_id = _submit("shot020")
    assert code == 0
    assert _submit("other", COMMAND_LINE_TEMPLATE_ID)[0] == 0
    _eventually(lambda: marker.exists() and "submit dispatcher shot020" in marker.read_text())
    done = MClientAPI.MChunk.kChunkStatusCompleted
    for chunk in (1, 2):
        assert MDispatcherAPI.chunkSetStatus(int(job_id), chunk, done).getErrorCode() == 0
    completed = MClientAPI.MJob.kJobStatusCompleted
    _eventually(lambda: f"end shot020 {completed}" in marker.read_text())
    time.sleep(1)  # the other job's reactions have run by now (events in order)
    assert "other" not in marker.read_text()


def test_a_raising_or_overrunning_method_is_logged_and_does_not_block(
    farm: str, templates_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _template(
        templates_dir,
        """
        def onValidateJobSubmission(self, job):
            if job.getName() == "hang":
                import time
                time.sleep(60)
            raise RuntimeError("this template is broken")
        """,
    )
    with caplog.at_level(logging.ERROR, logger="muster_services.jobs.hooks"):
        assert _submit("raise")[0] == 0
        assert "this template is broken" in caplog.text
        assert "Traceback" in caplog.text
        started = time.monotonic()
        assert _submit("hang")[0] == 0
        assert time.monotonic() - started < 10  # abandoned after the 2 s limit
        assert "onValidateJobSubmission overran" in caplog.text
    assert sorted(_names()) == ["hang", "raise"]


def test_an_edited_template_file_acts_at_once(farm: str, templates_dir: Path) -> None:
    path = _template(
        templates_dir,
        """
        def onValidateJobSubmission(self, job):
            return job.getName() != "alpha"
        """,
    )
    assert _submit("alpha")[0] == errors.kErrorFailedPrecondition
    assert _submit("beta")[0] == 0
    path.write_text(path.read_text().replace('"alpha"', '"beta"'))
    _touch_later(path, 2)
    assert _submit("beta")[0] == errors.kErrorFailedPrecondition
    assert _submit("alpha")[0] == 0
    # The method removed: nothing refuses any more.
    path.write_text(path.read_text().replace("def onValidateJobSubmission", "def unused"))
    _touch_later(path, 4)
    assert _submit("beta")[0] == 0


def test_the_scheduler_asks_the_template_for_the_user_and_idles_every_template(
    db: Database, hooks_dir: Path, templates_dir: Path, tmp_path: Path
) -> None:
    from muster_services.jobs.scheduler import Scheduler

    idle = tmp_path / "idle.txt"
    for template_id in (STUDIO_ID, STUDIO_ID + 1):
        _template(
            templates_dir,
            f"""
            def onDispatcherOverrideImpersonationUser(self, job, chunk, node):
                return "render-" + node + "-" + str(int(chunk.getStartFrame()))

            def onDispatcherIdling(self):
                with open({str(idle)!r}, "a") as out:
                    out.write(str(self.getID()) + "\\n")
            """,
            template_id,
        )
    runner = HookRunner(hooks_dir, timeout=5, templates_folder=templates_dir)
    try:
        assert runner.enabled  # no hook file: the templates define callbacks
        assert runner.defines("onDispatcherOverrideImpersonationUser")
        assert not runner.defines("onValidateJobDependancies")
        scheduler = Scheduler(db, hooks=runner, idle_seconds=0)
        scheduler._note_idling(0)
        assert sorted(idle.read_text().split()) == [str(STUDIO_ID), str(STUDIO_ID + 1)]

        second = _dependent_farm(db, nodes=1)  # jobs of the command-line template
        _register_template(db)
        with db.transaction() as session:
            session.execute(
                text("UPDATE jobs SET template_id = :t WHERE id = :j"),
                {"t": STUDIO_ID, "j": second},
            )
        assert scheduler.tick() == 1
        with db.transaction() as session:
            users = session.execute(text("SELECT job_id, run_as_user FROM chunk_assignments")).all()
        assert [(int(j), u) for j, u in users] == [(second, "render-n0-1")]
    finally:
        runner.close()


def test_without_hook_files_or_callbacks_the_runner_stays_off(
    hooks_dir: Path, templates_dir: Path
) -> None:
    runner = HookRunner(hooks_dir, timeout=5, templates_folder=templates_dir)
    try:
        assert not runner.enabled
        path = _template(templates_dir, "pass\n")  # a template without callbacks
        assert not runner.enabled
        assert runner.call("onValidateJobSubmission") == {"accept": True, "ran": 0}
        path.write_text(path.read_text().replace("pass\n", "def onJobStart(self, job): pass\n"))
        _touch_later(path, 2)
        assert runner.enabled and runner.defines("onJobStart")
    finally:
        runner.close()
