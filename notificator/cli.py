"""`muster-notificator`: stay connected to the dispatcher and show notifications.

Prints each notification on one line (time, kind, text) and, where the
desktop offers `notify-send`, shows it as a desktop notification too. After
a dispatcher restart it reconnects and resumes after the last event it saw,
so nothing is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import grpc

from farm.common.v1 import common_pb2
from farm.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from gateway.connection import CHANNEL_OPTIONS, Connection
from services.core.tls import open_channel

_LOG = logging.getLogger("muster-notificator")
VERSION = "0.1.0"

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


def format_event(event: nodes_pb2.ClientEvent) -> str | None:
    """One readable line for an event, or None for events not shown."""
    when = datetime.fromtimestamp(event.event_time.seconds or time.time()).strftime("%H:%M:%S")
    if event.HasField("notification"):
        note = event.notification
        return f"{when}  {KIND_LABELS.get(note.kind, 'notice'):<28} {note.text}"
    if event.HasField("custom_message"):
        message = event.custom_message
        sender = f" from {message.sender}" if message.sender else ""
        return f"{when}  {'message' + sender:<28} {message.message}"
    return None


class Notificator:
    def __init__(
        self,
        address: str,
        user: str,
        credentials: Callable[[], tuple[tuple[str, str], ...]],
        preferences: common_pb2.NotificationPreferences | None,
        show: Callable[[str], None],
        desktop: bool,
    ) -> None:
        self.address = address
        self.user = user
        # Call metadata with a fresh token (logs in when needed).
        self.credentials = credentials
        self.preferences = preferences
        self.show = show
        self.desktop = desktop and shutil.which("notify-send") is not None
        self.last_event_id = 0
        self.stopping = threading.Event()
        self._call: Any = None

    def stop(self) -> None:
        self.stopping.set()
        if self._call is not None:
            self._call.cancel()

    def run(self) -> int:
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                if self._session():
                    return 0  # forced to disconnect: do not come back
                backoff = 0.5
            except grpc.RpcError as exc:
                if self.stopping.is_set():
                    return 0
                if exc.code() in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED,
                ):
                    print(f"muster-notificator: {exc.details()}", file=sys.stderr)
                    return 2
                _LOG.warning(
                    "dispatcher unreachable (%s); retrying in %.1fs", exc.code().name, backoff
                )
            self.stopping.wait(backoff * (0.8 + random.random() * 0.4))
            backoff = min(backoff * 2, 15.0)
        return 0

    def _session(self) -> bool:
        """One connection; returns True when the dispatcher forced it closed."""
        request = nodes_pb2.ConnectRequest(
            client_kind=nodes_pb2.CLIENT_KIND_NOTIFICATOR,
            host=socket.gethostname(),
            version=VERSION,
            resume_after_event_id=self.last_event_id,
        )
        if self.preferences is not None:
            request.notification_preferences.CopyFrom(self.preferences)
        with open_channel(self.address, CHANNEL_OPTIONS) as channel:
            stub = nodes_pb2_grpc.ClientsServiceStub(channel)
            self._call = stub.Connect(request, metadata=self.credentials())
            for response in self._call:
                if response.HasField("accepted"):
                    _LOG.info(
                        "connected to %s as %s (connection %d)",
                        self.address,
                        self.user,
                        response.accepted.connection_id,
                    )
                    if not self.last_event_id:
                        self.last_event_id = response.accepted.last_event_id
                    continue
                event = response.event
                if event.HasField("disconnect_notice"):
                    notice = event.disconnect_notice
                    self.show(f"disconnected by the dispatcher: {notice.message}")
                    if notice.reason == nodes_pb2.DISCONNECT_REASON_RESUME_TOO_OLD:
                        self.last_event_id = 0
                        return False
                    return bool(notice.reason == nodes_pb2.DISCONNECT_REASON_FORCED)
                self.last_event_id = event.event_id
                line = format_event(event)
                if line:
                    self.show(line)
                    if self.desktop:
                        self._notify_desktop(line)
        return False

    @staticmethod
    def _notify_desktop(line: str) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["notify-send", "Render farm", line[10:].strip()],
                timeout=5,
                check=False,
                capture_output=True,
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="muster-notificator", description=__doc__)
    parser.add_argument(
        "--dispatcher",
        help="host:port (default: $MUSTER_DISPATCHER or the client file `make run` writes)",
    )
    parser.add_argument("--user", help="user name (default: $MUSTER_USER or the login name)")
    parser.add_argument(
        "--only",
        help="comma list of notifications to show, from: "
        + ", ".join(PREFERENCES[:7] + PREFERENCES[9:])
        + " (default: the"
        " user's stored preferences)",
    )
    parser.add_argument(
        "--own-jobs-only", action="store_true", help="only notifications about your own jobs"
    )
    parser.add_argument("--no-desktop", action="store_true", help="print only, no notify-send")
    parser.add_argument("--log-level", default="warning")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if args.user:
        os.environ["MUSTER_USER"] = args.user  # the login (password: $MUSTER_PASSWORD)
    if args.dispatcher:
        os.environ["MUSTER_DISPATCHER"] = args.dispatcher
    connection = Connection()
    try:
        address = connection.address("nodes")
    except Exception as exc:
        print(f"muster-notificator: {exc}", file=sys.stderr)
        return 2
    preferences = None
    if args.only or args.own_jobs_only:
        preferences = common_pb2.NotificationPreferences(own_jobs_only=args.own_jobs_only)
        for name in (
            args.only
            or "job_started,job_completed,job_completed_with_warnings,"
            "job_completed_with_errors,custom_messages,node_offline"
        ).split(","):
            name = name.strip()
            if name not in PREFERENCES:
                print(f"muster-notificator: unknown notification {name!r}", file=sys.stderr)
                return 2
            setattr(preferences, name, True)
    notificator = Notificator(
        address,
        connection.user(),
        connection.metadata,
        preferences,
        show=lambda line: print(line, flush=True),
        desktop=not args.no_desktop,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: notificator.stop())
    return notificator.run()
