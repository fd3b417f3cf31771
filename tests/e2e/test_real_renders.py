"""Real renders end to end: Debian's Blender renders a tiny Cycles scene made
at test time, 4 frames in 2 chunks on two local agents; then a job of the
ffmpeg template, depending on the render, turns the frames into a movie.
The programs are installed when missing (tests/debian.py); the tests are
skipped, with the reason, only where that cannot be done."""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from muster_services.core.database import Database
from tests.debian import ensure_packages, find_command
from tests.e2e.test_render import completed_history, eventually, farm

BLENDER_TEMPLATE_ID = 1001  # the built-in Blender template
FFMPEG_TEMPLATE_ID = 48  # Muster's id of the ffmpeg template (built-in library)
WIDTH, HEIGHT, FRAMES = 64, 48, 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Installing Blender and ffmpeg, when missing, may take minutes (apt-get's own
# limit is tests.debian.INSTALL_TIMEOUT_SECONDS); once installed, each test
# takes seconds.
pytestmark = pytest.mark.timeout(1200)

# Run inside Blender: the factory scene (a cube, a light, a camera) set to
# Cycles on the CPU, few samples, a tiny PNG image, frames 1-4, saved to
# the path given after "--".
_MAKE_SCENE = f"""
import sys, bpy
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.use_adaptive_sampling = False
scene.cycles.use_denoising = False
scene.render.resolution_x = {WIDTH}
scene.render.resolution_y = {HEIGHT}
scene.render.resolution_percentage = 100
scene.frame_start = 1
scene.frame_end = {FRAMES}
scene.render.image_settings.file_format = "PNG"
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[sys.argv.index("--") + 1])
"""


@pytest.fixture
def programs() -> None:
    """Blender and ffmpeg (with ffprobe), from Debian's packages."""
    reason = ensure_packages(["blender", "ffmpeg"], commands=["blender", "ffmpeg", "ffprobe"])
    if reason:
        pytest.skip(reason)


def make_scene(folder: Path) -> Path:
    scene = folder / "scene.blend"
    blender = find_command("blender") or "blender"
    subprocess.run(
        [blender, "-b", "--factory-startup", "--python-expr", _MAKE_SCENE, "--", str(scene)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert scene.is_file()
    return scene


def blender_job(scene: Path, frames: Path) -> jobs_pb2.Job:
    """Frames 1-4 of the scene, two per chunk, as PNG files frames/shot_####.png."""
    return jobs_pb2.Job(
        name="real blender",
        owner="alice",
        parent_id=-1,
        template_id=BLENDER_TEMPLATE_ID,
        start_frame=1,
        end_frame=FRAMES,
        by_frame=1,
        packet_size=2,
        max_chunk_requeues=0,
        attributes=[
            jobs_pb2.JobAttribute(name="job_file", string_value=str(scene)),
            jobs_pb2.JobAttribute(name="output_pattern", string_value=f"{frames}/shot_####"),
            # Placed after `-b file -o pattern`, before the frame range and -a.
            # One thread each: the two chunks run side by side.
            jobs_pb2.JobAttribute(name="blender_arguments", string_value="-E CYCLES -F PNG -t 1"),
        ],
    )


def ffmpeg_job(frames: Path, movie: Path, depends_on: int) -> jobs_pb2.Job:
    """The frames 1-4 as an H.264 movie, once the render job is done."""
    return jobs_pb2.Job(
        name="real ffmpeg",
        owner="alice",
        parent_id=-1,
        template_id=FFMPEG_TEMPLATE_ID,
        start_frame=1,
        end_frame=FRAMES,
        by_frame=1,
        packet_size=FRAMES,
        max_chunk_requeues=0,
        depend_ids=[depends_on],
        attributes=[
            jobs_pb2.JobAttribute(name="input_pattern", string_value=f"{frames}/shot_%04d.png"),
            jobs_pb2.JobAttribute(name="output_file", string_value=str(movie)),
            jobs_pb2.JobAttribute(name="frame_rate", double_value=24.0),
        ],
    )


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG file's header (signature, then IHDR)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    assert head[12:16] == b"IHDR", f"{path} has no IHDR chunk first"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def chunk_log(db: Database, job_id: int, chunk: int) -> list[str]:
    """The stored log lines of a chunk's runs (no RPC reads chunk logs yet)."""
    with db.transaction() as session:
        query = text(
            "SELECT l.line FROM chunk_run_logs l JOIN chunk_runs r ON r.id = l.run_id"
            " WHERE r.job_id = :job AND r.chunk_number = :chunk ORDER BY r.id, l.seq"
        )
        return list(session.execute(query, {"job": job_id, "chunk": chunk}).scalars())


def check_render(
    jobs: jobs_pb2_grpc.JobsServiceStub, db: Database, job_id: int, frames: Path
) -> list[jobs_pb2.ChunkRun]:
    """The render job completed: each chunk ran once and succeeded, its log
    has Blender's Saved: line for each of its frames, the 4 images are PNG
    files of the scene's size. Returns the job's chunk history."""
    runs = completed_history(jobs, job_id, "the Blender job completed")
    assert [(r.chunk_id, r.run_number, r.start_frame, r.end_frame) for r in runs] == [
        (1, 1, 1.0, 2.0),
        (2, 1, 3.0, 4.0),
    ], runs
    assert [(r.outcome, r.exit_code) for r in runs] == [
        (common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED, 0)
    ] * 2, [r.message for r in runs]

    images = sorted(frames.glob("*"))
    assert [p.name for p in images] == [f"shot_{f:04d}.png" for f in range(1, FRAMES + 1)]
    assert [png_size(p) for p in images] == [(WIDTH, HEIGHT)] * FRAMES

    for chunk, chunk_frames in ((1, (1, 2)), (2, (3, 4))):
        saved = [f"Saved: '{frames}/shot_{f:04d}.png'" for f in chunk_frames]

        def logged(chunk: int = chunk, saved: list[str] = saved) -> bool:
            lines = chunk_log(db, job_id, chunk)
            return all(any(s in line for line in lines) for s in saved)

        eventually(logged, timeout=15, what=f"{saved} in chunk {chunk}'s log")
    return runs


def submit(jobs: jobs_pb2_grpc.JobsServiceStub, job: jobs_pb2.Job) -> int:
    return int(jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job)).job_id)


@pytest.mark.usefixtures("programs")
def test_blender_renders_a_cycles_scene_in_two_chunks_on_the_local_agents(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
    db: Database,
) -> None:
    frames = farm(nodes, start_agent, shared_tmp, "e2e-blender-a", "e2e-blender-b")
    scene = make_scene(shared_tmp)

    job_id = submit(jobs, blender_job(scene, frames))

    check_render(jobs, db, job_id, frames)


@pytest.mark.usefixtures("programs")
def test_an_ffmpeg_job_depending_on_the_render_makes_a_movie_of_its_frames(
    jobs: jobs_pb2_grpc.JobsServiceStub,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
    shared_tmp: Path,
    db: Database,
) -> None:
    frames = farm(nodes, start_agent, shared_tmp, "e2e-blender-a", "e2e-blender-b")
    scene = make_scene(shared_tmp)
    movie = shared_tmp / "shot.mp4"

    # Both submitted at once: only the dependency holds the movie back.
    render_id = submit(jobs, blender_job(scene, frames))
    movie_id = submit(jobs, ffmpeg_job(frames, movie, depends_on=render_id))

    render_runs = check_render(jobs, db, render_id, frames)
    movie_runs = completed_history(jobs, movie_id, "the ffmpeg job completed")
    assert [(r.chunk_id, r.run_number, r.outcome) for r in movie_runs] == [
        (1, 1, common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED)
    ], [r.message for r in movie_runs]
    rendered = max(r.end_time.ToNanoseconds() for r in render_runs)
    assert movie_runs[0].start_time.ToNanoseconds() >= rendered

    probe = subprocess.run(
        [
            find_command("ffprobe") or "ffprobe",
            *("-v", "error", "-count_frames", "-select_streams", "v:0"),
            *("-show_entries", "stream=codec_name,nb_read_frames,width,height"),
            *("-of", "json", str(movie)),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    (stream,) = json.loads(probe.stdout)["streams"]
    assert stream == {
        "codec_name": "h264",
        "width": WIDTH,
        "height": HEIGHT,
        "nb_read_frames": str(FRAMES),
    }
