"""Where the facade connects and as whom.

Address, in order: `MUSTER_DISPATCHER` (host:port of a dispatcher serving
every service), else the client file that `dispatcher run` writes
(`$MUSTER_CLIENT_CONFIG`, default `~/.config/muster-dispatcher/client.json`).
`MUSTER_JOBS_ADDRESS`, `MUSTER_NODES_ADDRESS`, `MUSTER_ADMIN_ADDRESS` send one
service's calls elsewhere (Kubernetes without a single front door).
Who calls: `MUSTER_TOKEN` (a token, as hooks get the dispatcher's own), else
a login with `MUSTER_USER` and `MUSTER_PASSWORD`, else with the user and
password of the client file (`dispatcher run` writes its administrator's).
TLS: muster_gateway/tls.py (`MUSTER_TLS_CA_FILE`, ...).

A Connection made with an explicit address and credentials (a client-library
session, muster_gateway/client_library.py) reads none of these; `using(conn)` makes
it the one the facade's functions call through, in this thread or task.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar

import grpc

from muster_gateway.client_config import client_config_path, read_client_config
from muster_gateway.tls import open_channel
from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.jobs.v1 import jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc

DEFAULT_TIMEOUT_SECONDS = 30.0

# One channel option set for every facade channel: retry when the dispatcher
# is briefly unreachable (a restart), never for anything else.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)
CHANNEL_OPTIONS = [("grpc.service_config", _SERVICE_CONFIG), ("grpc.enable_retries", 1)]


class NotConfigured(Exception):
    """No dispatcher address is known."""


class Connection:
    """Channels and stubs to the dispatcher's services, made on first use.

    `address` and `credentials`, when given, replace what the environment and
    the client file say (and MUSTER_TOKEN: such a connection logs in itself).
    """

    def __init__(
        self, address: str | None = None, credentials: tuple[str, str] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._token = ""
        self._token_expires = 0.0
        self._address = address
        self._credentials = credentials
        self.timeout = float(os.environ.get("MUSTER_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))

    def address(self, service: str) -> str:
        if self._address is not None:
            return self._address
        specific = os.environ.get(f"MUSTER_{service.upper()}_ADDRESS", "").strip()
        if specific:
            return specific
        address = os.environ.get("MUSTER_DISPATCHER", "").strip()
        if address:
            return address
        address = str(read_client_config().get("address", "")).strip()
        if address:
            return address
        raise NotConfigured(
            "no dispatcher address: set MUSTER_DISPATCHER=host:port or start one with"
            f" `make run` (which writes {client_config_path()})"
        )

    def credentials(self) -> tuple[str, str]:
        """(user, password): MUSTER_USER / MUSTER_PASSWORD, else the client file's."""
        if self._credentials is not None:
            return self._credentials
        user = os.environ.get("MUSTER_USER", "").strip()
        password = os.environ.get("MUSTER_PASSWORD", "")
        if user and password:
            return user, password
        known = read_client_config()
        if not user or user == known.get("user"):
            return str(known.get("user", "")).strip(), str(known.get("password", ""))
        return user, ""

    def user(self) -> str:
        return self.credentials()[0] or getpass.getuser()

    def token(self) -> str:
        """The token calls carry: MUSTER_TOKEN, else one got by logging in
        (renewed a minute before it expires); '' without credentials."""
        given = "" if self._credentials is not None else os.environ.get("MUSTER_TOKEN", "")
        if given.strip():
            return given.strip()
        with self._lock:
            if self._token and time.time() < self._token_expires - 60:
                return self._token
        user, password = self.credentials()
        if not (user and password):
            return ""
        reply = self.admin().Login(
            admin_pb2.LoginRequest(user_name=user, password=password), timeout=self.timeout
        )
        with self._lock:
            self._token = reply.token
            self._token_expires = reply.expire_time.seconds
            return self._token

    def forget_token(self) -> bool:
        """Drop the login token; whether logging in again could help."""
        with self._lock:
            had = bool(self._token)
            self._token, self._token_expires = "", 0.0
        return had and all(self.credentials())

    def metadata(self) -> tuple[tuple[str, str], ...]:
        token = self.token()
        return (("authorization", f"Bearer {token}"),) if token else ()

    def channel(self, service: str) -> grpc.Channel:
        address = self.address(service)
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = open_channel(address, CHANNEL_OPTIONS)
                self._channels[address] = channel
            return channel

    def jobs(self) -> jobs_pb2_grpc.JobsServiceStub:
        return jobs_pb2_grpc.JobsServiceStub(self.channel("jobs"))

    def nodes(self) -> nodes_pb2_grpc.NodesServiceStub:
        return nodes_pb2_grpc.NodesServiceStub(self.channel("nodes"))

    def clients(self) -> nodes_pb2_grpc.ClientsServiceStub:
        return nodes_pb2_grpc.ClientsServiceStub(self.channel("nodes"))

    def admin(self) -> admin_pb2_grpc.AdminServiceStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel("admin"))

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


_connection: Connection | None = None
_connection_lock = threading.Lock()
_current: ContextVar[Connection | None] = ContextVar("muster_connection", default=None)


@contextlib.contextmanager
def using(conn: Connection) -> Iterator[Connection]:
    """The facade's functions call through `conn` inside the block."""
    token = _current.set(conn)
    try:
        yield conn
    finally:
        _current.reset(token)


def session_connection() -> Connection | None:
    """The connection of the enclosing `using` block, if any."""
    return _current.get()


def connection() -> Connection:
    """The connection of the enclosing `using` block, else the process' one
    (configured by the environment)."""
    chosen = session_connection()
    if chosen is not None:
        return chosen
    global _connection
    with _connection_lock:
        if _connection is None:
            _connection = Connection()
        return _connection


def reset_connection() -> None:
    """Forget channels (after the environment changed; used by tests)."""
    global _connection
    with _connection_lock:
        if _connection is not None:
            _connection.close()
        _connection = None
