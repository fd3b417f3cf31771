"""The built-in library loads (each file alone and as a folder) and builds the
documented command line per chunk on every platform it enables."""

# Argument lists are written in lines of words joined with +.
# ruff: noqa: RUF005

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from muster_gateway import template_engine
from muster_gateway.template_engine import (
    LIBRARY_DIR,
    CallbackFailed,
    build_command,
    enabled_platforms,
    load_source,
    preferences,
)
from tests.jobs.library.support import catalogue, chunk, job, template

REPO = Path(__file__).resolve().parents[3]

# Every built-in id with its name (docs/template-library.md).
IDS = {
    1: "Maya Software",
    29: "Maya RenderMan",
    37: "Maya V-Ray",
    46: "Maya Arnold",
    48: "FFmpeg",
    55: "Maya Redshift",
    1000: "Command line",
    1001: "Blender",
    1002: "Arnold kick",
    1003: "V-Ray standalone",
    1004: "Redshift standalone",
    1005: "RenderMan prman",
    1006: "Nuke",
    1007: "Houdini ROP",
    1008: "Houdini husk",
    1009: "Katana",
    1010: "Cinema 4D",
    1011: "After Effects",
    1012: "3ds Max",
    1013: "Unreal Movie Render Queue",
}


def test_each_library_file_loads_alone() -> None:
    files = template_engine.template_files(LIBRARY_DIR)
    assert len(files) >= 15
    seen: list[int] = []
    for path in files:
        installed = load_source(path.read_text(encoding="utf-8"), str(path))
        assert installed, path
        seen += [t.getID() for t in installed]
    assert sorted(seen) == sorted(IDS)


def test_the_library_folder_gives_every_id_with_unique_names_and_no_problem() -> None:
    loaded = catalogue()
    assert loaded.problems == {}
    assert {i: e.template.getName() for i, e in loaded.templates.items()} == IDS
    assert all(e.builtin for e in loaded.templates.values())
    for entry in loaded.templates.values():
        definition = template_engine.definition(entry.template)
        assert enabled_platforms(definition), entry.template
        assert {"onBuildCommandLine", "onCheckLog", "onCheckExitCode"} <= set(
            definition["node_callbacks"]
        )


def test_the_documentation_lists_every_template_and_item() -> None:
    text = (REPO / "docs" / "template-library.md").read_text(encoding="utf-8")
    for entry in catalogue().templates.values():
        t = entry.template
        assert f"| {t.getID()} |" in text or f"## {t.getID()} " in text, t
        for item in t.getSubmissionItems():
            assert f"`{item.getName()}`" in text, (t, item.getName())
        for section in t.platforms():
            for item in section.getClientConfigurationItems():
                assert f"`{item.getName()}`" in text, (t, item.getName())


# --- command lines -----------------------------------------------------------------------


@dataclass
class Command:
    template_id: int
    attributes: dict[str, Any]
    frames: tuple[float, float, float]
    arguments: list[str]
    # Platform -> arguments where they differ.
    per_platform: dict[str, list[str]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)


MAYA = {
    "job_file": "/p/s.mb",
    "job_project": "/p",
    "output_folder": "/r",
    "camera": "cam1",
    "render_layer": "lay",
    "MAYADIGITS": 4,
    "ADD_FLAGS": "-x 640",
}
MAYA_ARGUMENTS = ["-s", "1", "-e", "10", "-b", "2", "-pad", "4", "-cam", "cam1", "-rl", "lay"]
MAYA_ARGUMENTS += ["-proj", "/p", "-rd", "/r", "-x", "640"]
MAYA_ENV = {"MAYA_DISABLE_CIP": "1", "MAYA_DEBUG_ENABLE_CRASH_REPORTING": "0"}

