"""The one mapping between the jobs protobuf enums and the tables' text values
(the shared contract's enums, such as platform and run outcome, are mapped in
muster_services/core/enums.py).

The text value of an enum value is its name without the enum prefix, in lower
case (JOB_STATUS_COMPLETED -> 'completed'), as muster_services/jobs/tables.py
documents. The maps are built from the generated descriptors, so a value added
to a proto enum needs no edit here (the tables' CHECK lists still need one).
"""

from __future__ import annotations

from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2
from muster_services.core.enums import EnumMap

JOB_KIND = EnumMap(jobs_pb2.JobKind.DESCRIPTOR, "JOB_KIND_")
JOB_STATUS = EnumMap(jobs_pb2.JobStatus.DESCRIPTOR, "JOB_STATUS_")
CHUNK_STATUS = EnumMap(jobs_pb2.ChunkStatus.DESCRIPTOR, "CHUNK_STATUS_")
PACKET_TYPE = EnumMap(jobs_pb2.PacketType.DESCRIPTOR, "PACKET_TYPE_")
DEPEND_MODE = EnumMap(jobs_pb2.DependMode.DESCRIPTOR, "DEPEND_MODE_")
LOGS_ERROR_CHECK = EnumMap(jobs_pb2.LogsErrorCheck.DESCRIPTOR, "LOGS_ERROR_CHECK_")
OVERWRITE_MODE = EnumMap(jobs_pb2.BackupOverwriteMode.DESCRIPTOR, "BACKUP_OVERWRITE_MODE_")
TEMPLATE_GROUP_KIND = EnumMap(jobs_pb2.TemplateGroupKind.DESCRIPTOR, "TEMPLATE_GROUP_KIND_")

# RestoreActionFlag bits (RestoreJobRequest.action_flags is a uint32 bit set).
RESTORE_DUPLICATE_ENTRY = jobs_pb2.RESTORE_ACTION_FLAG_DUPLICATE_ENTRY
RESTORE_PARENTS = jobs_pb2.RESTORE_ACTION_FLAG_RESTORE_PARENTS
RESTORE_REMOVE_BACKUP = jobs_pb2.RESTORE_ACTION_FLAG_REMOVE_BACKUP
RESTORE_ALL_FLAGS = RESTORE_DUPLICATE_ENTRY | RESTORE_PARENTS | RESTORE_REMOVE_BACKUP

# What the agent found in a render log line (farm.common.v1.LogMark): 'error',
# 'warning'; LOG_MARK_UNSPECIFIED is stored as NULL.
LOG_MARK = EnumMap(common_pb2.LogMark.DESCRIPTOR, "LOG_MARK_")
