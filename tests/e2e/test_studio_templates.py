"""A studio's MTemplateAPI template on a real farm: the dispatcher loads the
file, a real agent runs the template's callbacks, and an edit of the file while
a job of it runs reaches the chunks that start after it, not the one running."""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services.core.database import Database
from tests.e2e.test_real_renders import chunk_log
from tests.e2e.test_render import completed_history, eventually
from tests.support import AgentProcess

TEMPLATE_ID = 150


def sleeper_template(word: str, seconds: float) -> str:
    """A template whose chunks sleep, then print `word` and their frames."""
    return textwrap.dedent(
        f"""
        import MTemplateAPI


        class Sleeper(MTemplateAPI.MTemplate):
            def __init__(self):
                MTemplateAPI.MTemplate.__init__(self)
                self.setID({TEMPLATE_ID})
                self.setName("Sleeper")
                self.setDescription("says {word}")
                self.addSubmissionItem(MTemplateAPI.MTemplateItemString(
                    "WORD", "Word", "printed by every chunk", "hello", 0, 0, 1))
                self.platformLinux.setPlatformEnabled(1)
                self.platformLinux.addClientConfigurationItem(
                    MTemplateAPI.MTemplateItemFile("SHELL", "Shell", "", "/bin/sh", 0, 0, 1))

            def onGetApplicationPath(self, job, clientTemplatePreferences, pathOut):
                pathOut.setString(clientTemplatePreferences["SHELL"])
                return MTemplateAPI.MTemplateError()

            def onBuildCommandLine(self, platform, job, chunk, prefs, instanceNum):
                script = "sleep {seconds}; echo {word} %s frame %d" % (
                    job.attributeGetString("WORD"), chunk.getStartFrame())
                return ["-c", script]


        MTemplateAPI.MManager.getUniqueClass().installPyTemplate(Sleeper())
        """
    )


def write_later(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_an_edited_studio_template_reaches_new_chunks_and_spares_the_running_one(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    templates_dir: Path,
    start_agent: Callable[..., AgentProcess],
    database_url: str,
) -> None:
    path = templates_dir / "sleeper.py"
    write_later(path, sleeper_template("old", 3))

    def loaded(word: str) -> jobs_pb2.Template | None:
        try:
            found = jobs.GetTemplate(jobs_pb2.GetTemplateRequest(template_id=TEMPLATE_ID)).template
        except Exception:
            return None
        return found if found.description == f"says {word}" else None

    first = eventually(lambda: loaded("old"), 30, "the studio template loaded")
    start_agent("sleeper-node")
    job_id = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(
            job=jobs_pb2.Job(
                name="sleepy",
                owner="alice",
                parent_id=-1,
                template_id=TEMPLATE_ID,
                start_frame=1,
                end_frame=2,
                by_frame=1,
                packet_size=1,
                priority=50,
            )
        )
    ).job.id

    def chunk_running() -> bool:
        listed = jobs.ListChunks(jobs_pb2.ListChunksRequest(job_id=job_id)).chunks
        return any(c.status == jobs_pb2.CHUNK_STATUS_RUNNING for c in listed)

    eventually(chunk_running, 60, "the first chunk running")
    write_later(path, sleeper_template("new", 0))
    second = eventually(lambda: loaded("new"), 30, "the edited template loaded")
    assert second.version != first.version
    runs = completed_history(jobs, job_id, "the job completed")
    assert [r.outcome for r in runs] == [common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED] * 2
    db = Database(database_url, pool_size=1)
    try:
        logs = [chunk_log(db, job_id, chunk) for chunk in (1, 2)]
    finally:
        db.dispose()
    # The default of the WORD item was stored with the job at submission.
    assert any("old hello frame 1" in line for line in logs[0]), logs[0]
    assert any("new hello frame 2" in line for line in logs[1]), logs[1]