COMMANDS = [
    Command(
        1001,
        {
            "job_file": "/p/shot.blend",
            "output_pattern": "//out/f_####",
            "blender_arguments": "--engine CYCLES",
        },
        (11, 20, 1),
        ["-b", "/p/shot.blend", "-o", "//out/f_####", "--engine", "CYCLES"]
        + ["-s", "11", "-e", "20", "-j", "1", "-a"],
    ),
    Command(
        1001,
        {"job_file": "/p/shot.blend"},
        (1, 9, 2),
        ["-b", "/p/shot.blend", "-s", "1", "-e", "9", "-j", "2", "-a"],
    ),
    Command(1, MAYA, (1, 10, 2), ["-r", "sw", *MAYA_ARGUMENTS, "/p/s.mb"], environment=MAYA_ENV),
    Command(46, MAYA, (1, 10, 2), ["-r", "arnold", *MAYA_ARGUMENTS, "-ai:lve", "2", "/p/s.mb"]),
    Command(
        55,
        MAYA,
        (1, 10, 2),
        ["-r", "redshift", *MAYA_ARGUMENTS, "/p/s.mb"],
        environment={**MAYA_ENV, "REDSHIFT_FORCEQUITONINTERNALERROR": "1"},
    ),
    Command(37, MAYA, (1, 10, 2), ["-r", "vray", *MAYA_ARGUMENTS, "/p/s.mb"]),
    Command(
        29,
        {"job_file": "/p/s.ma"},
        (1.5, 3, 0.5),
        ["-r", "renderman"] + ["-s", "1.5", "-e", "3", "-b", "0.5", "/p/s.ma"],
    ),
    Command(
        48,
        {
            "input_pattern": "/r/shot_%04d.png",
            "output_file": "/r/shot.mp4",
            "frame_rate": 24.0,
            "ffmpeg_arguments": "-c:v libx264 -pix_fmt yuv420p",
        },
        (1, 48, 1),
        ["-y", "-nostdin", "-framerate", "24", "-start_number", "1", "-i", "/r/shot_%04d.png"]
        + ["-frames:v", "48", "-c:v", "libx264", "-pix_fmt", "yuv420p", "/r/shot.mp4"],
    ),
    Command(
        48,
        {"input_pattern": "/r/s.%03d.jpg", "output_file": "/r/s.mov", "frame_rate": 23.976},
        (101, 110, 1),
        ["-y", "-nostdin", "-framerate", "23.976", "-start_number", "101", "-i", "/r/s.%03d.jpg"]
        + ["-frames:v", "10", "-c:v", "libx264", "-pix_fmt", "yuv420p", "/r/s.mov"],
    ),
    Command(
        1002,
        {"job_file": "/s/shot.####.ass", "output_file": "/r/shot.####.exr", "threads": 0},
        (7, 7, 1),
        ["-nstdin", "-dw", "-dp", "-i", "/s/shot.0007.ass", "-o", "/r/shot.0007.exr"]
        + ["-t", "0", "-v", "2", "-set", "options.abort_on_license_fail", "true"],
        per_platform={
            "windows": ["-nstdin", "-dw", "-dp", "-i", "/s/shot.0007.ass", "-o"]
            + ["/r/shot.0007.exr", "-t", "0", "-v", "2", "-set", "options.abort_on_license_fail"]
            + ["true", "-nocrashpopup"]
        },
    ),
    Command(
        1003,
        {"job_file": "/s/a.vrscene", "output_file": "/r/a.exr", "threads": 8},
        (1, 10, 1),
        ["-sceneFile=/s/a.vrscene", "-frames=1-10,1", "-imgFile=/r/a.exr", "-display=0"]
        + ["-autoClose=1", "-interactive=0", "-verboseLevel=3", "-showProgress=2"]
        + ["-progressUseCR=0", "-numThreads=8"],
    ),
    Command(
        1003,
        {"job_file": "/s/a.####.vrscene", "camera": "cam"},
        (3, 3, 1),
        ["-sceneFile=/s/a.0003.vrscene", "-display=0", "-autoClose=1", "-interactive=0"]
        + ["-verboseLevel=3", "-showProgress=2", "-progressUseCR=0", "-camera=cam"],
    ),
    Command(
        1004,
        {"job_file": "/s/a.####.rs", "output_folder": "/r", "redshift_gpus": "0, 1"},
        (12, 12, 1),
        ["/s/a.0012.rs", "-oip", "/r", "-gpu", "0", "-gpu", "1"],
        environment={"REDSHIFT_FORCEQUITONINTERNALERROR": "1"},
    ),
    Command(
        1005,
        {"job_file": "/s/a.%04d.rib", "threads": 8},
        (3, 3, 1),
        ["-Progress", "-t:8", "/s/a.0003.rib"],
        environment={"RMANTREE": "/opt/pixar/RenderManProServer-26.3"},
    ),
    Command(
        1006,
        {"job_file": "/s/comp.nk", "write_nodes": "Write1, Write2", "threads": 4},
        (1, 10, 2),
        ["-V", "2", "-F", "1-10x2", "-X", "Write1,Write2", "-m", "4", "-x", "/s/comp.nk"],
    ),
    Command(
        1006,
        {"job_file": "/s/comp.nk", "continue_on_error": True, "ADD_FLAGS": "-c 4096M"},
        (5, 8, 1),
        ["-V", "2", "-F", "5-8", "--cont", "-c", "4096M", "-x", "/s/comp.nk"],
    ),
    Command(
        1007,
        {"job_file": "/s/a.hip", "rop_node": "/out/karma1", "take": "t2", "output_file": "/r/$F4"},
        (1, 10, 1),
        ["/opt/hfs20.5/bin/hrender.py", "-e", "-f", "1", "10", "-i", "1", "-d", "/out/karma1"]
        + ["-t", "t2", "-o", "/r/$F4", "-v", "/s/a.hip"],
        per_platform={
            "windows": [
                "C:\\Program Files\\Side Effects Software\\Houdini 20.5.332\\bin\\hrender.py",
                "-e",
                "-f",
                "1",
                "10",
                "-i",
                "1",
                "-d",
                "/out/karma1",
                "-t",
                "t2",
                "-o",
                "/r/$F4",
                "-v",
                "/s/a.hip",
            ],
            "macos": [
                "/Applications/Houdini/Houdini20.5.332/Frameworks/Houdini.framework/Versions"
                "/Current/Resources/bin/hrender.py",
                "-e",
                "-f",
                "1",
                "10",
                "-i",
                "1",
                "-d",
                "/out/karma1",
                "-t",
                "t2",
                "-o",
                "/r/$F4",
                "-v",
                "/s/a.hip",
            ],
        },
    ),
    Command(
        1008,
        {"job_file": "/s/a.usd", "output_file": "/r/a.$F4.exr", "camera": "/cams/c"},
        (1, 10, 3),
        ["--frame", "1", "--frame-count", "4", "--frame-inc", "3", "-o", "/r/a.$F4.exr"]
        + ["-c", "/cams/c", "--verbose", "2a", "/s/a.usd"],
    ),
    Command(
        1009,
        {"job_file": "/s/a.katana", "render_node": "Render1"},
        (1, 10, 1),
        ["--batch", "--katana-file=/s/a.katana", "--render-node=Render1", "-t", "1-10"],
    ),
    Command(
        1009,
        {"job_file": "/s/a.katana", "render_node": "Render1"},
        (1, 5, 2),
        ["--batch", "--katana-file=/s/a.katana", "--render-node=Render1", "-t", "1,3,5"],
    ),
    Command(
        1010,
        {"job_file": "/s/a.c4d", "take": "Main", "output_file": "/r/a", "threads": 0},
        (1, 10, 1),
        ["-nogui", "-render", "/s/a.c4d", "-frame", "1", "10", "1", "-take", "Main"]
        + ["-oimage", "/r/a"],
    ),
    Command(
        1011,
        {"job_file": "/s/a.aep", "comp_name": "Comp 1", "output_file": "/r/a_[####].exr"},
        (1, 10, 1),
        ["-project", "/s/a.aep", "-comp", "Comp 1", "-s", "1", "-e", "10", "-i", "1"]
        + ["-output", "/r/a_[####].exr", "-v", "ERRORS_AND_PROGRESS", "-close"]
        + ["DO_NOT_SAVE_CHANGES", "-sound", "OFF"],
    ),
    Command(
        1012,
        {"job_file": "C:\\s\\a.max", "camera": "Cam01", "ADD_FLAGS": '-preset:"C:\\p\\x.rps"'},
        (1, 10, 1),
        ["C:\\s\\a.max", "-start:1", "-end:10", "-nthFrame:1", "-v:5", "-continueOnError"]
        + ["-showRFW:0", "-cam:Cam01", '-preset:"C:\\p\\x.rps"'],
    ),
    Command(
        1013,
        {
            "job_file": "C:\\p\\Game.uproject",
            "unreal_map": "/Game/Maps/Main",
            "level_sequence": "/Game/Seq/Shot1",
            "movie_pipeline_config": "/Game/Presets/High",
        },
        (1, 100, 1),
        ["C:\\p\\Game.uproject", "/Game/Maps/Main", "-game", "-LevelSequence=/Game/Seq/Shot1"]
        + ["-MoviePipelineConfig=/Game/Presets/High", "-windowed", "-log", "-stdout"]
        + ["-allowstdoutlogverbosity", "-unattended"],
    ),
]


