"""Conversions between protobuf well-known types and Python values."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from muster_services.core.errors import InvalidArgument


def to_timestamp(value: datetime | None) -> Timestamp | None:
    """A datetime as a Timestamp (None stays None, so the field stays unset)."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return stamp


def from_timestamp(stamp: Timestamp | None, field_name: str = "time") -> datetime | None:
    """A Timestamp as an aware UTC datetime; an unset (zero) one is None.

    Raises InvalidArgument for a time outside years 1-9999 or nanos outside
    0..999999999 (what a datetime, and so PostgreSQL through us, can hold).
    """
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(
            f"{field_name}: not a valid time (seconds {stamp.seconds}, nanos {stamp.nanos}):"
            " years 1-9999, nanos 0-999999999"
        ) from exc
