"""The dashboard's side of the services: channels, calls with a user's token,
and the errors they answer as HTTP statuses.

Channels come from muster_gateway/connection.py (address settings, retries) and
muster_gateway/tls.py (TLS); every call carries the browser user's own token,
so the services' permission checks apply unchanged.
"""

from __future__ import annotations

import threading

import grpc

from muster_gateway.connection import Connection

# gRPC status -> HTTP status of the dashboard's JSON API.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 502)


class Upstream(Connection):
    """Connection to the services: a fixed address when given (the dashboard
    inside `dispatcher run`), else the usual settings (`MUSTER_DISPATCHER`,
    `MUSTER_JOBS_ADDRESS`...). Its own token is the one a logged-in user lent
    the shared event stream (hub.py); it never logs in by itself."""

    def __init__(self, address: str = "") -> None:
        super().__init__()
        self._fixed = address
        self._lent = ""
        self._lent_lock = threading.Lock()

    def address(self, service: str) -> str:
        return self._fixed or super().address(service)

    def lend(self, token: str) -> bool:
        """Offer a user's token to the shared stream; whether it was new."""
        with self._lent_lock:
            fresh = token != self._lent
            self._lent = token
            return fresh

    def token(self) -> str:
        with self._lent_lock:
            return self._lent

    def forget_token(self) -> bool:
        with self._lent_lock:
            self._lent = ""
        return False

    def user(self) -> str:
        return "dashboard"
