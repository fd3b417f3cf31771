"""`muster-script`: a console script run in the dispatcher context, as a real
subprocess against a real dispatcher."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import MDispatcherAPI

from muster_gateway.client_config import write_client_config

MUSTER_SCRIPT = Path(sys.executable).parent / "muster-script"


def _run(
    script: Path, *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    return subprocess.run(
        [str(MUSTER_SCRIPT), str(script), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _facade_env(dispatcher: str) -> dict[str, str]:
    """The normal connection settings: the address and the caller's token
    (the `dispatcher` fixture's, for the user pipeline-td)."""
    return {"MUSTER_DISPATCHER": dispatcher, "MUSTER_TOKEN": os.environ["MUSTER_TOKEN"]}


def _script(folder: Path, name: str, code: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(code))
    return path


SUBMITTING = """
    import sys

    import muster
    import MClientAPI
    import MDispatcherAPI

    print("context", muster.runningContext())
    print("argv", sys.argv[1:])
    job = MClientAPI.MJob()
    job.setName(sys.argv[1])
    job.setTemplateID(1000)
    job.attributeSetString("executable", "/bin/true")
    err, job_id = MDispatcherAPI.jobSubmit(job, "script-owner")
    assert err.getErrorCode() == 0, err.getDescription()
    err, found = MDispatcherAPI.jobGet(job_id)
    print("job", job_id, found.getName(), found.getOwner())
"""


def test_a_script_runs_in_the_dispatcher_context_with_its_arguments(
    dispatcher: str, tmp_path: Path
) -> None:
    script = _script(tmp_path, "submit.py", SUBMITTING)
    done = _run(script, "from script", "--two", env=_facade_env(dispatcher))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "context dispatcher"
    assert lines[1] == "argv ['from script', '--two']"
    word, job_id, *rest = lines[2].split(" ")
    assert word == "job" and rest == ["from", "script", "script-owner"]
    err, job = MDispatcherAPI.jobGet(int(job_id))  # really stored by the dispatcher
    assert err.getErrorCode() == 0 and job is not None and job.getName() == "from script"


def test_a_script_finds_the_dispatcher_through_the_client_file(
    dispatcher: str, tmp_path: Path
) -> None:
    client_file = write_client_config(dispatcher, tmp_path / "client.json")
    script = _script(tmp_path, "submit.py", SUBMITTING)
    token = {"MUSTER_TOKEN": os.environ["MUSTER_TOKEN"]}
    done = _run(script, "via client file", env={"MUSTER_CLIENT_CONFIG": str(client_file), **token})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "context dispatcher"
    assert "via client file" in done.stdout


def test_a_script_that_raises_exits_non_zero_with_its_traceback(
    dispatcher: str, tmp_path: Path
) -> None:
    script = _script(
        tmp_path,
        "broken.py",
        """
        import MDispatcherAPI

        err = MDispatcherAPI.jobDelete(987654321)
        raise RuntimeError("no such job: " + err.getDescription())
        """,
    )
    done = _run(script, env=_facade_env(dispatcher))
    assert done.returncode == 1
    assert "RuntimeError: no such job: " in done.stderr
    assert "987654321" in done.stderr
    assert "Traceback" in done.stderr


def test_exit_codes_and_bad_command_lines(tmp_path: Path) -> None:
    script = _script(tmp_path, "exit.py", "import sys\nsys.exit(int(sys.argv[1]))\n")
    assert _run(script, "3", env={}).returncode == 3
    assert _run(script, "0", env={}).returncode == 0
    missing = _run(tmp_path / "missing.py", env={})
    assert missing.returncode == 2 and "no such file" in missing.stderr
    usage = subprocess.run([str(MUSTER_SCRIPT)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage: muster-script FILE" in usage.stderr
