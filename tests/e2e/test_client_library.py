"""A submitter written only with MClientAPI's client-library calls, run as
its own process against the dev stack (`dispatcher run --agents 2`): it
connects, authenticates, sends jobs and reads their ids from the job objects,
and the local agents render them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from muster_gateway import errors
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.e2e import test_client_processes
from tests.e2e.conftest import free_port
from tests.e2e.test_client_processes import Farm
from tests.e2e.test_render import eventually

farm = test_client_processes.farm

# What a DCC submitter does, in Muster's own calls only. argv: host port user
# password folder; prints "sent <id> <id>" or "failed <code> <description>".
SUBMITTER = textwrap.dedent(
    """
    import sys
    import MClientAPI
    from MTemplateAPI import kTemplateMultiframe

    host, port, user, password, out = sys.argv[1:6]

    def check(err, what):
        if err.getErrorCode() != 0:
            print("failed", what, err.getErrorCode(), err.getDescription())
            sys.exit(1)

    check(MClientAPI.InitializeLibrary(""), "library")
    session = MClientAPI.InitializeSession()
    check(MClientAPI.Connect(session, host, int(port)), "connect")
    check(MClientAPI.Authenticate(session, user, password), "authenticate")

    def frames_job(name, first, last):
        job = MClientAPI.MJob()
        job.setName(name)
        job.setTemplateID(TEMPLATE)
        job.setPacketType(kTemplateMultiframe)
        job.setPacketSize(1)
        job.attributeSetFloat("start_frame", first)
        job.attributeSetFloat("end_frame", last)
        job.attributeSetFloat("by_frame", 1)
        job.attributeSetString("executable", "/bin/sh")
        script = "for f in $(seq {start} {end}); do echo " + name
        script += " >> " + out + "/frame_$f.txt; done"
        job.attributeSetString("arguments", "-c '" + script + "'")
        return job

    plates = frames_job("plates", 1, 3)
    check(MClientAPI.ActionSendJob(session, plates), "send plates")
    comp = frames_job("comp", 1, 3)
    comp.setDependMode(MClientAPI.MJob.kJobDependSuccess)
    comp.setDepends(plates.getJobId())  # an int, as scripts pass it
    check(MClientAPI.ActionSendJob(session, comp), "send comp")
    print("sent", plates.getJobId(), comp.getJobId())
    check(MClientAPI.Disconnect(session), "disconnect")
    """
).replace("TEMPLATE", str(COMMAND_LINE_TEMPLATE_ID))


def submit(
    folder: Path, host: str, port: int, user: str, password: str, **env: str
) -> subprocess.CompletedProcess[str]:
    script = folder / "submit.py"
    script.write_text(SUBMITTER)
    out = folder / "frames"
    out.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(script), host, str(port), user, password, str(out)],
        cwd=folder,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(folder),
            # Nothing but the arguments says where to go, unless a test sets it.
            "MUSTER_CLIENT_CONFIG": str(folder / "no-client-file.json"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_client_library_submitter_sends_jobs_that_render_on_the_local_agents(
    farm: Farm, tmp_path: Path
) -> None:
    host, port = farm.dispatcher.address.rsplit(":", 1)
    done = submit(tmp_path, host, int(port), "alice", "alice-password")
    assert done.returncode == 0, done.stdout + done.stderr
    words = done.stdout.split()
    assert words[0] == "sent", done.stdout
    plates, comp = int(words[1]), int(words[2])
    assert 0 < plates < comp
    with farm.dispatcher.channel() as channel:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)

        def finished() -> bool:
            statuses = [
                jobs.GetJob(jobs_pb2.GetJobRequest(job_id=i)).job.status for i in (plates, comp)
            ]
            return all(s == jobs_pb2.JOB_STATUS_COMPLETED for s in statuses)

        eventually(finished, timeout=90, what="both jobs rendered")
        sent = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=comp)).job
        assert (sent.owner, list(sent.depend_ids)) == ("alice", [plates])
        history = {
            i: list(jobs.ListChunkHistory(jobs_pb2.ListChunkHistoryRequest(job_id=i)).chunk_runs)
            for i in (plates, comp)
        }
    # Every frame rendered once by each job, the comp after the plates.
    for frame in (1, 2, 3):
        lines = (tmp_path / "frames" / f"frame_{frame}.txt").read_text().split()
        assert lines == ["plates", "comp"]
    last_plate = max(r.end_time.ToNanoseconds() for r in history[plates])
    first_comp = min(r.start_time.ToNanoseconds() for r in history[comp])
    assert first_comp >= last_plate


def test_a_muster_address_maps_to_this_dispatcher(farm: Farm, tmp_path: Path) -> None:
    # By MUSTER_CLIENT_ADDRESS_MAP, and a Muster console port on any other
    # host by the configured dispatcher (MUSTER_DISPATCHER).
    mapped = submit(
        tmp_path,
        "muster-server",
        9781,
        "bob",
        "bob-password",
        MUSTER_CLIENT_ADDRESS_MAP=f"muster-server:9781={farm.dispatcher.address}",
    )
    assert mapped.stdout.startswith("sent "), mapped.stdout + mapped.stderr
    configured = submit(
        tmp_path, "old-farm", 9881, "bob", "bob-password", MUSTER_DISPATCHER=farm.dispatcher.address
    )
    assert configured.stdout.startswith("sent "), configured.stdout + configured.stderr


def test_wrong_password_and_unreachable_host_answer_error_values(
    farm: Farm, tmp_path: Path
) -> None:
    host, port = farm.dispatcher.address.rsplit(":", 1)
    wrong = submit(tmp_path, host, int(port), "alice", "not-her-password")
    assert wrong.returncode == 1 and not wrong.stderr, wrong.stderr
    assert wrong.stdout.startswith(f"failed authenticate {errors.kErrorUnauthenticated} "), (
        wrong.stdout
    )
    closed = free_port()
    away = submit(tmp_path, "127.0.0.1", closed, "alice", "alice-password")
    assert away.returncode == 1 and not away.stderr, away.stderr
    assert away.stdout.startswith(f"failed connect {errors.kErrorUnavailable} "), away.stdout
    assert "unreachable" in away.stdout
    unconfigured = submit(tmp_path, "old-farm", 9781, "alice", "alice-password")
    assert unconfigured.stdout.startswith(f"failed connect {errors.kErrorNotConfigured} "), (
        unconfigured.stdout
    )
