"""MUSTERERR: the first value every facade function returns.

A facade function never raises for a failure on the server side: it returns a
MUSTERERR whose code is non-zero. The codes are constants of this module (and
class attributes of MUSTERERR), one per gRPC status plus the facade's own.
"""

from __future__ import annotations

import grpc

# Success.
kErrorNone = 0
# The facade's own refusals (before any call is made).
kErrorWrongContext = 1  # called from a context where the function cannot work
kErrorBadArguments = 2  # wrong argument types or values for the function
kErrorNotConfigured = 3  # no dispatcher address known
# A gRPC status from the dispatcher: 100 + the status' numeric value.
kErrorCancelled = 101
kErrorUnknown = 102
kErrorInvalidArgument = 103
kErrorTimeout = 104
kErrorNotFound = 105
kErrorAlreadyExists = 106
kErrorPermissionDenied = 107
kErrorResourceExhausted = 108
kErrorFailedPrecondition = 109
kErrorAborted = 110
kErrorOutOfRange = 111
kErrorNotImplemented = 112
kErrorInternal = 113
kErrorUnavailable = 114
kErrorDataLoss = 115
kErrorUnauthenticated = 116

_NAMES = {value: name for name, value in dict(globals()).items() if name.startswith("kError")}


def code_for_status(status: grpc.StatusCode) -> int:
    value = status.value[0]
    return kErrorNone if value == 0 else 100 + int(value)


class MUSTERERR:
    """The outcome of a facade call: `getErrorCode()` 0 means success."""

    kErrorNone = kErrorNone
    kErrorWrongContext = kErrorWrongContext
    kErrorBadArguments = kErrorBadArguments
    kErrorNotConfigured = kErrorNotConfigured
    kErrorInvalidArgument = kErrorInvalidArgument
    kErrorTimeout = kErrorTimeout
    kErrorNotFound = kErrorNotFound
    kErrorAlreadyExists = kErrorAlreadyExists
    kErrorPermissionDenied = kErrorPermissionDenied
    kErrorFailedPrecondition = kErrorFailedPrecondition
    kErrorAborted = kErrorAborted
    kErrorNotImplemented = kErrorNotImplemented
    kErrorInternal = kErrorInternal
    kErrorUnavailable = kErrorUnavailable
    kErrorUnauthenticated = kErrorUnauthenticated

    def __init__(self, code: int = kErrorNone, description: str = "") -> None:
        self._code = int(code)
        self._description = description

    def getErrorCode(self) -> int:
        return self._code

    def getDescription(self) -> str:
        return self._description

    def setErrorCode(self, code: int) -> None:
        self._code = int(code)

    def setDescription(self, description: str) -> None:
        self._description = str(description)

    @property
    def ok(self) -> bool:
        return self._code == kErrorNone

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, function: str) -> MUSTERERR:
        status = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        if status == grpc.StatusCode.UNAVAILABLE:
            details = f"dispatcher unreachable: {details}"
        return cls(code_for_status(status), f"{function}: {details or status.name}")

    def __repr__(self) -> str:
        name = _NAMES.get(self._code, str(self._code))
        return f"MUSTERERR({name}, {self._description!r})"

    __str__ = __repr__


SUCCESS = MUSTERERR()
