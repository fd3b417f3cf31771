"""Each built-in template against a fake renderer run as a real process: the
renderer's documented log lines (renderers.md) for progress, a warning, an
error, a licence failure and a crash, and its exit codes, read back through
the template's progress patterns (ProgressParser), `judge` and
`check_running_log`. The template finds the fake through its client
configuration item (the application path), as on a render node."""

# Argument lists are written in lines of words joined with +.
# ruff: noqa: RUF005

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from muster_gateway.template_engine import (
    LOGS_CHECK_ALL,
    LOGS_CHECK_SKIP_WARNINGS,
    ProgressParser,
    Verdict,
    build_command,
    check_running_log,
    frames_in_chunk,
    judge,
    preferences,
)
from tests.jobs.library.support import chunk, job, template

FAKE = Path(__file__).resolve().parent / "fake_renderer.py"


@dataclass
class Renderer:
    """What a renderer prints (renderers.md) and how a template reads it."""

    template_id: int
    attributes: dict[str, Any]
    frames: tuple[float, float, float]
    progress: list[str]
    expected_progress: list[float]
    warning: str | None = None
    error: str | None = None
    licence: str | None = None
    # A crash line the template aborts on at once; the process then dies of SIGSEGV.
    crash: str | None = None
    # Documented exit codes -> words of the failure message.
    exit_codes: dict[int, str] = field(default_factory=lambda: {1: "exit code 1"})
    platform: str = "linux"
    end: str = "\n"


MAYA = {"job_file": "/p/s.mb"}
FRA = "Fra:{} Mem:12.00M (Peak 12.00M) | Time:00:00.54 | Mem:0.00M, Peak:0.00M | Scene | "