@pytest.mark.parametrize(
    "case", COMMANDS, ids=[f"{c.template_id}-{n}" for n, c in enumerate(COMMANDS)]
)
def test_the_command_line_of_a_chunk_on_every_enabled_platform(case: Command) -> None:
    t = template(case.template_id)
    platforms = [s.platform for s in t.platforms() if s.isPlatformEnabled()]
    assert platforms
    for platform in platforms:
        prefs = preferences(t, platform)
        (path_item,) = [
            i
            for i in t.platform(platform).getClientConfigurationItems()
            if i.getName().endswith("_PATH") and i.getName() != "HRENDER_PATH"
        ]
        built = build_command(
            t, platform, job(case.attributes), chunk(*case.frames), prefs, 0, {"JOB_VAR": "x"}
        )
        assert built.executable == path_item.getDefault() != ""
        assert list(built.arguments) == case.per_platform.get(platform, case.arguments), platform
        assert built.environment["JOB_VAR"] == "x"
        if platform == "linux" or platforms == [platform]:
            assert case.environment.items() <= built.environment.items()


def test_an_administrator_path_replaces_the_default_and_an_empty_one_is_an_error() -> None:
    t = template(1001)
    prefs = preferences(t, "linux", {"BLENDER_PATH": "/opt/blender-4.2/blender"})
    built = build_command(t, "linux", job({"job_file": "/a.blend"}), chunk(1, 1), prefs, 0, {})
    assert built.executable == "/opt/blender-4.2/blender"
    with pytest.raises(CallbackFailed, match="BLENDER_PATH"):
        build_command(
            t, "linux", job({"job_file": "/a.blend"}), chunk(1, 1), {"BLENDER_PATH": ""}, 0, {}
        )


@pytest.mark.parametrize("template_id", [1002, 1004, 1005])
def test_a_per_frame_renderer_refuses_a_chunk_of_several_frames(template_id: int) -> None:
    t = template(template_id)
    assert t.getDefaultPacketSize() == 1
    with pytest.raises(CallbackFailed, match="packet size 1"):
        build_command(
            t,
            "linux",
            job({"job_file": "/s/a.####.x"}),
            chunk(1, 3),
            preferences(t, "linux"),
            0,
            {},
        )


def test_single_host_templates() -> None:
    from muster_gateway.mtemplate import kTemplateSingleHost

    assert template(48).getTemplateLogic() == kTemplateSingleHost
    assert template(1013).getTemplateLogic() == kTemplateSingleHost
    assert [s.platform for s in template(1012).platforms() if s.isPlatformEnabled()] == ["windows"]
    assert not template(1011).platformLinux.isPlatformEnabled()
