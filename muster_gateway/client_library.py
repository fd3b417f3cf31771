"""Muster's client library: the session calls of `MClientAPI` over gRPC.

A submitter written for Muster's client library runs unchanged:

    import MClientAPI
    MClientAPI.InitializeLibrary("")
    session = MClientAPI.InitializeSession()
    err = MClientAPI.Connect(session, "muster-server", 9781)
    err = MClientAPI.Authenticate(session, "alice", "secret")
    job = MClientAPI.MJob()
    ...
    err = MClientAPI.ActionSendJob(session, job)   # then job.getJobId()
    MClientAPI.Disconnect(session)

Every call but InitializeSession (which returns the session handle) returns
a MUSTERERR (muster_gateway/errors.py): code 0 on success, never an exception for a
wrong password, an unreachable host or a wrong argument.

A session is its own `muster_gateway.connection.Connection`: its own address, user
and login token, nothing read from MUSTER_USER / MUSTER_PASSWORD /
MUSTER_TOKEN. ActionSendJob is the facade's `jobSubmit` made through it
(`connection.using`): the same request, errors and re-login, in any running
context (a session is not bound to one, unlike MDispatcherAPI).

Where Connect(host, port) goes (docs/clients.md): the entry for "host:port"
in MUSTER_CLIENT_ADDRESS_MAP ("oldhost:9781=127.0.0.1:50051,*:9881=...");
else, for one of Muster's console ports (9781, 9881) on any host, the
dispatcher this machine is configured for (MUSTER_DISPATCHER or the client
file, as for MDispatcherAPI: those ports never serve gRPC, so a script that
names them means "the farm's dispatcher"); else host:port itself, a gRPC
address of this dispatcher.
"""

from __future__ import annotations

import os
from typing import Any

import grpc

from muster_gateway import errors
from muster_gateway.api._arguments import BadArguments, as_int, as_str
from muster_gateway.api.jobs import jobSubmit
from muster_gateway.connection import Connection, NotConfigured, using
from muster_gateway.errors import MUSTERERR

ADDRESS_MAP_VARIABLE = "MUSTER_CLIENT_ADDRESS_MAP"
# Muster 8's and Muster 9's console / client-library ports.
MUSTER_CONSOLE_PORTS = (9781, 9881)


class BadAddressMap(ValueError):
    """MUSTER_CLIENT_ADDRESS_MAP cannot be read; the message names the entry."""


def _join(host: str, port: int) -> str:
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{host}:{port}"


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(address)
    return host.strip("[]").lower(), int(port)


def address_map(text: str) -> dict[tuple[str, int], str]:
    """`MUSTER_CLIENT_ADDRESS_MAP`'s entries: (host or "*", port) -> gRPC address."""
    entries: dict[tuple[str, int], str] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        source, sep, target = entry.partition("=")
        try:
            if not sep:
                raise ValueError(entry)
            key = _split(source)
            _split(target)
        except ValueError:
            raise BadAddressMap(
                f"{ADDRESS_MAP_VARIABLE}: {entry.strip()!r} is not host:port=host:port"
            ) from None
        entries[key] = target.strip()
    return entries


def dispatcher_address(host: str, port: int) -> str | None:
    """The gRPC address Connect(host, port) reaches; None for the configured
    dispatcher (a Muster console port that the map does not name)."""
    entries = address_map(os.environ.get(ADDRESS_MAP_VARIABLE, ""))
    key = (host.strip().strip("[]").lower(), port)
    mapped = entries.get(key) or entries.get(("*", port))
    if mapped:
        return mapped
    if port in MUSTER_CONSOLE_PORTS:
        return None
    return _join(host, port)


class Session:
    """The handle InitializeSession returns: one dispatcher, one user."""

    def __init__(self) -> None:
        self.connection: Connection | None = None
        # The mapped address (None: the configured dispatcher), for Authenticate.
        self.address: str | None = None
        self.user = ""

    @property
    def connected(self) -> bool:
        return self.connection is not None

    @property
    def authenticated(self) -> bool:
        return bool(self.user)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection, self.address, self.user = None, None, ""

    def __repr__(self) -> str:
        if self.connection is None:
            return "Session(not connected)"
        where = self.address or "the configured dispatcher"
        return f"Session({where}, user={self.user or None!r})"


def _session(function: str, session: Any, connected: bool = True) -> Session:
    if not isinstance(session, Session):
        raise BadArguments(
            f"session must be what InitializeSession() returned, got {type(session).__name__}"
        )
    if connected and not session.connected:
        raise NotConnected(f"{function}: not connected: call Connect(session, host, port) first")
    return session


class NotConnected(Exception):
    """The session has no connection (kErrorFailedPrecondition)."""


def _port(value: Any) -> int:
    port = as_int(value, "port")
    if not 0 < port < 65536:
        raise BadArguments(f"port must be 1-65535, got {value!r}")
    return port