RENDERERS = [
    Renderer(
        1000,
        {"arguments": "-x {start}"},
        (1, 1, 1),
        ["starting", "PROGRESS: 10%", "Progress: 55%", "PROGRESS: 100%"],
        [10, 55, 100],
        warning="[ PARSER WARNING ] disk almost full",
        error="[ PARSER ERROR ] cannot read the input",
        crash="[ PARSER FATAL ERROR ] out of memory",
    ),
    Renderer(
        1001,
        {"job_file": "/p/s.blend", "output_pattern": "//f_####"},
        (1, 2, 1),
        [
            "Blender 3.4.1 (hash 55485cb379f7 built 2023-01-31)",
            FRA.format(1) + "Sample 8/16",
            FRA.format(1) + "Sample 16/16",
            "Saved: '/r/f_0001.png'",
            " Time: 00:01.20 (Saving: 00:00.01)",
            "",
            "00:02.100  render | " + FRA.format(2) + "Sample 8/16",
            "00:02.300  render | Saved: '/r/f_0002.png'",
            "00:02.301  render |  Time: 00:01.21 (Saving: 00:00.01)",
        ],
        [25, 50, 75, 100],
        warning="Warning: unable to open font '/fonts/x.ttf'",
        error="Error: Cannot read file '/p/s.blend': No such file or directory",
        crash="Writing: /tmp/s.crash.txt",
    ),
    Renderer(
        1,
        MAYA,
        (1, 2, 1),
        ["Starting Rendering /r/img.0001.iff", "Finished Rendering /r/img.0001.iff"]
        + ["Finished Rendering /r/img.0002.iff"],
        [50, 100],
        warning="// Warning: file: /p/s.mb line 12: Unrecognized node type 'xyz'",
        error="// Error: Cannot load scene /p/s.mb",
        licence='FLEXlm error: -15,570. System Error: 115 "Operation now in progress"',
        crash="Fatal Error. Attempting to save in /usr/tmp/s.0001.mb",
        exit_codes={206: "could not parse its command line", 1: "exit code 1"},
    ),
    Renderer(
        46,
        MAYA,
        (1, 2, 1),
        ["00:00:01  500MB  |    10% done - 23 rays/pixel", "00:00:02  500MB  |    50% done"]
        + ["00:00:03  500MB  |  render done", "00:00:04  500MB  |    10% done"]
        + ["00:00:05  500MB  |  render done"],
        [5, 25, 50, 55, 100],
        warning="00:00:00  100MB  |  rendering with watermarks because of failed authorization",
        error="// Error: Camera persp2 does not exist",
        licence="Maya: License was not obtained",
        crash="00:00:02  500MB  | signal caught: SIGSEGV -- Invalid memory reference",
    ),
    Renderer(
        55,
        MAYA,
        (1, 1, 1),
        ["[Redshift] Block 12/48 (3,1) rendered by GPU 0 in 2ms"]
        + ["[Redshift] Block 48/48 (7,4) rendered by GPU 0 in 2ms", "Frame rendering done"],
        [25, 100],
        warning="// Warning: Redshift: texture cache almost full",
        error="// Error: Scene was not loaded properly, please check the scene name",
        licence="License error: (RLM) All licenses in use (-22)",
        crash="Rendering was internally aborted",
    ),
    Renderer(
        37,
        MAYA,
        (1, 1, 1),
        ["V-Ray:  25 %", "V-Ray:  80 %", "V-Ray: Total frame time 10.0 s"],
        [25, 80, 100],
        warning="// Warning: V-Ray: no lights in the scene",
        error="// Error: This scene does not have any renderable cameras",
        licence="error: Could not obtain a license",
        crash="V-Ray error: unhandled exception",
    ),
    Renderer(
        29,
        MAYA,
        (1, 1, 1),
        ["R90000  30%", "R90000  100%", "Finished Rendering /r/a.0001.exr"],
        [30, 100],
        warning="// Warning: RenderMan: texture not found",
        error="rman Error: shader pxrX not found",
        licence="R10013 {SEVERE} License checkout failed",
        crash="// Error: rman Fatal: out of memory",
    ),
    Renderer(
        1002,
        {"job_file": "/s/shot.####.ass"},
        (5, 5, 1),
        ["00:00:01 100MB | 10% done - 4 rays/pixel", "00:00:02 100MB | 90% done"]
        + ["00:00:03 100MB | render done"],
        [10, 90, 100],
        warning="00:00:00 100MB | rendering with watermarks because of failed authorization",
        error='00:00:00 100MB ERROR |  [ass] can\'t open "/s/shot.0005.ass"',
        licence="00:00:00 100MB | [rlm] error initializing license system",
        crash="00:00:02 100MB | signal caught: SIGABRT -- Abort",
    ),
    Renderer(
        1003,
        {"job_file": "/s/a.vrscene"},
        (1, 2, 1),
        ["Starting frame 1", "[2024/Jan/1|10:00:00] Rendering image...:  40.00% [ 0h  0m  1.2s]"]
        + ["[2024/Jan/1|10:00:02] Frame took 2.3 s", "Starting frame 2"]
        + ["[2024/Jan/1|10:00:03] Rendering image...:  40.00% [ 0h  0m  1.2s]"]
        + ["[2024/Jan/1|10:00:05] Frame took 2.2 s"],
        [20, 50, 70, 100],
        warning="[2024/Jan/1|10:00:00] warning: Unable to load texture /t/a.exr",
        error="[2024/Jan/1|10:00:00] error: Cannot load plugin library",
        licence="[2024/Jan/1|10:00:00] error: Could not obtain a license",
    ),
    Renderer(
        1004,
        {"job_file": "/s/a.####.rs"},
        (5, 5, 1),
        ["Rendering frame 5...", "[Redshift] Block 24/48 (3,1) rendered by GPU 0 in 2ms"]
        + ["[Redshift] Block 48/48 (7,4) rendered by GPU 0 in 2ms", "Frame rendering done"],
        [50, 100],
        error="Redshift cannot operate with less than 128MB of free VRAM",
        licence="License error: (RLM) All licenses in use (-22)",
        crash="Error an illegal memory access was encountered",
    ),
    Renderer(
        1005,
        {"job_file": "/s/a.####.rib"},
        (5, 5, 1),
        ["R90000  10%", "R90000  60%", "R90000 100%"],
        [10, 60, 100],
        warning="R56008 {WARNING} texture /t/x.tex missing",
        error='R10002 {ERROR} Unable to find shader "PxrX"',
        licence="R10013 {SEVERE} License checkout failed",
    ),
    Renderer(
        1006,
        {"job_file": "/s/comp.nk"},
        (1, 4, 1),
        ["Frame 1 (1 of 4)", "Frame 2 (2 of 4)", "Frame 3 (3 of 4)", "Frame 4 (4 of 4)"],
        [25, 50, 75, 100],
        warning="Warning: Read1: frame 5 missing, using frame 4",
        error="ERROR: Read1: /s/a.exr: No such file or directory",
        licence="Invalid Nuke_r license key.",
        crash="Segmentation fault",
    ),
    Renderer(
        1007,
        {"job_file": "/s/a.hip", "rop_node": "/out/mantra1"},
        (1, 2, 1),
        ["ALF_PROGRESS 50%", "Render Time: 0:01", "ALF_PROGRESS 50%", "Render Time: 0:01"],
        [25, 50, 75, 100],
        warning="mantra: WARNING: Unable to load texture '/t/a.rat'",
        error="Error: Unknown option: -z",
        licence="No licenses could be found to run this application.",
    ),
    Renderer(
        1008,
        {"job_file": "/s/a.usd"},
        (1, 1, 1),
        ["ALF_PROGRESS 20%", "ALF_PROGRESS 100%"],
        [20, 100],
        warning="karma: WARNING: Unable to load texture '/t/a.exr'",
        error="USD ERROR: Failed to open layer @/s/a.usd@",
        licence="No licenses could be found to run this application.",
    ),
    Renderer(
        1009,
        {"job_file": "/s/a.katana", "render_node": "Render1"},
        (1, 2, 1),
        ["00:00:01 100MB | 50% done", "[kat] Frame 1 completed"]
        + ["00:00:02 100MB | 50% done", "[kat] Frame 2 completed"],
        [25, 50, 75, 100],
        warning="00:00:00 100MB WARNING |  [ass] unused parameter",
        error='00:00:00 100MB ERROR |  [ass] can\'t open "/s/a.ass"',
    ),
    Renderer(
        1010,
        {"job_file": "/s/a.c4d"},
        (1, 1, 1),
        ["Rendering frame 1 at <Mon Jan 1 10:00:00 2024>", "Progress: 10%", "Progress: 70%"]
        + ["Rendering successful: 1.2 sec."],
        [10, 70],
        error="Error loading document: /s/a.c4d",
        licence="Invalid License from License Server",
        crash="RuntimeError: Error encountered when initializing Cinema4D",
    ),
    Renderer(
        1011,
        {"job_file": "/s/a.aep", "comp_name": "Comp 1"},
        (1, 2, 1),
        ["PROGRESS:  Start: 1", "PROGRESS:  0;00;00;00 (1): 0 Seconds"]
        + ["PROGRESS:  0;00;00;01 (2): 1 Seconds", "PROGRESS:  Finished composition “Comp 1”."],
        [50, 100],
        warning="WARNING:After Effects warning: font Arial Bold is missing",
        error="aerender Error: No comp was found with the given name.",
        licence="Unable to obtain a license for After Effects",
        crash="unexpected failure during application startup",
        platform="windows",
    ),
    Renderer(
        1012,
        {"job_file": "C:\\s\\a.max"},
        (1, 2, 1),
        ["progr: 50.0% rendered", "Frame 1 completed", "progr: 50.0% rendered"]
        + ["Frame 2 completed"],
        [25, 50, 75, 100],
        warning="WARNING : missing map C:\\t\\a.png",
        error="Error occured while rendering job.",
        platform="windows",
    ),
    Renderer(
        1013,
        {"job_file": "C:\\p\\Game.uproject", "level_sequence": "/Game/S"}
        | {"movie_pipeline_config": "/Game/P"},
        (1, 100, 1),
        ["LogMovieRenderPipeline: Progress: 25%", "LogMovieRenderPipeline: Progress: 100%"],
        [25, 100],
        warning="LogMovieRenderPipeline: Warning: no camera cut in the sequence",
        error="LogPython: Error: Traceback (most recent call last):",
        crash="LogD3D12RHI: Error: DXGI_ERROR_DEVICE_REMOVED",
        platform="windows",
    ),
    Renderer(
        48,
        {"input_pattern": "/r/shot_%04d.png", "output_file": "/r/shot.mp4"},
        (1, 48, 1),
        ["Input #0, image2, from '/r/shot_%04d.png':", "frame=   24 fps=0.0 q=28.0 size=  0kB"]
        + ["frame=   48 fps=0.0 q=-1.0 Lsize=  120kB time=00:00:01.92 bitrate= 512.0kbits/s"],
        [50, 100],
        error="/r/shot_%04d.png: No such file or directory",
        end="\r",
    ),
]
BY_ID = {r.template_id: r for r in RENDERERS}


