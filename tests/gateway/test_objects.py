"""MClientAPI's object classes: the names real Muster scripts use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import MClientAPI

from muster_proto.jobs.v1 import jobs_pb2


def test_a_submit_script_builds_the_job_message_it_means() -> None:
    job = MClientAPI.MJob()
    job.setName("shot_010 lighting")
    job.setParentId(-1)
    job.setJobType(MClientAPI.MJob.kJobTypeJob)
    job.setPriority(65535)
    job.setTemplateID(37)
    job.setIncludedPools("lighting, gpu")
    job.setPacketSize(5)
    job.setDependMode(MClientAPI.MJob.kJobDependSuccess)
    job.setDepends("12,14")
    job.setDependChunks(True)
    job.setMaximumNodes(0)
    job.setProject("show")
    job.setDepartment("lighting")
    job.setLogsErrorCheckType(MClientAPI.MJob.kSkipWarnings)
    job.attributeSetFloat("start_frame", 1)
    job.attributeSetFloat("end_frame", 100)
    job.attributeSetFloat("by_frame", 1)
    job.attributeSetString("job_file", "P:\\show\\shot_010.ma", True)

    message = job.message
    assert message.name == "shot_010 lighting"
    assert message.kind == jobs_pb2.JOB_KIND_JOB
    assert message.template_id == 37
    assert list(message.included_pools) == ["lighting", "gpu"]
    assert list(message.depend_ids) == [12, 14]
    assert message.depend_mode == jobs_pb2.DEPEND_MODE_SUCCESS
    assert message.depend_chunks is True and job.getDependChunks() is True
    assert message.logs_error_check == jobs_pb2.LOGS_ERROR_CHECK_SKIP_WARNINGS
    assert (message.start_frame, message.end_frame, message.by_frame) == (1.0, 100.0, 1.0)
    assert job.getIncludedPools() == "lighting,gpu"
    assert job.getDepends() == "12,14"
    assert job.attributeGetString("job_file") == "P:\\show\\shot_010.ma"
    assert job.attributeGetSubst("job_file") is True
    assert job.attributeGetFloat("end_frame") == 100.0
    assert job.getTemplateID() == 37 and job.getTemplateId() == 37


def test_getters_read_a_message_from_the_server() -> None:
    job = MClientAPI.MJob(jobs_pb2.Job(id=42, name="x", status=jobs_pb2.JOB_STATUS_COMPLETED))
    job.message.submit_time.FromSeconds(1_700_000_000)
    assert job.getJobId() == 42
    assert job.getStatus() == MClientAPI.MJob.kJobStatusCompleted
    assert job.getSubmitTime() == 1_700_000_000
    assert job.getEndTime() == 0


def test_backup_restore_flags_combine_with_or_as_the_seed_example_does() -> None:
    flags = (
        MClientAPI.MJob.kJobsBackupRestoreActionDuplicateEntry
        | MClientAPI.MJob.kJobsBackupRestoreActionRestoreParents
    )
    assert flags == (
        jobs_pb2.RESTORE_ACTION_FLAG_DUPLICATE_ENTRY | jobs_pb2.RESTORE_ACTION_FLAG_RESTORE_PARENTS
    )


def test_unknown_property_is_an_attribute_error_and_string_ref_holds_text() -> None:
    job = MClientAPI.MJob()
    try:
        job.getColour()
    except AttributeError as exc:
        assert "Colour" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
    ref = MClientAPI.MStringRef()
    ref.setString("INSERT ...")
    assert ref.getString() == "INSERT ..."
    err = MClientAPI.MUSTERERR()
    assert err.getErrorCode() == 0


def test_set_depends_takes_an_int_id_as_well_as_a_string() -> None:
    job = MClientAPI.MJob()
    job.setDepends(12)
    assert (list(job.message.depend_ids), job.getDepends()) == ([12], "12")
    job.setDepends("12, 14")
    assert list(job.message.depend_ids) == [12, 14]
    job.setDepends([15, "16"])
    assert job.getDepends() == "15,16"


def test_template_constants_import_in_a_plain_submitter_process(tmp_path: Path) -> None:
    """Outside any Muster context: a submitter's own Python, no MUSTER_* set."""
    script = tmp_path / "submitter.py"
    script.write_text(
        "from MTemplateAPI import kTemplateMultiframe, kProcessDirect\n"
        "import MClientAPI, MTemplateAPI, muster\n"
        "job = MClientAPI.MJob()\n"
        "job.setPacketType(kTemplateMultiframe)\n"
        "assert MClientAPI.kTemplateMultiframe == MTemplateAPI.kTemplateMultiframe\n"
        "print(muster.runningContext(), job.getPacketType(), kProcessDirect)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["console", str(jobs_pb2.PACKET_TYPE_FRAMES), "0"]