def _refused(function: str, exc: Exception) -> MUSTERERR:
    """The MUSTERERR of a call refused before or by the dispatcher."""
    if isinstance(exc, BadArguments):
        return MUSTERERR(errors.kErrorBadArguments, f"{function}: {exc}")
    if isinstance(exc, NotConnected):
        return MUSTERERR(errors.kErrorFailedPrecondition, str(exc))
    if isinstance(exc, (NotConfigured, BadAddressMap)):
        return MUSTERERR(errors.kErrorNotConfigured, f"{function}: {exc}")
    if isinstance(exc, grpc.RpcError):
        return MUSTERERR.from_rpc_error(exc, function)
    raise exc


# --- the calls ---------------------------------------------------------------------------


def InitializeLibrary(path: Any = "") -> MUSTERERR:
    """Muster loads its libraries from `path`; here there is nothing to load."""
    try:
        as_str(path, "path")
    except BadArguments as exc:
        return _refused("InitializeLibrary", exc)
    return MUSTERERR()


def InitializeSession() -> Session:
    """A new, unconnected session handle (returned directly, not in a tuple)."""
    return Session()


def Connect(session: Any, host: Any, port: Any) -> MUSTERERR:
    """Open the session to the dispatcher `host:port` maps to and check it
    answers (its health service; no login yet). A connected session is
    closed first."""
    try:
        handle = _session("Connect", session, connected=False)
        if not as_str(host, "host").strip():
            raise BadArguments("host must not be empty")
        address = dispatcher_address(host, _port(port))
        conn = Connection(address=address, credentials=("", ""))
        try:
            serving = _health_check(conn.channel("admin"), conn.timeout)
        except BaseException:
            conn.close()
            raise
    except (BadArguments, NotConfigured, BadAddressMap, grpc.RpcError) as exc:
        return _refused("Connect", exc)
    if not serving:
        conn.close()
        return MUSTERERR(
            errors.kErrorUnavailable, f"Connect: the dispatcher at {_where(conn)} is not serving"
        )
    handle.close()
    handle.connection, handle.address = conn, address
    return MUSTERERR()


# grpc.health.v1.Health/Check with the overall service (an empty request). Its
# messages are encoded here so that the client needs only grpcio and protobuf:
# the answer is field 1, the status enum, a varint; SERVING is 1.
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = 1


def _health_status(answer: bytes) -> int:
    """The `status` of a serialized HealthCheckResponse (0, UNKNOWN, when absent)."""
    status, at = 0, 0
    while at < len(answer):
        tag, at = _varint(answer, at)
        if tag & 7 != 0:  # a field of another wire type: none in this message
            raise ValueError("not a HealthCheckResponse")
        value, at = _varint(answer, at)
        if tag >> 3 == 1:
            status = value
    return status


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _health_check(channel: grpc.Channel, timeout: float) -> bool:
    check = channel.unary_unary(
        _HEALTH_CHECK,
        request_serializer=lambda _request: b"",
        response_deserializer=_health_status,
    )
    return bool(check(None, timeout=timeout) == _SERVING)


def _where(conn: Connection) -> str:
    try:
        return conn.address("admin")
    except NotConfigured:
        return "(not configured)"


def Authenticate(session: Any, user: Any, password: Any) -> MUSTERERR:
    """Log in as `user`; later calls of the session act as that user."""
    try:
        handle = _session("Authenticate", session)
        name, secret = as_str(user, "user").strip(), as_str(password, "password")
        if not name or not secret:
            raise BadArguments("user and password must not be empty")
        conn = Connection(address=handle.address, credentials=(name, secret))
        try:
            conn.token()  # logs in
        except BaseException:
            conn.close()
            raise
    except (BadArguments, NotConnected, NotConfigured, grpc.RpcError) as exc:
        return _refused("Authenticate", exc)
    address = handle.address
    handle.close()
    handle.connection, handle.address, handle.user = conn, address, name
    return MUSTERERR()


def ActionSendJob(session: Any, job: Any) -> MUSTERERR:
    """Submit `job` as the session's user; on success `job.getJobId()` is its id."""
    try:
        handle = _session("ActionSendJob", session)
        if not handle.authenticated:
            return MUSTERERR(
                errors.kErrorUnauthenticated,
                "ActionSendJob: not authenticated: call Authenticate(session, user, password)"
                " first",
            )
    except (BadArguments, NotConnected) as exc:
        return _refused("ActionSendJob", exc)
    assert handle.connection is not None
    with using(handle.connection):
        err, _ = jobSubmit(job, handle.user)
    description = err.getDescription()
    if description.startswith("jobSubmit: "):
        err.setDescription("ActionSendJob: " + description.removeprefix("jobSubmit: "))
    return err


def Disconnect(session: Any) -> MUSTERERR:
    """Close the session; it can Connect again."""
    try:
        handle = _session("Disconnect", session)
    except (BadArguments, NotConnected) as exc:
        return _refused("Disconnect", exc)
    handle.close()
    return MUSTERERR()


__all__ = [
    "ActionSendJob",
    "Authenticate",
    "Connect",
    "Disconnect",
    "InitializeLibrary",
    "InitializeSession",
    "Session",
]
