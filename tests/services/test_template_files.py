"""Template files as a running dispatcher sees them: loaded at start, reloaded
when edited, a broken one reported by `dispatcher status` and ListTemplates
while the service goes on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from tests.jobs.test_catalog import STUDIO_ID, studio_template, touch_later
from tests.support import REPO, DispatcherProcess


def test_a_running_dispatcher_loads_reloads_and_reports_template_files(
    database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "echo.py").write_text(studio_template(marker="v1"))
    (folder / "broken.py").write_text("import MTemplateAPI\n1 / 0\n")
    proc = DispatcherProcess(
        ["serve", "jobs", "nodes", "admin"],
        {
            "MUSTER_DATABASE_URL": database_url,
            "MUSTER_TEMPLATES_DIR": str(folder),
            "MUSTER_TEMPLATES_POLL_SECONDS": "0.2",
        },
    )
    try:
        with proc.channel() as channel:
            jobs = jobs_pb2_grpc.JobsServiceStub(channel)
            listed = jobs.ListTemplates(jobs_pb2.ListTemplatesRequest(page_size=100))
            assert STUDIO_ID in [t.id for t in listed.templates]
            assert [p.file_path for p in listed.problems] == [str(folder / "broken.py")]
            assert "ZeroDivisionError" in listed.problems[0].error
            first = jobs.GetTemplate(jobs_pb2.GetTemplateRequest(template_id=STUDIO_ID)).template
            assert "(v1)" in first.description

            touch_later(folder / "echo.py", studio_template(marker="v2"))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                now = jobs.GetTemplate(jobs_pb2.GetTemplateRequest(template_id=STUDIO_ID)).template
                if now.version != first.version:
                    break
                time.sleep(0.2)
            assert "(v2)" in now.description

        status = subprocess.run(
            [sys.executable, "-m", "muster_services.cli", "status", "--address", proc.address],
            cwd=REPO,
            env={**os.environ, **proc.facade_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "template files: 1 could not be used" in status.stdout
        assert f"{folder / 'broken.py'}: ZeroDivisionError: division by zero" in status.stdout
        assert any("broken.py failed to load" in line for line in proc.output)
    finally:
        proc.kill()