@pytest.fixture(scope="module")
def executable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake renderer as an executable file (a client's application path)."""
    path = tmp_path_factory.mktemp("renderers") / "renderer"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE}" "$@"\n')
    path.chmod(0o755)
    return path


@dataclass
class Run:
    arguments: list[str]
    log: str
    exit_code: int
    progress: list[float]
    renderer: Renderer

    def judge(self, logs_check: int = LOGS_CHECK_ALL) -> Verdict:
        r = self.renderer
        return judge(
            template(r.template_id),
            r.platform,
            job(r.attributes),
            chunk(*r.frames),
            {},
            self.log,
            self.exit_code,
            logs_check,
        )

    def running_verdict(self) -> Verdict | None:
        """What check_running_log says of the lines as they arrive."""
        r = self.renderer
        for line in self.log.splitlines():
            verdict = check_running_log(
                template(r.template_id), job(r.attributes), chunk(*r.frames), {}, line
            )
            if verdict is not None:
                return verdict
        return None


def run(renderer: Renderer, executable: Path, tmp: Path, lines: list[str], **plan: Any) -> Run:
    t = template(renderer.template_id)
    attributes = dict(renderer.attributes)
    prefs: dict[str, Any] = {}
    path_items = [
        i.getName()
        for i in t.platform(renderer.platform).getClientConfigurationItems()
        if i.getName().endswith("_PATH") and i.getName() != "HRENDER_PATH"
    ]
    if path_items:
        prefs = preferences(t, renderer.platform, {path_items[0]: str(executable)})
    else:  # the command line template: the job names its program
        attributes["executable"] = str(executable)
    built = build_command(
        t, renderer.platform, job(attributes), chunk(*renderer.frames), prefs, 0, {"SHOT": "a"}
    )
    assert built.executable == str(executable)
    record = tmp / "argv.json"
    environment = {
        **os.environ,
        **built.environment,
        "FAKE_RENDERER_PLAN": json.dumps({"lines": lines, "end": renderer.end, **plan}),
        "FAKE_RENDERER_ARGV": str(record),
    }
    finished = subprocess.run(
        [built.executable, *built.arguments],
        env=environment,
        cwd=built.working_directory or tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=20,
        check=False,
    )
    log = finished.stdout.decode()
    parser = ProgressParser(
        t.getProgressRegexes(), t.getFrameDoneRegexes(), frames_in_chunk(*renderer.frames)
    )
    values = [v for line in re.split(r"\r\n|\r|\n", log) if (v := parser.feed(line)) is not None]
    return Run(json.loads(record.read_text()), log, finished.returncode, values, renderer)


