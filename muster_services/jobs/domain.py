"""Rules of the jobs domain: validation, chunk plans, status rollup, state rules.

Pure functions and plain dataclasses: no SQL, no gRPC, no I/O. Values use the
lower-case text of the tables' CHECK constraints (muster_services/jobs/tables.py);
muster_services/jobs/enums.py is the one place that maps them to protobuf numbers.
A job's status follows one rule whoever recomputes it: muster_services/jobs/rollup.py
applies `rollup` to a job's chunk counts after any change of its chunks; the
render loop moves a job's counters by `counter_moves` in between. The read
models of the use cases (JobRecord, ChunkRecord, ...) are at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from muster_gateway.expressions import ACTION_ATTRIBUTES, ExpressionError
from muster_gateway.expressions import check as check_expressions
from muster_services.core.errors import FailedPrecondition, InvalidArgument
from muster_services.jobs.tables import (
    CHUNK_STATUSES,
    DEPEND_MODES,
    JOB_KINDS,
    LOGS_ERROR_CHECKS,
    PACKET_TYPES,
)

ROOT = -1  # the API's queue root; NULL in jobs.parent_id

# --- limits (docs/jobs.md lists them) --------------------------------------------
MAX_NAME_LENGTH = 255
MAX_LABEL_LENGTH = 255  # owner, project, department, job group, pool names
MAX_NOTES_LENGTH = 65_536
MAX_PRIORITY = 65_535
MAX_INT32 = 2_147_483_647
MAX_POOLS = 256
MAX_DEPENDENCIES = 1_000
MAX_ATTRIBUTES = 256
MAX_ATTRIBUTE_NAME_LENGTH = 128
MAX_ATTRIBUTES_BYTES = 256 * 1024
MAX_ENVIRONMENT_ENTRIES = 256
MAX_ENVIRONMENT_BYTES = 64 * 1024
MAX_CHUNKS_PER_JOB = 1_000_000
MAX_FRAME = 1e9  # frame numbers beyond this are a typo, not a render
# Frame arithmetic is floating point: a range 1..2 by 0.1 must give 11 frames.
FRAME_EPSILON = 1e-9

ATTRIBUTE_TYPES = ("string", "float", "int", "bool")

# Chunk statuses grouped as the job counters count them (tables.py, jobs).
QUEUED_BUCKET = frozenset({"queued", "waiting_dependencies"})
RUNNING_BUCKET = frozenset({"assigned", "running"})
COMPLETED_BUCKET = frozenset({"completed", "completed_with_warnings", "skipped"})
FAILED_BUCKET = frozenset({"failed"})
LIVE_CHUNK_STATUSES = RUNNING_BUCKET
# Chunk statuses a restored or imported queue starts again as queued: no
# assignment survives, and the scheduler judges dependencies itself (it takes
# only queued chunks).
QUEUED_ON_LOAD = LIVE_CHUNK_STATUSES | {"waiting_dependencies"}

# Job statuses after which nothing more runs.
FINISHED_JOB_STATUSES = frozenset(
    {"completed", "completed_with_warnings", "completed_with_errors", "failed"}
)
SUCCESSFUL_JOB_STATUSES = frozenset({"completed", "completed_with_warnings"})

# Targets chunkSetStatus accepts.
SETTABLE_CHUNK_STATUSES = ("queued", "hold", "skipped", "completed")


# --- jobs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    """A typed template attribute (Muster's attributeSetString/Float/Int/Bool)."""

    name: str
    type: str  # one of ATTRIBUTE_TYPES
    value: str | float | int | bool
    substitute_paths: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "value": self.value, "substitute_paths": self.substitute_paths}


def attributes_from_json(raw: Mapping[str, Any]) -> list[Attribute]:
    """The attributes column back as Attribute values, in name order."""
    return [
        Attribute(name, item["type"], item["value"], bool(item.get("substitute_paths", False)))
        for name, item in sorted(raw.items())
    ]


