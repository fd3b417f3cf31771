"""The template catalogue: studio template files loaded into the database,
shown by ListTemplates/GetTemplate, reloaded when they change, and the
checks a submission gets against a template's submission items."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from muster_gateway import template_engine
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument
from muster_services.jobs import store
from muster_services.jobs.domain import Attribute, JobSpec
from muster_services.jobs.messages import template_message
from muster_services.jobs.service import JobsService

STUDIO_ID = 120


def studio_template(
    template_id: int = STUDIO_ID, name: str = "Studio echo", marker: str = "v1", extra: str = ""
) -> str:
    return textwrap.dedent(
        f"""
        import MTemplateAPI


        class Echo(MTemplateAPI.MTemplate):
            def __init__(self):
                MTemplateAPI.MTemplate.__init__(self)
                self.setID({template_id})
                self.setName({name!r})
                self.setDescription("prints its frames ({marker})")
                self.setTemplateLogic(MTemplateAPI.kTemplateMultiframe)
                self.setDefaultPriority(40)
                self.setDefaultPools("comp, lighting")
                self.setLicensesGroup("echo")
                self.setMaximumLicenses(2)
                self.addSubmissionItem(MTemplateAPI.MTemplateItemFile(
                    "SCENEFILE", "Scene", "the scene", "", 0, 1, 1, "*.ma"))
                self.addSubmissionItem(MTemplateAPI.MTemplateItemInteger(
                    "DIGITS", "Digits", "frame padding", 4, 0, 0, 1))
                self.addSubmissionItem(MTemplateAPI.MTemplateItemString(
                    "ADD_FLAGS", "Flags", "more flags", "-v", 0, 0, 1))
                self.addMapping("SCENEFILE", "job_file")
                self.platformLinux.setPlatformEnabled(1)
                self.platformLinux.addClientConfigurationItem(
                    MTemplateAPI.MTemplateItemFolder("ECHO_PATH", "echo", "", "/bin/echo", 0, 0, 1))
            {extra}
            def onGetApplicationPath(self, job, clientTemplatePreferences, pathOut):
                pathOut.setString(clientTemplatePreferences["ECHO_PATH"])
                return MTemplateAPI.MTemplateError()


        MTemplateAPI.MManager.getUniqueClass().installPyTemplate(Echo())
        """
    )


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    library, studio = tmp_path / "library", tmp_path / "studio"
    library.mkdir()
    studio.mkdir()
    return library, studio


def service_on(db: Database, library: Path | None, studio: Path) -> JobsService:
    jobs = JobsService(db, templates_dir=studio)
    jobs.templates.library = library
    return jobs


def touch_later(path: Path, text: str) -> None:
    """Rewrite a file so its stamp surely changes (mtime granularity)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_a_studio_file_is_loaded_with_everything_it_configured(
    db: Database, folders: tuple[Path, Path]
) -> None:
    library, studio = folders
    (studio / "echo.py").write_text(studio_template())
    jobs = service_on(db, library, studio)
    result = jobs.templates.seed_templates()
    assert STUDIO_ID in result.saved
    shown = template_message(jobs.templates.get_template(STUDIO_ID))
    assert shown.name == "Studio echo"
    assert shown.file_path == str(studio / "echo.py")
    assert shown.version == template_engine.version_of((studio / "echo.py").read_text())
    assert not shown.builtin and not shown.load_error
    assert shown.default_priority == 40
    assert list(shown.default_pools) == ["comp", "lighting"]
    assert (shown.licenses_group, shown.max_licenses) == ("echo", 2)
    items = {i.name: i for i in shown.submission_items}
    assert items["SCENEFILE"].required and items["SCENEFILE"].kind == "file"
    assert items["SCENEFILE"].file_filter == "*.ma"
    assert items["DIGITS"].default_value == "4" and not items["DIGITS"].required
    assert dict(shown.mappings) == {"SCENEFILE": "job_file"}
    linux = next(p for p in shown.platforms if p.enabled)
    assert [i.name for i in linux.client_items] == ["ECHO_PATH"]
    assert linux.client_items[0].default_value == "/bin/echo"
    assert "onGetApplicationPath" in shown.node_callbacks
    # Only the Linux section is enabled: a Windows listing leaves it out.
    listed = jobs.templates.list_templates("windows", 100, "").items
    assert STUDIO_ID not in [t.id for t in listed]
    assert STUDIO_ID in [t.id for t in jobs.templates.list_templates("linux", 100, "").items]