def ids(kind: str) -> list[Any]:
    return [
        pytest.param(r, id=f"{r.template_id}")
        for r in RENDERERS
        if kind == "progress" or getattr(r, kind) is not None
    ]


@pytest.mark.parametrize("renderer", ids("progress"))
def test_a_good_render_shows_rising_progress_and_succeeds(
    renderer: Renderer, executable: Path, tmp_path: Path
) -> None:
    result = run(renderer, executable, tmp_path, renderer.progress)
    assert result.arguments, "the fake got the built arguments"
    assert result.progress == pytest.approx(renderer.expected_progress)
    assert result.exit_code == 0
    assert result.judge() == Verdict("succeeded", "exit code 0")
    assert result.running_verdict() is None


@pytest.mark.parametrize("renderer", ids("warning"))
def test_a_warning_completes_the_chunk_with_warnings(
    renderer: Renderer, executable: Path, tmp_path: Path
) -> None:
    assert renderer.warning is not None
    result = run(renderer, executable, tmp_path, [*renderer.progress, renderer.warning])
    verdict = result.judge()
    assert verdict.outcome == "warnings"
    assert renderer.warning.strip() in verdict.message
    assert result.judge(LOGS_CHECK_SKIP_WARNINGS).outcome == "succeeded"
    assert result.running_verdict() is None


