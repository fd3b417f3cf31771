"""Domain errors and the one table that turns them into gRPC statuses.

Service layers raise these; servicers never build statuses by hand. The
interceptor in muster_services/core/server.py maps them with STATUS_OF, and the
gateway keeps the mirror table from status to MUSTERERR.
"""

from __future__ import annotations

import grpc

# The status message travels in a gRPC trailer (8 KiB soft, 16 KiB hard
# limit, non-ASCII percent-encoded): a message quoting hostile input is cut.
MAX_MESSAGE_CHARS = 512


def bounded(message: str) -> str:
    """`message`, cut to MAX_MESSAGE_CHARS with a mark of how much was left out."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 40] + f"... ({len(message)} characters in all)"


class DomainError(Exception):
    """A request the dispatcher refuses, with a message for the caller."""

    #: Stable UPPER_SNAKE id of the failure, for clients that branch on it.
    reason = "DOMAIN_ERROR"

    def __init__(self, message: str, reason: str | None = None) -> None:
        message = bounded(message)
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class InvalidArgument(DomainError):
    reason = "INVALID_ARGUMENT"


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class Conflict(DomainError):
    """Lost a race (stale version, stale fencing token): retry with fresh state."""

    reason = "ABORTED"


class PermissionDenied(DomainError):
    reason = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    reason = "UNAUTHENTICATED"


class ResourceExhausted(DomainError):
    """Too much: too many failed logins, a message or field above its limit."""

    reason = "RESOURCE_EXHAUSTED"


class Unavailable(DomainError):
    reason = "UNAVAILABLE"


class DeadlineExceeded(DomainError):
    """Something the request waits for (an agent's answer) did not come in time."""

    reason = "DEADLINE_EXCEEDED"


STATUS_OF: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Conflict: grpc.StatusCode.ABORTED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(error: DomainError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.FAILED_PRECONDITION
