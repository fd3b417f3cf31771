"""Proto enum numbers <-> the text values the tables store.

The text of an enum value is its name without the enum's prefix, in lower
case (JOB_STATUS_COMPLETED -> 'completed'), as the tables' CHECK lists spell
them. Built from the generated descriptors, so a value added to a proto enum
needs no edit here.

The maps of the shared contract's enums (farm/common/v1/common.proto), which
more than one service uses, are defined once at the end of this module; a
service's own enums are mapped in that service (muster_services/jobs/enums.py).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import EnumDescriptor

from muster_proto.common.v1 import common_pb2
from muster_services.core.errors import InvalidArgument


class EnumMap:
    """Proto enum numbers <-> text values; UNSPECIFIED has no text value."""

    def __init__(self, descriptor: EnumDescriptor, prefix: str = "") -> None:
        prefix = prefix or _prefix(descriptor.name)
        self.to_text: dict[int, str] = {}
        # Values typed Any: each generated enum has its own ValueType.
        self.to_number: dict[str, Any] = {}
        for value in descriptor.values:
            if value.number == 0:
                continue
            text = value.name.removeprefix(prefix).lower()
            self.to_text[value.number] = text
            self.to_number[text] = value.number

    def text(self, number: int, field_name: str, default: str | None = None) -> str:
        """The text of `number`; unspecified gives `default` or INVALID_ARGUMENT."""
        if number == 0 and default is not None:
            return default
        try:
            return self.to_text[number]
        except KeyError:
            message = f"{field_name}: must be set to a known value, got {number}"
            raise InvalidArgument(message) from None

    def number(self, text: str) -> Any:
        """The number of a text value; 0 (UNSPECIFIED) for an unknown or empty one."""
        return self.to_number.get(text, 0)


def _prefix(enum_name: str) -> str:
    """NodeStatus -> NODE_STATUS_ (buf's enum value prefix rule)."""
    snake = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(enum_name))
    return snake.upper() + "_"


# --- the shared contract's enums (farm/common/v1/common.proto) ------------------------------

PLATFORM = EnumMap(common_pb2.Platform.DESCRIPTOR, "PLATFORM_")
RUN_OUTCOME = EnumMap(common_pb2.ChunkRunOutcome.DESCRIPTOR, "CHUNK_RUN_OUTCOME_")
KILL_FOLLOW_UP = EnumMap(common_pb2.KillFollowUp.DESCRIPTOR, "KILL_FOLLOW_UP_")
LOG_STREAM = EnumMap(common_pb2.LogStream.DESCRIPTOR, "LOG_STREAM_")
PROCESS_PRIORITY = EnumMap(common_pb2.ProcessPriority.DESCRIPTOR, "PROCESS_PRIORITY_")
SYSTEM_EVENT = EnumMap(common_pb2.SystemEvent.DESCRIPTOR, "SYSTEM_EVENT_")
