"""The soak's invariant checker: pure functions over what the soak left behind.

Inputs are the per-frame files the chunks wrote (each render process appends
"start <pid> <time>" before it renders a frame, "alive <pid> <time>" every
half second while it renders, and "end <pid> <time>" after),
the rows of `chunk_runs`, the submissions the feeder saw accepted and the jobs
the database holds. Nothing here touches a process or a database, so the
checker is tested on hand-made files and rows (tests/soak/test_checker.py).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Mark:
    """One line of a frame file."""

    kind: str  # "start", "alive" or "end"
    pid: int
    at: float  # the render process's clock, seconds since the epoch


def parse_frame_file(text: str) -> list[Mark]:
    """The marks of a frame file, in file order (appends are ordered: the
    order of the lines is the order of the writes). Torn or foreign lines are
    skipped: a process killed mid-write leaves at most a partial last line."""
    marks = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("start", "alive", "end"):
            continue
        try:
            marks.append(Mark(parts[0], int(parts[1]), float(parts[2])))
        except ValueError:
            continue
    return marks


def process_starts(marks: list[Mark]) -> int:
    return sum(1 for m in marks if m.kind == "start")


def finished(marks: list[Mark]) -> bool:
    """Some process rendered the frame to its end."""
    return any(m.kind == "end" for m in marks)


def two_alive_at_once(marks: list[Mark]) -> bool:
    """Whether two processes rendered the frame at overlapping times: a
    process A started, then a process B started, and A wrote a line (alive
    or end) afterwards (so A was alive while B ran). A process killed between
    two of its lines died at a moment the file cannot tell, within half a
    second of its last line; it counts as dead at that line (the benefit of
    the doubt: an orphan that lived on writes more lines and is caught)."""
    started: dict[int, int] = {}  # pid -> index of its start line
    for index, mark in enumerate(marks):
        if mark.kind == "start":
            started[mark.pid] = index
        elif mark.pid in started and any(
            other.kind == "start" and other.pid != mark.pid
            for other in marks[started[mark.pid] + 1 : index]
        ):
            return True
    return False


@dataclass(frozen=True)
class Run:
    """A row of chunk_runs (ended_at None: still running)."""

    job_id: int
    chunk_number: int
    run_number: int
    start_frame: int
    end_frame: int
    started_at: datetime
    ended_at: datetime | None
    outcome: str


def overlapping_runs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """Pairs of runs of one chunk whose recorded times overlap (the audit
    query of docs/render-loop.md: there must be none)."""
    found = []
    by_chunk: dict[tuple[int, int], list[Run]] = {}
    for run in runs:
        by_chunk.setdefault((run.job_id, run.chunk_number), []).append(run)
    for chunk_runs in by_chunk.values():
        ordered = sorted(chunk_runs, key=lambda r: (r.started_at, r.run_number))
        for first, second in itertools.pairwise(ordered):
            if first.ended_at is None or first.ended_at > second.started_at:
                found.append((first, second))
    return found


# Clock slack between the render process (`date`) and PostgreSQL's now() on
# one machine: a run starts (assignment) before its process and ends (result
# recorded) after it, so an honest process lies inside its run.
SLACK_SECONDS = 0.5


def processes(marks: list[Mark]) -> dict[int, tuple[float, float | None]]:
    """Each render process of a frame: (its start, its last line after the
    start (end, or the last alive of a process killed) or None)."""
    spans: dict[int, tuple[float, float | None]] = {}
    for mark in marks:
        if mark.kind == "start":
            spans[mark.pid] = (mark.at, None)
        elif mark.pid in spans:
            spans[mark.pid] = (spans[mark.pid][0], mark.at)
    return spans


def outside_runs(marks: list[Mark], runs: list[Run]) -> list[int]:
    """The processes of a frame that no recorded run of its chunk covers: a
    process must start after its run started and end before it ended (as
    recorded). One outside every run rendered when the history says nothing
    ran (an orphan outliving its LOST run, a stale assignment started late)."""
    found = []
    for pid, (start, end) in processes(marks).items():
        if not any(_covers(run, start, end) for run in runs):
            found.append(pid)
    return found


def _covers(run: Run, start: float, end: float | None) -> bool:
    begins = run.started_at.timestamp() - SLACK_SECONDS
    ends = None if run.ended_at is None else run.ended_at.timestamp() + SLACK_SECONDS
    if start < begins or (ends is not None and start > ends):
        return False
    return end is None or ends is None or end <= ends


@dataclass(frozen=True)
class Job:
    """A job the database holds, with the frames it renders."""

    job_id: int
    name: str
    status: str
    frames: list[int]


@dataclass
class Outcome:
    """The checker's figures; `failures` names every broken invariant."""

    faults: Counter[str] = field(default_factory=Counter)
    submissions_accepted: int = 0
    jobs_present: int = 0
    jobs_unaccepted: int = 0  # present, but the feeder never saw it accepted (gave up)
    chunks_rendered: int = 0
    frames: int = 0
    frames_never_finished: list[str] = field(default_factory=list)
    frames_two_alive: list[str] = field(default_factory=list)
    process_starts: int = 0
    runs_recorded: int = 0
    chunks_hiding_processes: list[str] = field(default_factory=list)
    processes_outside_runs: list[str] = field(default_factory=list)
    runs_without_process: int = 0
    overlapping_runs: int = 0
    jobs_stuck: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self) -> str:
        rows: list[tuple[str, str, str]] = []
        for kind, count in sorted(self.faults.items()):
            rows.append((f"faults injected: {kind}", str(count), ""))
        rows.append(("faults injected: total", str(sum(self.faults.values())), ""))
        rows += [
            ("chunks rendered", str(self.chunks_rendered), ""),
            ("frames", str(self.frames), ""),
            ("frames never finished", str(len(self.frames_never_finished)), "0"),
            ("frames with two processes alive at once", str(len(self.frames_two_alive)), "0"),
            ("process starts (start lines)", str(self.process_starts), ""),
            ("runs recorded (chunk_runs)", str(self.runs_recorded), ""),
            ("chunks with more processes than runs", str(len(self.chunks_hiding_processes)), "0"),
            ("runs without a process (lost before it started)", str(self.runs_without_process), ""),
            ("processes outside every recorded run", str(len(self.processes_outside_runs)), "0"),
            ("runs of one chunk overlapping in time", str(self.overlapping_runs), "0"),
            ("submissions accepted", str(self.submissions_accepted), ""),
            ("jobs present (of accepted submissions)", str(self.jobs_present), "= accepted"),
            ("jobs present, submission never acknowledged", str(self.jobs_unaccepted), ""),
            ("jobs stuck (not completed after the drain)", str(len(self.jobs_stuck)), "0"),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"{'invariant / figure':<{width}}  {'value':>8}  must be"]
        lines += [f"{what:<{width}}  {value:>8}  {want}" for what, value, want in rows]
        lines += [f"note: {note}" for note in self.notes]
        lines.append("RESULT: " + ("all invariants hold" if self.ok else "FAILED"))
        lines += [f"  - {failure}" for failure in self.failures]
        return "\n".join(lines)


