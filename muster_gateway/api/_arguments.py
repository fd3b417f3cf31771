"""Argument conversion: refuse what cannot be meant, before any call.

Scripts pass whatever Python lets them; each facade function turns its
arguments into request fields with these, and a `BadArguments` becomes a
kErrorBadArguments MUSTERERR naming the function (muster_gateway/api/_calls.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from muster_gateway.objects import MObject

Number = TypeVar("Number", bound=int)


class BadArguments(Exception):
    """The caller passed arguments the function cannot use."""


def as_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadArguments(f"{name} must be an integer, got {type(value).__name__}")
    try:
        number = int(value)
    except ValueError:
        raise BadArguments(f"{name} must be an integer, got {value!r}") from None
    if isinstance(value, float) and number != value:
        raise BadArguments(f"{name} must be a whole number, got {value!r}")
    return number


def as_enum(value: object, values: Callable[[int], Number], name: str) -> Number:
    """An enum argument: its number as the enum's `ValueType` (an int; the server
    says whether it is a known value)."""
    return values(as_int(value, name))


def as_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise BadArguments(f"{name} must be a string, got {type(value).__name__}")
    return value


def as_message(value: object, cls: type[MObject], name: str) -> Any:
    """The protobuf message an M-object wraps (typed as the object's `message`)."""
    if not isinstance(value, cls):
        raise BadArguments(f"{name} must be an {cls.__name__}, got {type(value).__name__}")
    return value.message


def as_timestamp(value: object, name: str) -> Timestamp:
    stamp = Timestamp()
    if isinstance(value, datetime):
        stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    else:
        stamp.FromSeconds(as_int(value, name))
    return stamp