def test_a_broken_file_is_reported_and_the_others_keep_working(
    db: Database, folders: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    library, studio = folders
    (studio / "echo.py").write_text(studio_template())
    (studio / "other.py").write_text(studio_template(121, "Other"))
    jobs = service_on(db, library, studio)
    jobs.templates.seed_templates()
    good_version = jobs.templates.get_template(STUDIO_ID).version

    touch_later(studio / "echo.py", "import MTemplateAPI\nraise RuntimeError('half-saved file')\n")
    (studio / "never.py").write_text("import MTemplateAPI\nMTemplateAPI.MTemplateItemSlider\n")
    with caplog.at_level("WARNING"):
        result = jobs.templates.sync()
    assert result.broken == (STUDIO_ID,)
    broken = jobs.templates.get_template(STUDIO_ID)
    # It keeps running with its last good version, with the error shown.
    assert broken.enabled and broken.version == good_version
    assert "half-saved file" in broken.load_error and "Traceback" in broken.load_error
    problems = dict(jobs.templates.file_problems())
    assert "half-saved file" in problems[str(studio / "echo.py")]
    # An unknown MTemplateAPI name fails naming it.
    assert "MTemplateItemSlider" in problems[str(studio / "never.py")]
    assert jobs.templates.get_template(121).load_error == ""
    assert "failed to load" in caplog.text

    touch_later(studio / "echo.py", studio_template(marker="v2"))
    assert jobs.templates.sync().saved == (STUDIO_ID,)
    fixed = jobs.templates.get_template(STUDIO_ID)
    assert fixed.load_error == "" and fixed.version != good_version


def test_two_studio_files_with_one_id_are_both_refused_naming_each_other(
    db: Database, folders: tuple[Path, Path]
) -> None:
    library, studio = folders
    (studio / "a.py").write_text(studio_template(name="A"))
    (studio / "b.py").write_text(studio_template(name="B"))
    jobs = service_on(db, library, studio)
    jobs.templates.seed_templates()
    with db.transaction() as session:
        assert store.get_template(session, STUDIO_ID) is None
    problems = dict(jobs.templates.file_problems())
    for mine, other in (("a.py", "b.py"), ("b.py", "a.py")):
        assert str(studio / other) in problems[str(studio / mine)]
        assert f"template id {STUDIO_ID}" in problems[str(studio / mine)]


def test_a_studio_file_replaces_a_library_template_of_its_id(
    db: Database, folders: tuple[Path, Path]
) -> None:
    library, studio = folders
    (library / "echo.py").write_text(studio_template(name="Library echo"))
    jobs = service_on(db, library, studio)
    jobs.templates.seed_templates()
    assert jobs.templates.get_template(STUDIO_ID).builtin
    (studio / "mine.py").write_text(studio_template(name="Studio echo"))
    jobs.templates.sync()
    replaced = jobs.templates.get_template(STUDIO_ID)
    assert (replaced.name, replaced.builtin) == ("Studio echo", False)
    assert replaced.file_path == str(studio / "mine.py")


def test_every_version_stays_fetchable_and_a_removed_file_disables_its_template(
    db: Database, folders: tuple[Path, Path]
) -> None:
    library, studio = folders
    path = studio / "echo.py"
    path.write_text(studio_template(marker="v1"))
    jobs = service_on(db, library, studio)
    jobs.templates.seed_templates()
    first = jobs.templates.get_template(STUDIO_ID).version
    touch_later(path, studio_template(marker="v2"))
    jobs.templates.sync()
    second = jobs.templates.get_template(STUDIO_ID).version
    assert first != second
    assert "(v1)" in jobs.templates.source(STUDIO_ID, first)[0]
    assert "(v2)" in jobs.templates.source(STUDIO_ID, second)[0]
    # Nothing changed: nothing written.
    assert not jobs.templates.sync().changed
    path.unlink()
    assert jobs.templates.sync().removed == (STUDIO_ID,)
    gone = jobs.templates.get_template(STUDIO_ID)
    assert not gone.enabled and "no longer exists" in gone.load_error


def _spec(**fields: object) -> JobSpec:
    values: dict[str, object] = {
        "name": "shot",
        "owner": "alice",
        "template_id": STUDIO_ID,
        "start_frame": 1,
        "end_frame": 4,
        "packet_size": 2,
    }
    values.update(fields)
    return JobSpec(**values)  # type: ignore[arg-type]


def test_a_submission_is_checked_against_the_items_and_gets_their_defaults(
    db: Database, folders: tuple[Path, Path]
) -> None:
    library, studio = folders
    (studio / "echo.py").write_text(studio_template())
    jobs = service_on(db, library, studio)
    jobs.templates.seed_templates()
    with pytest.raises(InvalidArgument, match=r"item SCENEFILE \(attribute job_file\) is required"):
        jobs.queue.submit_job(_spec(), "")
    with pytest.raises(InvalidArgument, match="DIGITS is a whole number"):
        jobs.queue.submit_job(
            _spec(
                attributes=(
                    Attribute("job_file", "string", "/x.ma", True),
                    Attribute("DIGITS", "float", 2.5),
                )
            ),
            "",
        )
    with pytest.raises(InvalidArgument, match="ADD_FLAGS is text"):
        jobs.queue.submit_job(
            _spec(
                attributes=(
                    Attribute("job_file", "string", "/x.ma", True),
                    Attribute("ADD_FLAGS", "int", 3),
                )
            ),
            "",
        )
    with db.transaction() as session:
        assert store.template_ids(session) >= {STUDIO_ID}
    created = jobs.queue.submit_job(
        _spec(
            attributes=(
                Attribute("job_file", "string", "/x.ma", True),
                Attribute("DIGITS", "float", 3.0),
            )
        ),
        "",
    )
    assert created.attributes["ADD_FLAGS"]["value"] == "-v"
    assert created.attributes["DIGITS"]["value"] == 3.0
    assert created.chunks_total == 2


def test_an_unknown_template_id_is_invalid_whatever_else_the_job_sets(
    db: Database, folders: tuple[Path, Path]
) -> None:
    library, studio = folders
    jobs = service_on(db, library, studio)
    jobs.templates.seed_templates()
    for packet_type in (None, "frames", "single"):
        with pytest.raises(InvalidArgument, match="unknown template 9999"):
            jobs.queue.submit_job(_spec(template_id=9999, packet_type=packet_type), "")


def test_grpc_answers_invalid_argument_for_unknown_templates_on_submit_and_edit(
    stub: jobs_pb2_grpc.JobsServiceStub,
) -> None:
    job = jobs_pb2.Job(
        name="shot",
        owner="alice",
        parent_id=-1,
        template_id=4242,
        start_frame=1,
        end_frame=2,
        by_frame=1,
        packet_size=1,
        packet_type=jobs_pb2.PACKET_TYPE_SINGLE,
    )
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitJob(jobs_pb2.SubmitJobRequest(job=job))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4242" in (refused.value.details() or "")
    fine = jobs_pb2.Job()
    fine.CopyFrom(job)
    fine.template_id = 1000
    fine.attributes.add(name="executable", string_value="/bin/true")
    good = stub.SubmitJob(jobs_pb2.SubmitJobRequest(job=fine)).job
    with pytest.raises(grpc.RpcError) as edit:
        stub.UpdateJob(
            jobs_pb2.UpdateJobRequest(
                job=jobs_pb2.Job(id=good.id, template_id=4242, packet_type=job.packet_type),
                update_mask=field_mask_pb2.FieldMask(paths=["template_id", "packet_type"]),
            )
        )
    assert edit.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4242" in (edit.value.details() or "")
