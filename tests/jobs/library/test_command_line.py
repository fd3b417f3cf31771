"""Template 1000 "Command line" builds what muster_services/jobs/templates.py built:
the token cases of its tests (tests/jobs/test_domain.py), run through the
MTemplateAPI file and the engine."""

from __future__ import annotations

from typing import Any

import pytest

from muster_gateway.mtemplate import expandArguments, expandTokens, formatFrame, framePath
from muster_gateway.template_engine import BuiltCommand, CallbackFailed, build_command, preferences
from tests.jobs.library.support import chunk, job, template


def built(
    attributes: dict[str, Any],
    frames: tuple[float, float, float],
    platform: str = "linux",
    environment: dict[str, str] | None = None,
    job_id: int = 2,
    chunk_id: int = 5,
    slice_index: int = 0,
) -> BuiltCommand:
    t = template(1000)
    return build_command(
        t,
        platform,
        job(attributes, job_id),
        chunk(*frames, chunk_id=chunk_id, slice_index=slice_index),
        preferences(t, platform),
        0,
        environment or {},
    )


def test_tokens_padding_and_quoted_arguments() -> None:
    command = built(
        {
            "executable": "/bin/render",
            "arguments": "--in 'my scene.ma' -f {start:4}-{end:4} --step {step}",
            "working_folder": "/work/{job}",
        },
        (9, 12, 0.5),
        "windows",
        environment={"SHOT": "{chunk}"},
    )
    assert command.executable == "/bin/render"
    assert command.arguments == ("--in", "my scene.ma", "-f", "0009-0012", "--step", "0.5")
    assert command.working_directory == "/work/2"
    assert command.environment == {"SHOT": "5"}


def test_attribute_tokens_frame_slice_and_braces() -> None:
    command = built(
        {
            "executable": "/bin/echo",
            "arguments": "{frame} {slice} {@scene} {{literal}} {*extra} {@missing}end",
            "scene": "/s/shot.{start:3}.ma",
            "extra": "-a 'b c' {end}",
            "count": 3,
            "ratio": 12.0,
            "flag": True,
        },
        (4, 6, 1),
        slice_index=2,
    )
    # Inside the arguments, {*name} is not a whole template argument: it
    # expands like {@name}, in one word (as muster_services/jobs/templates.py did).
    assert command.arguments == (
        "4", "2", "/s/shot.004.ma", "{literal}", "-a 'b c' 6", "end",
    )  # fmt: skip
    assert command.working_directory == ""


def test_typed_attributes_print_as_before() -> None:
    command = built(
        {"executable": "/bin/echo", "arguments": "{@count} {@ratio} {@flag} {@half}"}
        | {"count": 3, "ratio": 12.0, "flag": True, "half": 2.5},
        (1, 1, 1),
    )
    assert command.arguments == ("3", "12", "1", "2.5")


def test_a_missing_arguments_attribute_gives_no_argument_and_the_shell_script_case() -> None:
    assert built({"executable": "/bin/true"}, (1, 1, 1)).arguments == ()
    script = "for f in $(seq {start} {end}); do echo frame $f; done"
    command = built({"executable": "/bin/sh", "arguments": f"-c '{script}'"}, (3, 5, 1))
    assert command.arguments == ("-c", "for f in $(seq 3 5); do echo frame $f; done")


def test_an_unknown_token_fails_the_callback_naming_it() -> None:
    with pytest.raises(CallbackFailed, match=r"unknown token \{nope\}"):
        built({"executable": "/bin/echo", "arguments": "{nope}"}, (1, 1, 1))
    with pytest.raises(CallbackFailed, match="no executable"):
        built({"arguments": "x"}, (1, 1, 1))


def test_the_helpers() -> None:
    j, c = job({"a": "x{end}"}, 9), chunk(1, 2, chunk_id=4)
    assert expandTokens("{job}-{chunk}-{@a}", j, c) == "9-4-x2"
    assert expandTokens("{job}/{@b}", job({"b": "y"}, 9), None) == "9/y"
    with pytest.raises(ValueError, match="needs a chunk"):
        expandTokens("{@a}", j, None)
    assert expandArguments(["{*a}", "{*none}", "{start:2}"], j, c) == ["x2", "01"]
    assert (formatFrame(12.0), formatFrame(12.0, 4), formatFrame(1.5)) == ("12", "0012", "1.5")
    assert framePath("/a.####.ass", 7) == "/a.0007.ass"
    assert framePath("/a.%04d.rib", 7.0) == "/a.0007.rib"
    assert framePath("/a.rs", 7) == "/a.rs"
