"""What `muster-console` and `muster-notificator` share: one live connection.

`LiveClient` logs in (muster_gateway/connection.py), opens a `ClientsService/Connect`
stream, hands every event to a callback, and after a dispatcher restart
reconnects with exponential backoff, resuming after the last event id it
saw, so nothing is missed and nothing is shown twice. A forced disconnection
ends it. `command_line()` is the start-up both programs share: the common
options, the environment they turn into, and the signals that stop it.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import grpc

from muster_gateway.connection import CHANNEL_OPTIONS, Connection
from muster_gateway.tls import open_channel
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc

VERSION = "0.1.0"
# Answers that waiting will not change (after one fresh login for UNAUTHENTICATED).
FATAL_CODES = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
)
MAX_BACKOFF_SECONDS = 15.0


def clock(event: nodes_pb2.ClientEvent) -> str:
    """The event's time of day, local time (now when it has none)."""
    return datetime.fromtimestamp(event.event_time.seconds or time.time()).strftime("%H:%M:%S")


def events_of(response: nodes_pb2.ConnectResponse) -> Sequence[nodes_pb2.ClientEvent]:
    """The events a Connect response carries: one, a batch, or none (the acceptance)."""
    kind = response.WhichOneof("message")
    if kind == "events":
        return response.events.events
    return [response.event] if kind == "event" else []


class LiveClient:
    """One console or notificator connection that survives dispatcher restarts."""

    def __init__(
        self,
        program: str,
        connection: Connection,
        request: nodes_pb2.ConnectRequest,
        on_event: Callable[[nodes_pb2.ClientEvent], None],
        say: Callable[[str], None],
    ) -> None:
        self.program = program
        self.connection = connection
        # Kind, filters and preferences; host, version and the resume id are filled in here.
        self.request = request
        self.on_event = on_event
        self.say = say  # a line for the user (stdout)
        self.log = logging.getLogger(program)
        self.last_event_id = 0
        self.stopping = threading.Event()
        self._call: Any = None

    def stop(self) -> None:
        self.stopping.set()
        if self._call is not None:
            self._call.cancel()

    def run(self) -> int:
        """Stay connected until stopped (0), forced off (0) or refused (2)."""
        backoff = 0.5
        relogged = False
        while not self.stopping.is_set():
            try:
                if self._session():
                    return 0  # forced to disconnect: do not come back
                backoff, relogged = 0.5, False
            except grpc.RpcError as exc:
                if self.stopping.is_set():
                    return 0
                code = exc.code()
                if code == grpc.StatusCode.UNAUTHENTICATED and not relogged:
                    relogged = self.connection.forget_token()
                    if relogged:
                        continue  # log in again once
                if code in FATAL_CODES:
                    print(f"{self.program}: {exc.details()}", file=sys.stderr)
                    return 2
                self.log.warning(
                    "dispatcher unreachable (%s); retrying in %.1fs", code.name, backoff
                )
            self.stopping.wait(backoff * (0.8 + random.random() * 0.4))
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        return 0

    def _session(self) -> bool:
        """One connection; True when the dispatcher forced it closed."""
        request = nodes_pb2.ConnectRequest()
        request.CopyFrom(self.request)
        request.host = request.host or socket.gethostname()
        request.version = request.version or VERSION
        request.resume_after_event_id = self.last_event_id
        request.batch_events = True
        address = self.connection.address("nodes")
        with open_channel(address, CHANNEL_OPTIONS) as channel:
            stub = nodes_pb2_grpc.ClientsServiceStub(channel)
            self._call = stub.Connect(request, metadata=self.connection.metadata())
            if self.stopping.is_set():
                self._call.cancel()
            for response in self._call:
                if response.HasField("accepted"):
                    accepted = response.accepted
                    self.log.info(
                        "connected to %s as %s (connection %d, resuming after event %d)",
                        address,
                        self.connection.user(),
                        accepted.connection_id,
                        self.last_event_id,
                    )
                    if not self.last_event_id:
                        self.last_event_id = accepted.last_event_id
                    continue
                for event in events_of(response):
                    if event.HasField("disconnect_notice"):
                        return self._disconnected(event.disconnect_notice)
                    self.last_event_id = event.event_id
                    self.on_event(event)
        return False

    def _disconnected(self, notice: nodes_pb2.DisconnectNotice) -> bool:
        if notice.reason == nodes_pb2.DISCONNECT_REASON_FORCED:
            self.say(f"disconnected by the dispatcher: {notice.message}; not reconnecting")
            return True
        if notice.reason == nodes_pb2.DISCONNECT_REASON_RESUME_TOO_OLD:
            self.say(f"missed events are no longer kept ({notice.message}); starting afresh")
            self.last_event_id = 0
        else:
            self.log.warning("the dispatcher closed the connection: %s", notice.message)
        return False


def command_line(program: str, description: str | None) -> argparse.ArgumentParser:
    """The options every live client has; the program adds its own."""
    parser = argparse.ArgumentParser(prog=program, description=description)
    parser.add_argument(
        "--dispatcher",
        help="host:port (default: $MUSTER_DISPATCHER or the client file `make run` writes)",
    )
    parser.add_argument(
        "--user",
        help="user name (default: $MUSTER_USER or the client file's; password: $MUSTER_PASSWORD)",
    )
    parser.add_argument("--log-level", default="warning")
    return parser


def connect_from(program: str, args: argparse.Namespace) -> Connection | None:
    """The connection the options name, or None (after saying why) without an address."""
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if args.user:
        os.environ["MUSTER_USER"] = args.user
    if args.dispatcher:
        os.environ["MUSTER_DISPATCHER"] = args.dispatcher
    connection = Connection()
    try:
        connection.address("nodes")
    except Exception as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return None
    return connection


def run_until_signalled(client: LiveClient, signals: Sequence[int] = ()) -> int:
    """Run `client`; SIGINT and SIGTERM end it cleanly (exit 0)."""
    for sig in signals or (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: client.stop())
    return client.run()