@pytest.mark.parametrize("renderer", ids("error"))
def test_an_error_in_the_log_fails_the_chunk_even_on_exit_code_0(
    renderer: Renderer, executable: Path, tmp_path: Path
) -> None:
    assert renderer.error is not None
    result = run(renderer, executable, tmp_path, [renderer.progress[0], renderer.error])
    assert result.exit_code == 0
    verdict = result.judge()
    assert verdict.outcome == "failed"
    assert verdict.message.startswith("error in log: ")
    assert renderer.error.strip()[:60] in verdict.message


@pytest.mark.parametrize("renderer", ids("licence"))
def test_a_licence_failure_fails_the_chunk_and_aborts_the_render(
    renderer: Renderer, executable: Path, tmp_path: Path
) -> None:
    assert renderer.licence is not None
    result = run(renderer, executable, tmp_path, [renderer.licence, *renderer.progress])
    verdict = result.judge()
    assert verdict.outcome == "failed"
    assert renderer.licence.strip() in verdict.message
    running = result.running_verdict()
    assert running is not None and running.abort
    assert renderer.licence.strip() in running.message


@pytest.mark.parametrize("renderer", RENDERERS, ids=[str(r.template_id) for r in RENDERERS])
def test_a_crash_fails_the_chunk(renderer: Renderer, executable: Path, tmp_path: Path) -> None:
    lines = [renderer.progress[0]] + ([renderer.crash] if renderer.crash else [])
    result = run(renderer, executable, tmp_path, lines, crash=True)
    assert result.exit_code < 0  # killed by SIGSEGV
    verdict = result.judge()
    assert verdict.outcome == "failed"
    assert f"exit code {result.exit_code}" in verdict.message
    running = result.running_verdict()
    if renderer.crash:
        # A documented crash string aborts the render at once.
        assert running is not None and running.abort
        assert renderer.crash.strip() in running.message
    else:
        assert running is None


@pytest.mark.parametrize("renderer", RENDERERS, ids=[str(r.template_id) for r in RENDERERS])
def test_documented_exit_codes_fail_the_chunk(
    renderer: Renderer, executable: Path, tmp_path: Path
) -> None:
    for code, words in renderer.exit_codes.items():
        result = run(renderer, executable, tmp_path, renderer.progress, exit=code)
        assert result.exit_code == code
        verdict = result.judge()
        assert verdict.outcome == "failed"
        assert words in verdict.message, verdict


def test_nuke_with_continue_on_error_turns_log_errors_into_warnings(
    executable: Path, tmp_path: Path
) -> None:
    nuke = BY_ID[1006]
    keep_going = Renderer(**{**nuke.__dict__, "attributes": {**nuke.attributes}})
    keep_going.attributes["continue_on_error"] = True
    assert nuke.error is not None and nuke.licence is not None
    result = run(keep_going, executable, tmp_path, [*nuke.progress, nuke.error])
    assert "--cont" in result.arguments
    assert result.judge().outcome == "warnings"
    licence = run(keep_going, executable, tmp_path, [nuke.licence])
    assert licence.judge().outcome == "failed"


def test_after_effects_without_any_progress_line_rendered_nothing(
    executable: Path, tmp_path: Path
) -> None:
    result = run(BY_ID[1011], executable, tmp_path, ["aerender version 24.0x55"])
    assert result.judge() == Verdict(
        "failed", "error in log: aerender printed no PROGRESS line: nothing was rendered"
    )


def test_the_fake_gets_the_built_command_and_environment(executable: Path, tmp_path: Path) -> None:
    blender = BY_ID[1001]
    result = run(blender, executable, tmp_path, ["hello"])
    assert result.arguments == ["-b", "/p/s.blend", "-o", "//f_####"] + [
        "-s", "1", "-e", "2", "-j", "1", "-a",
    ]  # fmt: skip
    command = BY_ID[1000]
    echoed = run(command, executable, tmp_path, [])
    assert echoed.arguments == ["-x", "1"]
