"""The one mapping between the jobs protobuf enums and the tables' text values.

The text value of an enum value is its name without the enum prefix, in lower
case (JOB_STATUS_COMPLETED -> 'completed'), as services/jobs/tables.py
documents. The maps are built from the generated descriptors, so a value added
to a proto enum needs no edit here (the tables' CHECK lists still need one).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import EnumDescriptor

from farm.common.v1 import common_pb2
from farm.jobs.v1 import jobs_pb2
from services.core.errors import InvalidArgument


class EnumMap:
    """Proto enum numbers <-> text values; UNSPECIFIED has no text value."""

    def __init__(self, descriptor: EnumDescriptor, prefix: str) -> None:
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
        return self.to_number[text]


JOB_KIND = EnumMap(jobs_pb2.JobKind.DESCRIPTOR, "JOB_KIND_")
JOB_STATUS = EnumMap(jobs_pb2.JobStatus.DESCRIPTOR, "JOB_STATUS_")
CHUNK_STATUS = EnumMap(jobs_pb2.ChunkStatus.DESCRIPTOR, "CHUNK_STATUS_")
PACKET_TYPE = EnumMap(jobs_pb2.PacketType.DESCRIPTOR, "PACKET_TYPE_")
DEPEND_MODE = EnumMap(jobs_pb2.DependMode.DESCRIPTOR, "DEPEND_MODE_")
LOGS_ERROR_CHECK = EnumMap(jobs_pb2.LogsErrorCheck.DESCRIPTOR, "LOGS_ERROR_CHECK_")
OVERWRITE_MODE = EnumMap(jobs_pb2.BackupOverwriteMode.DESCRIPTOR, "BACKUP_OVERWRITE_MODE_")
RUN_OUTCOME = EnumMap(common_pb2.ChunkRunOutcome.DESCRIPTOR, "CHUNK_RUN_OUTCOME_")
PLATFORM = EnumMap(common_pb2.Platform.DESCRIPTOR, "PLATFORM_")

# RestoreActionFlag bits (RestoreJobRequest.action_flags is a uint32 bit set).
RESTORE_DUPLICATE_ENTRY = jobs_pb2.RESTORE_ACTION_FLAG_DUPLICATE_ENTRY
RESTORE_PARENTS = jobs_pb2.RESTORE_ACTION_FLAG_RESTORE_PARENTS
RESTORE_REMOVE_BACKUP = jobs_pb2.RESTORE_ACTION_FLAG_REMOVE_BACKUP
RESTORE_ALL_FLAGS = RESTORE_DUPLICATE_ENTRY | RESTORE_PARENTS | RESTORE_REMOVE_BACKUP