def check(
    *,
    faults: Counter[str],
    accepted: dict[str, int],
    jobs: list[Job],
    frame_files: dict[tuple[str, int], str],
    runs: list[Run],
) -> Outcome:
    """Every invariant of the soak over its leftovers.

    `accepted`: submission name -> job id the feeder was answered with;
    `jobs`: the soak's jobs in the database (named by their submission);
    `frame_files`: (job name, frame) -> the text of that frame's file ('' when
    missing); `runs`: chunk_runs rows of those jobs. Chunks have one frame
    each (packet size 1), so a chunk's processes are the starts in one file."""
    out = Outcome(faults=Counter(faults))
    out.submissions_accepted = len(accepted)
    by_name: dict[str, list[Job]] = {}
    for job in jobs:
        by_name.setdefault(job.name, []).append(job)
    out.jobs_present = sum(1 for name in accepted if name in by_name)
    out.jobs_unaccepted = sum(1 for name in by_name if name not in accepted)
    for name, job_id in sorted(accepted.items()):
        held = by_name.get(name, [])
        if [j.job_id for j in held] != [job_id]:
            out.failures.append(
                f"submission {name} accepted as job {job_id}, jobs present: "
                f"{[j.job_id for j in held]}"
            )
    runs_of: dict[tuple[int, int], list[Run]] = {}
    for run in runs:
        runs_of.setdefault((run.job_id, run.start_frame), []).append(run)
    out.runs_recorded = len(runs)
    for job in jobs:
        if job.status != "completed":
            out.jobs_stuck.append(f"{job.name} (job {job.job_id}, {job.status})")
        for frame in job.frames:
            key = f"{job.name} frame {frame}"
            marks = parse_frame_file(frame_files.get((job.name, frame), ""))
            out.frames += 1
            starts = process_starts(marks)
            recorded = len(runs_of.get((job.job_id, frame), []))
            out.process_starts += starts
            if finished(marks):
                out.chunks_rendered += 1
            else:
                out.frames_never_finished.append(key)
            if two_alive_at_once(marks):
                out.frames_two_alive.append(key)
            if starts > recorded:
                out.chunks_hiding_processes.append(f"{key}: {starts} processes, {recorded} runs")
            out.runs_without_process += max(0, recorded - starts)
            for pid in outside_runs(marks, runs_of.get((job.job_id, frame), [])):
                out.processes_outside_runs.append(f"{key} pid {pid}")
    out.overlapping_runs = len(overlapping_runs(runs))
    _fail(out, out.frames_never_finished, "frames never finished")
    _fail(out, out.frames_two_alive, "frames with two processes alive at once")
    _fail(out, out.chunks_hiding_processes, "chunks with more processes than recorded runs")
    _fail(out, out.processes_outside_runs, "processes outside every recorded run of their chunk")
    _fail(out, out.jobs_stuck, "jobs stuck")
    if out.overlapping_runs:
        out.failures.append(f"{out.overlapping_runs} pairs of runs of one chunk overlap in time")
    return out


def _fail(out: Outcome, found: list[str], what: str) -> None:
    if found:
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        out.failures.append(f"{len(found)} {what}: {shown}")
