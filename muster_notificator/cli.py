"""`muster-notificator`: stay connected to the dispatcher and show notifications.

Prints each notification on one line (time, kind, text) and, where the
desktop offers `notify-send`, shows it as a desktop notification too. After
a dispatcher restart it reconnects and resumes after the last event it saw,
so nothing is missed (muster_gateway/live.py, shared with `muster-console`).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence

from muster_gateway.live import LiveClient, clock, command_line, connect_from, run_until_signalled
from muster_proto.common.v1 import common_pb2
from muster_proto.nodes.v1 import nodes_pb2

PROGRAM = "muster-notificator"

KIND_LABELS = {
    nodes_pb2.NOTIFICATION_KIND_JOB_STARTED: "job started",
    nodes_pb2.NOTIFICATION_KIND_CHUNK_STARTED: "chunk started",
    nodes_pb2.NOTIFICATION_KIND_CHUNK_FAILED: "chunk failed",
    nodes_pb2.NOTIFICATION_KIND_JOB_COMPLETED: "job completed",
    nodes_pb2.NOTIFICATION_KIND_JOB_COMPLETED_WITH_WARNINGS: "job completed with warnings",
    nodes_pb2.NOTIFICATION_KIND_JOB_COMPLETED_WITH_ERRORS: "job completed with errors",
    nodes_pb2.NOTIFICATION_KIND_NODE_OFFLINE: "node offline",
}
PREFERENCES = [f.name for f in common_pb2.NotificationPreferences.DESCRIPTOR.fields]
CHOOSABLE = [p for p in PREFERENCES if p not in ("own_jobs_only", "email")]
DEFAULT_ONLY = (
    "job_started,job_completed,job_completed_with_warnings,"
    "job_completed_with_errors,custom_messages,node_offline"
)


def format_event(event: nodes_pb2.ClientEvent) -> str | None:
    """One readable line for an event, or None for events not shown."""
    when = clock(event)
    if event.HasField("notification"):
        note = event.notification
        return f"{when}  {KIND_LABELS.get(note.kind, 'notice'):<28} {note.text}"
    if event.HasField("custom_message"):
        message = event.custom_message
        sender = f" from {message.sender}" if message.sender else ""
        return f"{when}  {'message' + sender:<28} {message.message}"
    return None


class Shower:
    """Prints a notification's line and shows it on the desktop when it can."""

    def __init__(self, show: Callable[[str], None], desktop: bool) -> None:
        self.show = show
        self.desktop = desktop and shutil.which("notify-send") is not None

    def __call__(self, event: nodes_pb2.ClientEvent) -> None:
        line = format_event(event)
        if not line:
            return
        self.show(line)
        if self.desktop:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["notify-send", "Render farm", line[10:].strip()],
                    timeout=5,
                    check=False,
                    capture_output=True,
                )


def preferences_from(only: str, own_jobs_only: bool) -> common_pb2.NotificationPreferences:
    """Preferences from `--only` (a comma list); ValueError names an unknown one."""
    preferences = common_pb2.NotificationPreferences(own_jobs_only=own_jobs_only)
    for name in (only or DEFAULT_ONLY).split(","):
        name = name.strip()
        if name not in CHOOSABLE:
            raise ValueError(f"unknown notification {name!r}")
        setattr(preferences, name, True)
    return preferences


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_line(PROGRAM, __doc__)
    parser.add_argument(
        "--only",
        help="comma list of notifications to show, from: "
        + ", ".join(CHOOSABLE)
        + " (default: the user's stored preferences)",
    )
    parser.add_argument(
        "--own-jobs-only", action="store_true", help="only notifications about your own jobs"
    )
    parser.add_argument("--no-desktop", action="store_true", help="print only, no notify-send")
    args = parser.parse_args(argv)
    connection = connect_from(PROGRAM, args)
    if connection is None:
        return 2
    request = nodes_pb2.ConnectRequest(client_kind=nodes_pb2.CLIENT_KIND_NOTIFICATOR)
    if args.only or args.own_jobs_only:
        try:
            request.notification_preferences.CopyFrom(
                preferences_from(args.only, args.own_jobs_only)
            )
        except ValueError as exc:
            print(f"{PROGRAM}: {exc}", file=sys.stderr)
            return 2

    def say(line: str) -> None:
        print(line, flush=True)

    shower = Shower(say, desktop=not args.no_desktop)
    return run_until_signalled(LiveClient(PROGRAM, connection, request, shower, say))