@dataclass(frozen=True)
class JobSpec:
    """The writable properties of a job or folder, as submitted or edited."""

    name: str
    owner: str
    kind: str = "job"
    parent_id: int = ROOT
    priority: int = 0
    template_id: int | None = None
    start_frame: float = 1.0
    end_frame: float = 1.0
    by_frame: float = 1.0
    packet_size: int = 1
    packet_type: str | None = None  # None: the template's default
    included_pools: tuple[str, ...] = ()
    excluded_pools: tuple[str, ...] = ()
    depend_ids: tuple[int, ...] = ()
    depend_mode: str = "success"
    # Chunk dependencies: each chunk waits only for the chunks with the same
    # frames in the jobs of depend_ids (no effect without depend_ids).
    depend_chunks: bool = False
    max_nodes: int = 0
    project: str = ""
    department: str = ""
    job_group: str = ""
    notes: str = ""
    chunk_timeout_seconds: int = 0
    max_chunk_requeues: int = 0
    logs_error_check: str = "all"
    attributes: tuple[Attribute, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    paused: bool = False
    locked: bool = False


# Fields of JobSpec an edit may change (jobEdit); the rest of Job is output only.
EDITABLE_FIELDS = frozenset(
    {
        "parent_id",
        "name",
        "owner",
        "priority",
        "template_id",
        "start_frame",
        "end_frame",
        "by_frame",
        "packet_size",
        "packet_type",
        "included_pools",
        "excluded_pools",
        "depend_ids",
        "depend_mode",
        "depend_chunks",
        "max_nodes",
        "project",
        "department",
        "job_group",
        "notes",
        "chunk_timeout_seconds",
        "max_chunk_requeues",
        "logs_error_check",
        "attributes",
        "environment",
        "paused",
        "locked",
    }
)
# Changing one of these rebuilds the chunk list (or waits for the next reinit).
CHUNK_SHAPE_FIELDS = frozenset(
    {"start_frame", "end_frame", "by_frame", "packet_size", "packet_type"}
)
OUTPUT_ONLY_FIELDS = frozenset(
    {
        "id",
        "submit_time",
        "start_time",
        "end_time",
        "progress",
        "status",
        "requeue_count",
        "chunks_total",
        "chunks_queued",
        "chunks_running",
        "chunks_completed",
        "chunks_failed",
        "nodes_working",
        "update_time",
        "submitter",
        "etag",
    }
)


def _check_text(value: str, field_name: str, limit: int, required: bool = False) -> None:
    if required and not value.strip():
        raise InvalidArgument(f"{field_name}: must not be empty")
    if len(value) > limit:
        raise InvalidArgument(f"{field_name}: at most {limit} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidArgument(f"{field_name}: must not contain NUL characters")


def _check_range(value: float, field_name: str, low: float, high: float) -> None:
    if not (low <= value <= high):  # also refuses NaN
        raise InvalidArgument(f"{field_name}: must be within {low:g}..{high:g}, got {value}")


def check_chunk_id(chunk_id: int, field_name: str = "chunk_id") -> int:
    """A chunk id as a request gives it: chunk numbers are 32-bit
    (chunks.chunk_number), so a larger one names no chunk and is refused."""
    _check_range(chunk_id, field_name, -MAX_INT32 - 1, MAX_INT32)
    return chunk_id


def _check_one_of(value: str, field_name: str, allowed: Iterable[str]) -> None:
    if value not in allowed:
        raise InvalidArgument(f"{field_name}: unknown value {value!r}")


def validate_job(spec: JobSpec, prefix: str = "job") -> None:
    """Every field of a job or folder on its own (references are checked by the
    service, which can see the database). Raises InvalidArgument naming the field."""
    _check_one_of(spec.kind, f"{prefix}.kind", JOB_KINDS)
    _check_text(spec.name, f"{prefix}.name", MAX_NAME_LENGTH, required=True)
    _check_text(spec.owner, f"{prefix}.owner", MAX_LABEL_LENGTH, required=True)
    _check_range(spec.priority, f"{prefix}.priority", 0, MAX_PRIORITY)
    if spec.parent_id < ROOT or spec.parent_id == 0:
        raise InvalidArgument(f"{prefix}.parent_id: must be -1 (root) or a folder id")
    for name in ("project", "department", "job_group"):
        _check_text(getattr(spec, name), f"{prefix}.{name}", MAX_LABEL_LENGTH)
    _check_text(spec.notes, f"{prefix}.notes", MAX_NOTES_LENGTH)
    for name in ("included_pools", "excluded_pools"):
        pools = getattr(spec, name)
        if len(pools) > MAX_POOLS:
            raise InvalidArgument(f"{prefix}.{name}: at most {MAX_POOLS} pools, got {len(pools)}")
        for pool in pools:
            _check_text(pool, f"{prefix}.{name}", MAX_LABEL_LENGTH, required=True)
    _check_range(spec.max_nodes, f"{prefix}.max_nodes", 0, MAX_INT32)
    _check_range(spec.chunk_timeout_seconds, f"{prefix}.chunk_timeout_seconds", 0, MAX_INT32)
    _check_range(spec.max_chunk_requeues, f"{prefix}.max_chunk_requeues", 0, MAX_INT32)
    _check_one_of(spec.depend_mode, f"{prefix}.depend_mode", DEPEND_MODES)
    _check_one_of(spec.logs_error_check, f"{prefix}.logs_error_check", LOGS_ERROR_CHECKS)
    if len(spec.depend_ids) > MAX_DEPENDENCIES:
        raise InvalidArgument(
            f"{prefix}.depend_ids: at most {MAX_DEPENDENCIES} dependencies, "
            f"got {len(spec.depend_ids)}"
        )
    if any(d <= 0 for d in spec.depend_ids):
        raise InvalidArgument(f"{prefix}.depend_ids: ids must be positive")
    validate_attributes(spec.attributes, f"{prefix}.attributes")
    validate_environment(spec.environment, f"{prefix}.environment")
    if spec.kind == "folder":
        return
    if spec.template_id is None or spec.template_id <= 0:
        raise InvalidArgument(f"{prefix}.template_id: a job needs a template id")
    for name in ("start_frame", "end_frame"):
        value = getattr(spec, name)
        if not math.isfinite(value) or abs(value) > MAX_FRAME:
            raise InvalidArgument(f"{prefix}.{name}: must be a finite frame within ±{MAX_FRAME:g}")
    if not math.isfinite(spec.by_frame) or spec.by_frame <= 0:
        raise InvalidArgument(f"{prefix}.by_frame: must be > 0, got {spec.by_frame}")
    if spec.end_frame < spec.start_frame:
        raise InvalidArgument(
            f"{prefix}.end_frame: must be >= start_frame ({spec.start_frame:g}), "
            f"got {spec.end_frame:g}"
        )
    if spec.packet_size < 1 or spec.packet_size > MAX_CHUNKS_PER_JOB:
        raise InvalidArgument(
            f"{prefix}.packet_size: must be within 1..{MAX_CHUNKS_PER_JOB}, got {spec.packet_size}"
        )
    if spec.packet_type is not None:
        _check_one_of(spec.packet_type, f"{prefix}.packet_type", PACKET_TYPES)


def validate_attributes(attributes: Iterable[Attribute], field_name: str) -> None:
    items = list(attributes)
    if len(items) > MAX_ATTRIBUTES:
        raise InvalidArgument(
            f"{field_name}: at most {MAX_ATTRIBUTES} attributes, got {len(items)}"
        )
    seen: set[str] = set()
    for item in items:
        _check_text(item.name, f"{field_name}.name", MAX_ATTRIBUTE_NAME_LENGTH, required=True)
        if item.name in seen:
            raise InvalidArgument(f"{field_name}: attribute {item.name!r} appears twice")
        seen.add(item.name)
        _check_one_of(item.type, f"{field_name}[{item.name}].type", ATTRIBUTE_TYPES)
        if isinstance(item.value, float) and not math.isfinite(item.value):
            raise InvalidArgument(f"{field_name}[{item.name}]: float values must be finite")
        if isinstance(item.value, str) and "\x00" in item.value:
            raise InvalidArgument(f"{field_name}[{item.name}]: must not contain NUL characters")
        if item.name in ACTION_ATTRIBUTES and item.type != "string":
            raise InvalidArgument(
                f"{field_name}[{item.name}]: a custom action is a string (a command line),"
                f" got {item.type}"
            )
        if isinstance(item.value, str):
            _check_expressions(
                item.value, f"{field_name}[{item.name}]", action=item.name in ACTION_ATTRIBUTES
            )
    size = len(json.dumps({a.name: a.as_json() for a in items}))
    if size > MAX_ATTRIBUTES_BYTES:
        raise InvalidArgument(
            f"{field_name}: at most {MAX_ATTRIBUTES_BYTES} bytes in all, got {size}"
        )


# Submission item kinds (muster_gateway/mtemplate.py) -> the attribute type a job gives them.
_ITEM_ATTRIBUTE_TYPES = {
    "string": "string",
    "file": "string",
    "folder": "string",
    "combo": "string",
    "integer": "int",
    "double": "float",
    "bool": "bool",
}
# Job fields a template may map an item to; they are not attributes.
_JOB_FRAME_FIELDS = frozenset({"start_frame", "end_frame", "by_frame"})


def apply_submission_items(
    template_id: int, definition: Mapping[str, Any], attributes: Sequence[Attribute]
) -> tuple[Attribute, ...]:
    """A job's attributes checked against its template's submission items
    (each item is the attribute its mapping names, else its own name): a
    required item must be set and not empty, a set item must have the item's
    type, a missing one gets the item's default. Raises InvalidArgument naming
    the item. Attributes no item names are kept as they are."""
    if not definition:
        return tuple(attributes)
    mappings: Mapping[str, str] = definition.get("mappings", {})
    given = {a.name: a for a in attributes}
    added: list[Attribute] = []
    for item in definition.get("items", ()):
        if not item.get("enabled", True):
            continue
        name, kind = str(item["name"]), str(item.get("kind", "string"))
        target = mappings.get(name, name)
        if target in _JOB_FRAME_FIELDS:
            continue
        where = f"job.attributes[{target}]"
        what = f"template {template_id} item {name}" + (
            f" (attribute {target})" if target != name else ""
        )
        found = given.get(target)
        default = item.get("default")
        if found is None:
            if item.get("required") and default in (None, ""):
                raise InvalidArgument(f"{where}: {what} is required")
            if default is None or default == "":
                continue  # nothing to store: a missing attribute reads as ""
            added.append(
                Attribute(
                    target,
                    _ITEM_ATTRIBUTE_TYPES.get(kind, "string"),
                    default,
                    substitute_paths=kind in ("file", "folder"),
                )
            )
            continue
        _check_item_value(found, kind, item, where, what)
    return tuple(attributes) + tuple(added)


def _check_item_value(
    found: Attribute, kind: str, item: Mapping[str, Any], where: str, what: str
) -> None:
    value = found.value
    if kind in ("string", "file", "folder", "combo"):
        if found.type != "string":
            raise InvalidArgument(f"{where}: {what} is text, not {found.type}")
        if item.get("required") and not str(value).strip():
            raise InvalidArgument(f"{where}: {what} is required and empty")
        options = item.get("options") or ()
        if kind == "combo" and options and value not in options:
            raise InvalidArgument(f"{where}: {what} is one of {list(options)}, not {value!r}")
    elif kind == "integer":
        # Submitters send frame-like numbers as floats: a whole float is fine.
        if found.type not in ("int", "float") or (
            found.type == "float" and not float(value).is_integer()
        ):
            raise InvalidArgument(f"{where}: {what} is a whole number, not {value!r}")
    elif kind == "double":
        if found.type not in ("int", "float"):
            raise InvalidArgument(f"{where}: {what} is a number, not {found.type}")
    elif kind == "bool" and (found.type not in ("bool", "int") or value not in (0, 1)):
        raise InvalidArgument(f"{where}: {what} is yes or no (bool), not {value!r}")


def _check_expressions(text: str, where: str, *, action: bool = False) -> None:
    """Inline expressions (<%= %>, <% %>) that cannot run are refused at
    submission (compiled only, never run here)."""
    try:
        check_expressions(text, where, action=action)
    except ExpressionError as exc:
        raise InvalidArgument(str(exc)) from None


def validate_environment(environment: Mapping[str, str], field_name: str) -> None:
    if len(environment) > MAX_ENVIRONMENT_ENTRIES:
        raise InvalidArgument(
            f"{field_name}: at most {MAX_ENVIRONMENT_ENTRIES} variables, got {len(environment)}"
        )
    for name, value in environment.items():
        if not name or "=" in name or "\x00" in name or "\x00" in value:
            raise InvalidArgument(f"{field_name}: {name!r} is not a valid variable name")
        _check_expressions(value, f"{field_name}[{name}]")
    size = sum(len(k) + len(v) for k, v in environment.items())
    if size > MAX_ENVIRONMENT_BYTES:
        raise InvalidArgument(
            f"{field_name}: at most {MAX_ENVIRONMENT_BYTES} bytes in all, got {size}"
        )


# --- chunk plans ------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkPlan:
    """How a job splits into chunks. Chunk k (1-based) covers frame indexes
    f0 .. min(f0 + frames_per_chunk, frames) - 1 with f0 = ((k-1) // slices) *
    frames_per_chunk, and slice (k-1) % slices. The repository generates the
    same rows in SQL (generate_series), so a 100,000-chunk job is one INSERT."""

    count: int
    frames: int
    frames_per_chunk: int
    slices: int
    start_frame: float
    by_frame: float


def frame_count(start_frame: float, end_frame: float, by_frame: float) -> int:
    return math.floor((end_frame - start_frame) / by_frame + FRAME_EPSILON) + 1


def plan_chunks(spec: JobSpec, packet_type: str) -> ChunkPlan:
    """The chunk plan of a (validated) job, refused when it exceeds the limit."""
    frames = frame_count(spec.start_frame, spec.end_frame, spec.by_frame)
    if packet_type == "frames":
        per_chunk, slices = spec.packet_size, 1
        count = -(-frames // per_chunk)
    elif packet_type == "slices":
        per_chunk, slices = 1, spec.packet_size
        count = frames * slices
    else:
        # single: the whole range in one process. broadcast: one chunk here;
        # the scheduler runs it once per eligible node (docs/jobs.md).
        per_chunk, slices, count = frames, 1, 1
    if count > MAX_CHUNKS_PER_JOB:
        raise InvalidArgument(
            f"job.packet_size: the frame range and packet settings make {count:,} chunks; "
            f"at most {MAX_CHUNKS_PER_JOB:,} per job"
        )
    return ChunkPlan(count, frames, per_chunk, slices, spec.start_frame, spec.by_frame)


def chunk_frames(plan: ChunkPlan, number: int) -> tuple[float, float, int]:
    """(start frame, end frame, slice index) of chunk `number` (1-based)."""
    index = number - 1
    first = (index // plan.slices) * plan.frames_per_chunk
    last = min(first + plan.frames_per_chunk, plan.frames) - 1
    return (
        plan.start_frame + first * plan.by_frame,
        plan.start_frame + last * plan.by_frame,
        index % plan.slices,
    )


# --- status ------------------------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    """The job's chunk counters (jobs.chunks_*)."""

    total: int = 0
    queued: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0


def bucket_of(chunk_status: str) -> str | None:
    """The counter a chunk in this status counts in; None for held chunks."""
    if chunk_status in QUEUED_BUCKET:
        return "queued"
    if chunk_status in RUNNING_BUCKET:
        return "running"
    if chunk_status in COMPLETED_BUCKET:
        return "completed"
    if chunk_status in FAILED_BUCKET:
        return "failed"
    return None


def counters_of(status_counts: Mapping[str, int]) -> Counters:
    totals = {"queued": 0, "running": 0, "completed": 0, "failed": 0}
    for status, count in status_counts.items():
        bucket = bucket_of(status)
        if bucket is not None:
            totals[bucket] += count
    return Counters(total=sum(status_counts.values()), **totals)


@dataclass(frozen=True)
class Rollup:
    status: str
    progress: float
    counters: Counters


def _done_job_statuses(depend_mode: str) -> frozenset[str]:
    return SUCCESSFUL_JOB_STATUSES if depend_mode == "success" else FINISHED_JOB_STATUSES


def dependencies_met(depend_mode: str, dependency_statuses: Iterable[str]) -> bool:
    """Whether jobs with these statuses release a job waiting in `depend_mode`."""
    done = _done_job_statuses(depend_mode)
    return all(status in done for status in dependency_statuses)


def unmet_dependencies(depend_mode: str, dependency_statuses: Mapping[int, str]) -> list[int]:
    """The ids of the dependency jobs (id -> status) that still hold back a
    job waiting in `depend_mode`, in id order."""
    done = _done_job_statuses(depend_mode)
    return sorted(job_id for job_id, status in dependency_statuses.items() if status not in done)


def done_chunk_statuses(depend_mode: str) -> frozenset[str]:
    """Chunk statuses of a dependency job that release the chunks with the same
    frames of a job with chunk dependencies: what counts as completed for a
    job (completed, with warnings, skipped) in 'success' mode; also failed in
    'completion' mode. Held, queued and live chunks always hold back."""
    return COMPLETED_BUCKET if depend_mode == "success" else COMPLETED_BUCKET | FAILED_BUCKET


def rollup(
    status_counts: Mapping[str, int], *, dependencies_met: bool = True, aborted: bool = False
) -> Rollup:
    """A job's status and progress from the number of its chunks in each status.

    - aborted (a template aborted the render): failed, until reinit;
    - every chunk finished (completed, with warnings, skipped or failed):
      completed_with_errors if any failed, completed_with_warnings if any
      warned, completed otherwise;
    - a chunk is assigned/running, or some finished and others remain
      (queued or held): running;
    - nothing started: waiting_dependencies while dependencies are unmet,
      queued otherwise.
    Progress is the share of finished chunks, 0-100.
    """
    unknown = set(status_counts) - set(CHUNK_STATUSES)
    if unknown:
        raise ValueError(f"unknown chunk statuses {sorted(unknown)}")
    counters = counters_of(status_counts)
    finished = counters.completed + counters.failed
    progress = 100.0 * finished / counters.total if counters.total else 0.0
    if aborted:
        status = "failed"
    elif counters.total and finished == counters.total:
        if counters.failed:
            status = "completed_with_errors"
        elif status_counts.get("completed_with_warnings", 0):
            status = "completed_with_warnings"
        else:
            status = "completed"
    elif counters.running or finished:
        status = "running"
    elif not dependencies_met:
        status = "waiting_dependencies"
    else:
        status = "queued"
    return Rollup(status, progress, counters)


# --- the render loop: run ends, counter moves, eligibility ---------------------------


@dataclass(frozen=True)
class RequeueRules:
    """The configuration's requeue rules. Kept between calls only while the
    configuration row is unchanged (muster_services/jobs/runs.py, _KeptRules): a
    systemSetConfiguration applies from the next batch of results."""

    # Requeues of a chunk whose job sets no maximum.
    max_requeues: int
    # A lost node's chunk goes back to the queue (else it fails at once).
    requeue_lost: bool


def next_chunk_status(
    outcome: str,
    kill_follow_up: str,
    status_after_kill: str | None,
    requeue_count: int,
    max_requeues: int,
    requeue_lost: bool = True,
) -> str:
    """The status a chunk takes when its run ends this way (pure rule).

    - success: completed (with warnings);
    - a kill the dispatcher asked for: the status chunkSetStatus asked for,
      else failed for "kill and go on", back to the queue for restart/pause;
    - failure, timeout, lost node, or a kill nobody asked for: back to the
      queue while the chunk has requeues left, failed after that (a lost
      node's chunk fails at once when requeue on disconnection is off).
    """
    if outcome == "succeeded":
        return "completed"
    if outcome == "succeeded_with_warnings":
        return "completed_with_warnings"
    if status_after_kill:
        return status_after_kill
    if outcome == "killed" and kill_follow_up:
        return "failed" if kill_follow_up == "continue" else "queued"
    if outcome == "lost" and not requeue_lost:
        return "failed"  # the configuration says: no requeue on disconnection
    return "queued" if requeue_count < max_requeues else "failed"


@dataclass(frozen=True)
class CounterMove:
    """How a job's counters (jobs.chunks_*, requeue_count) move when some of its
    chunks change status: deltas to add."""

    queued: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    # Chunks sent back from a node to the queue (jobs.requeue_count).
    requeued: int = 0
    # Chunks that went to a status no counter counts (hold): the counters
    # alone no longer tell the job's status, the full rollup does.
    held: int = 0
    # Chunks left the queue for a node: the job is running (status, start time).
    started: bool = False


def counter_moves(transitions: Iterable[tuple[str, str]]) -> CounterMove:
    """The counters' move for chunks changing status (old, new), one pair per
    chunk: each leaves its old status's counter and joins its new one's
    (bucket_of); a chunk back in the queue from a node counts as a requeue."""
    deltas = {"queued": 0, "running": 0, "completed": 0, "failed": 0}
    requeued = held = 0
    started = False
    for (old, new), count in Counter(transitions).items():
        before, after = bucket_of(old), bucket_of(new)
        if before == after:
            continue
        if before is not None:
            deltas[before] -= count
        if after is None:
            held += count
        else:
            deltas[after] += count
        if before == "running" and new == "queued":
            requeued += count
        if before == "queued" and after == "running":
            started = True
    return CounterMove(**deltas, requeued=requeued, held=held, started=started)


def needs_rollup(move: CounterMove, queued_left: int, running_left: int) -> bool:
    """Whether a job whose counters just moved needs the full rollup (status,
    job.completed): when nothing is left to render, or a chunk went on hold;
    not on every chunk of a big job."""
    return bool(move.held) or queued_left + running_left == 0


@dataclass
class FreeNode:
    """An idle node the scheduler may give a chunk (pools in lower case)."""

    id: int
    name: str
    host_name: str
    pools: set[str]
    # "windows", "linux" or "macos"; '' when the node has not said.
    platform: str = ""


@dataclass
class CandidateJob:
    """A job with queued chunks, as the scheduler weighs it."""

    id: int
    template_id: int | None
    included_pools: list[str]
    excluded_pools: list[str]
    max_nodes: int
    working: int
    depend_mode: str
    depend_chunks: bool
    started: bool
    # The jobs it depends on: id -> status.
    dependencies: dict[int, str] = field(default_factory=dict)
    # The platforms its template runs on; None: any.
    platforms: frozenset[str] | None = None


def eligible(
    node: FreeNode,
    job: CandidateJob,
    excluded_jobs: set[tuple[int, int]],
    excluded_templates: set[tuple[int, int]],
) -> bool:
    """Whether `node` may run a chunk of `job` (pure rule)."""
    if job.platforms is not None and node.platform and node.platform not in job.platforms:
        return False
    included = {p.lower() for p in job.included_pools}
    excluded = {p.lower() for p in job.excluded_pools}
    if included and not included & node.pools:
        return False
    if excluded & node.pools:
        return False
    if (node.id, job.id) in excluded_jobs:
        return False
    return not (job.template_id is not None and (node.id, job.template_id) in excluded_templates)


# --- chunk state rules ---------------------------------------------------------------


@dataclass(frozen=True)
class ChunkChange:
    """What chunkSetStatus does to a chunk."""

    # The status the chunk gets now; None while a kill is pending.
    status: str | None
    # True: the chunk is live; its node must kill the process, and `target`
    # applies once the kill is confirmed or the node is lost.
    kill: bool
    target: str
    # True: counts as a requeue (chunk and job requeue counters).
    requeue: bool


# Current status -> targets allowed from it (live statuses accept every target).
_ALLOWED_FROM: dict[str, frozenset[str]] = {
    "queued": frozenset({"queued", "hold", "skipped", "completed"}),
    "waiting_dependencies": frozenset({"queued", "hold", "skipped", "completed"}),
    "hold": frozenset({"queued", "hold", "skipped", "completed"}),
    "failed": frozenset({"queued", "hold", "skipped", "completed"}),
    "skipped": frozenset({"queued", "skipped", "completed"}),
    "completed": frozenset({"queued", "completed"}),
    "completed_with_warnings": frozenset({"queued", "completed"}),
}
_REQUEUED_FROM = frozenset({"failed", "skipped", "completed", "completed_with_warnings"})


def chunk_change(current: str, target: str) -> ChunkChange:
    """The chunkSetStatus state rule (docs/jobs.md has the table)."""
    if target not in SETTABLE_CHUNK_STATUSES:
        raise InvalidArgument(
            f"status: must be one of {', '.join(s.upper() for s in SETTABLE_CHUNK_STATUSES)}, "
            f"got {target.upper()}"
        )
    if current in LIVE_CHUNK_STATUSES:
        return ChunkChange(None, kill=True, target=target, requeue=target == "queued")
    if target not in _ALLOWED_FROM[current]:
        raise FailedPrecondition(
            f"status: a {current} chunk cannot become {target}; requeue it first"
        )
    return ChunkChange(
        target, kill=False, target=target, requeue=target == "queued" and current in _REQUEUED_FROM
    )


# --- tree and dependency rules ------------------------------------------------------------


def check_move(job_id: int, new_parent_id: int, new_parent_ancestors: Iterable[int]) -> None:
    """Refuse a move that would make a folder its own ancestor."""
    if new_parent_id == job_id or job_id in set(new_parent_ancestors):
        raise FailedPrecondition(
            f"new_parent_id: folder {new_parent_id} is {job_id} itself or inside it"
        )


def find_dependency_cycle(
    job_id: int, depend_ids: Iterable[int], edges: Mapping[int, Iterable[int]]
) -> list[int] | None:
    """A path depend -> ... -> job_id if making job_id wait for depend_ids would
    close a cycle, else None. `edges` maps a job to the jobs it waits for."""
    for start in depend_ids:
        if start == job_id:
            return [job_id, job_id]
        stack: list[tuple[int, list[int]]] = [(start, [job_id, start])]
        seen = {start}
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == job_id:
                    return [*path, job_id]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return None


def folder_cycle(parents: Mapping[int, int | None]) -> int | None:
    """A job id that is its own ancestor in a parent map, or None."""
    for start in parents:
        seen = {start}
        node = parents.get(start)
        while node is not None:
            if node in seen:
                return start
            seen.add(node)
            node = parents.get(node)
    return None


# --- read models ---------------------------------------------------------------------
# What the use cases return: store.py builds them from its queries, messages.py
# reads them. Fields are the stored values (the tables' text values, NULL as None).


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job or folder as stored, with its dependencies and its working nodes."""

    id: int
    parent_id: int | None  # None: the queue root
    kind: str
    name: str
    owner: str
    submitter: str
    priority: int
    template_id: int | None
    start_frame: float
    end_frame: float
    by_frame: float
    packet_size: int
    packet_type: str
    included_pools: Sequence[str]
    excluded_pools: Sequence[str]
    depend_mode: str
    depend_chunks: bool
    max_nodes: int
    project: str
    department: str
    job_group: str
    notes: str
    chunk_timeout_seconds: int
    max_chunk_requeues: int
    logs_error_check: str
    attributes: Mapping[str, Any]  # as attributes_from_json reads them
    environment: Mapping[str, str]
    status: str
    paused: bool
    locked: bool
    requeue_count: int
    chunks_total: int
    chunks_queued: int
    chunks_running: int
    chunks_completed: int
    chunks_failed: int
    progress: float
    submitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime
    version: int
    depend_ids: Sequence[int]  # derived: the jobs it waits for
    nodes_working: int  # derived: its live assignments


# The stored columns of a JobRecord (the rest are derived by the query).
JOB_RECORD_DERIVED = ("depend_ids", "nodes_working")


class JobVersion(Protocol):
    """(id, version) of a job: what a job list reads before it rebuilds the
    messages of the jobs that changed (messages.JobMessageCache). The list's
    rows are kept as the driver returns them (no conversion per row)."""

    @property
    def id(self) -> int: ...

    @property
    def version(self) -> int: ...


class TreeNode(NamedTuple):
    """A job or folder inside a subtree (delete, reinit)."""

    id: int
    kind: str
    locked: bool
    parent_id: int | None
    owner: str


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One chunk as stored (GetChunk, SetChunkStatus)."""

    job_id: int
    chunk_number: int
    start_frame: float
    end_frame: float
    by_frame: float
    slice_index: int
    status: str
    node_id: int | None
    node_name: str | None
    started_at: datetime | None
    ended_at: datetime | None
    requeue_count: int
    runs_count: int
    exit_code: int | None
    progress: float


# A row of a chunk list, positionally, as the driver returns it (up to 10,000
# a page: no object per row): chunk number, job id, start, end and by frame,
# status, node id, node name, start and end time (epoch seconds), requeue
# count, exit code, progress, slice index.
ListedChunk = tuple[
    int,
    int,
    float,
    float,
    float,
    str,
    int | None,
    str | None,
    float | None,
    float | None,
    int,
    int | None,
    float,
    int,
]


class RunRecord(NamedTuple):
    """One run of a chunk in the history (ListChunkHistory)."""

    id: int
    job_id: int
    chunk_number: int
    run_number: int
    node_id: int
    node_name: str
    fencing_token: int
    start_frame: float
    end_frame: float
    started_at: datetime
    ended_at: datetime | None
    exit_code: int | None
    outcome: str
    message: str


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    """A stored template (commands as their JSON, see templates.TemplateCommand)."""

    id: int
    name: str
    description: str
    commands: Sequence[Mapping[str, Any]]
    log_error_patterns: Sequence[str]
    log_warning_patterns: Sequence[str]
    success_exit_codes: Sequence[int]
    default_packet_type: str
    script_name: str
    enabled: bool
    # The MTemplateAPI file behind it (muster_gateway/template_engine.py; '' for a
    # template stored by an older dispatcher).
    version: str = ""
    file_path: str = ""
    load_error: str = ""
    builtin: bool = False
    definition: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    licenses_group: str = ""
    max_licenses: int = 0
    delay_group: str = ""
    delay_seconds: int = 0


@dataclass(frozen=True, slots=True)
class BackupRecord:
    """A job in the backup store; `snapshot` holds its rows as JSON
    (job, dependencies, chunks, runs, parents: see backups.py)."""

    id: int
    owner: str
    backed_up_by: str
    chunks_count: int
    snapshot: Mapping[str, Any]
    backed_up_at: datetime


def spec_of(job: JobRecord) -> JobSpec:
    """The writable properties of a stored job (JobSpec's fields have the
    stored names; these few are stored in another form)."""
    same = {f.name: getattr(job, f.name) for f in dataclasses.fields(JobSpec)}
    return JobSpec(
        **{
            **same,
            "parent_id": ROOT if job.parent_id is None else int(job.parent_id),
            "included_pools": tuple(job.included_pools),
            "excluded_pools": tuple(job.excluded_pools),
            "depend_ids": tuple(sorted(int(d) for d in job.depend_ids)),
            "attributes": tuple(attributes_from_json(job.attributes)),
            "environment": dict(job.environment),
        }
    )
