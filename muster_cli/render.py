"""How `muster` shows things: enum names, progress bars, tables, JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table

from muster_proto.jobs.v1 import jobs_pb2

# Not a terminal (a pipe, a file): wide enough that table rows stay on one line.
PIPE_WIDTH = 200


def out() -> Console:
    """Standard output, as it is now (a test may have replaced it)."""
    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)


def enum_text(enum: EnumDescriptor, value: int, prefix: str) -> str:
    """`JOB_STATUS_COMPLETED_WITH_ERRORS` -> `completed with errors`."""
    known = enum.values_by_number.get(value)
    if known is None:
        return str(value)
    return known.name.removeprefix(prefix).lower().replace("_", " ")


def job_status(job: jobs_pb2.Job) -> str:
    text = enum_text(jobs_pb2.JobStatus.DESCRIPTOR, job.status, "JOB_STATUS_")
    return text + (", paused" if job.paused else "")


def chunk_status(status: int) -> str:
    return enum_text(jobs_pb2.ChunkStatus.DESCRIPTOR, status, "CHUNK_STATUS_")


def bar(percent: float, width: int = 10) -> str:
    """A text progress bar: `██████░░░░  60%`."""
    filled = max(0, min(width, round(percent / 100 * width)))
    return "█" * filled + "░" * (width - filled) + f" {percent:3.0f}%"


def when(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    moment = datetime.fromtimestamp(stamp.seconds, timezone.utc).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def frames(start: float, end: float) -> str:
    def one(value: float) -> str:
        return str(int(value)) if value == int(value) else f"{value:g}"

    return one(start) if start == end else f"{one(start)}-{one(end)}"


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def print_json(data: Any) -> None:
    """JSON for scripts: messages as the proto's JSON mapping (field names as in the proto)."""
    if isinstance(data, Message):
        data = as_dict(data)
    elif isinstance(data, list):
        data = [as_dict(item) if isinstance(item, Message) else item for item in data]
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column, no_wrap=True)
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    out().print(grid)


def listing(
    found: Sequence[Any],
    as_json: bool,
    title: str,
    columns: Sequence[str],
    row: Callable[[Any], Sequence[Any]],
) -> None:
    """A list of objects as JSON (`--json`) or as a table, one `row` each."""
    if as_json:
        print_json(list(found))
        return
    table(f"{len(found)} {title}", columns, (row(item) for item in found))


def details(
    found: Message, as_json: bool, title: str, pairs: Callable[[], Iterable[tuple[str, Any]]]
) -> None:
    """One object as JSON (`--json`) or a two-column table of its non-empty `pairs`."""
    if as_json:
        print_json(found)
        return
    table(title, ("field", "value"), ((k, v) for k, v in pairs() if v not in ("", None)))
