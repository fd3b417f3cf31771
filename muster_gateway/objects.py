"""MClientAPI's object classes, each a thin wrapper around a contract message.

Every field of the message gets a Muster-style getter and setter derived from
its name (`template_id` -> `getTemplateId()` / `setTemplateId(v)`), plus the
aliases real Muster scripts use (`setTemplateID`, `getJobId`, `setJobType`,
`setMaximumNodes`...). Enum constants are class attributes named
`k<Enum><Value>` (`MJob.kJobStatusCompleted`) plus Muster's own names
(`MJob.kJobTypeJob`, `MJob.kJobDependSuccess`,
`MJob.kJobsBackupRestoreActionDuplicateEntry`...). Times read as epoch
seconds (0 when unset); lists of pools and depend ids read as comma-separated
strings, as in Muster; other repeated fields as lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, ClassVar

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from muster_proto.admin.v1 import admin_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2
from muster_proto.nodes.v1 import nodes_pb2


def _camel(snake: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


def enum_constants(enum: EnumDescriptor) -> dict[str, int]:
    """`k<Enum><Value>` for every value but the UNSPECIFIED zero."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    constants = {}
    for value in enum.values:
        if value.number == 0:
            continue
        short = value.name.removeprefix(prefix)
        constants[f"k{enum.name}{_camel(short.lower())}"] = value.number
    return constants


def _to_epoch(stamp: Timestamp) -> int:
    return int(stamp.seconds)


def _set_time(stamp: Timestamp, value: Any) -> None:
    if isinstance(value, datetime):
        stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    else:
        stamp.FromSeconds(int(value))


def _split_csv(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    return [str(v) for v in value]


def _items(value: Any) -> Iterable[Any]:
    """A repeated field's new items: a comma-separated string, one number
    (`setDepends(7)`, as scripts pass a job id) or an iterable."""
    if isinstance(value, str):
        return _split_csv(value)
    if isinstance(value, int | float):
        return [value]
    return list(value)


class _Constants(type):
    """Lets type checkers see the generated `k...` class constants."""

    def __getattr__(cls, name: str) -> int:
        raise AttributeError(f"{cls.__name__} has no constant {name!r}")


class MObject(metaclass=_Constants):
    """Base of the object classes: accessors generated from the message."""

    _MESSAGE: ClassVar[type[Message]]
    # Extra accessor names (without get/set) -> field name.
    _ALIASES: ClassVar[dict[str, str]] = {}
    # Repeated fields read and written as comma-separated strings.
    _CSV_FIELDS: ClassVar[frozenset[str]] = frozenset()
    # Message-typed fields wrapped in another object class.
    _WRAP: ClassVar[dict[str, Callable[[Any], MObject]]] = {}
    _accessors: ClassVar[dict[str, str]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_MESSAGE" not in cls.__dict__:
            return
        accessors = {_camel(f.name): f.name for f in cls._MESSAGE.DESCRIPTOR.fields}
        accessors.update(cls._ALIASES)
        cls._accessors = accessors

    def __init__(self, message: Message | None = None) -> None:
        self._message: Any = message if message is not None else self._MESSAGE()

    @property
    def message(self) -> Any:
        """The underlying contract message (for code that speaks protobuf)."""
        return self._message

    def _field(self, accessor: str) -> Any:
        name = self._accessors.get(accessor)
        if name is None:
            raise AttributeError(f"{type(self).__name__} has no property {accessor!r}")
        return self._message.DESCRIPTOR.fields_by_name[name]

    def _get(self, field: FieldDescriptor) -> Any:
        value = getattr(self._message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return dict(value)
        if field.is_repeated:
            if field.name in self._CSV_FIELDS:
                return ",".join(str(v) for v in value)
            wrap = self._WRAP.get(field.name)
            return [wrap(v) for v in value] if wrap else list(value)
        if field.message_type is not None:
            if field.message_type.full_name == "google.protobuf.Timestamp":
                return _to_epoch(value)
            wrap = self._WRAP.get(field.name)
            return wrap(value) if wrap else value
        return value

    def _set(self, field: FieldDescriptor, value: Any) -> None:
        target = getattr(self._message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target.clear()
            target.update({str(k): str(v) for k, v in dict(value).items()})
        elif field.is_repeated:
            del target[:]
            items: Iterable[Any] = _items(value)
            if field.message_type is not None:
                target.extend(v.message if isinstance(v, MObject) else v for v in items)
            elif field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_INT32):
                target.extend(int(v) for v in items)
            else:
                target.extend(items)
        elif field.message_type is not None:
            if field.message_type.full_name == "google.protobuf.Timestamp":
                _set_time(target, value)
            else:
                target.CopyFrom(value.message if isinstance(value, MObject) else value)
        elif field.type == FieldDescriptor.TYPE_BOOL:
            setattr(self._message, field.name, bool(value))
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            setattr(self._message, field.name, float(value))
        elif field.type == FieldDescriptor.TYPE_STRING:
            setattr(self._message, field.name, str(value))
        else:
            setattr(self._message, field.name, int(value))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        for prefix in ("get", "set", "is"):
            if name.startswith(prefix) and len(name) > len(prefix):
                field = self._field(name[len(prefix) :])
                if prefix == "set":
                    return lambda value: self._set(field, value)
                return lambda: self._get(field)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._message == self._message

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self._message, f.name)!r}"
            for f in self._message.DESCRIPTOR.fields
            if f.name in ("id", "name", "job_id", "status") and hasattr(self._message, f.name)
        )
        return f"{type(self).__name__}({fields})"


def _add_constants(cls: type, *enums: EnumDescriptor, **aliases: int) -> None:
    for enum in enums:
        for name, value in enum_constants(enum).items():
            setattr(cls, name, value)
    for name, value in aliases.items():
        setattr(cls, name, value)


# --- jobs -----------------------------------------------------------------------

_FRAME_ATTRIBUTES = {"start_frame": "start_frame", "end_frame": "end_frame", "by_frame": "by_frame"}


class MJob(MObject):
    _MESSAGE = jobs_pb2.Job
    _ALIASES: ClassVar[dict[str, str]] = {
        "JobId": "id",
        "JobID": "id",
        "ID": "id",
        "ParentID": "parent_id",
        "JobType": "kind",
        "TemplateID": "template_id",
        "Depends": "depend_ids",
        "MaximumNodes": "max_nodes",
        "MaximumInstances": "max_nodes",
        "LogsErrorCheckType": "logs_error_check",
        "StartFrame": "start_frame",
        "EndFrame": "end_frame",
        "ByFrame": "by_frame",
        "Status": "status",
        "Paused": "paused",
        "Locked": "locked",
        "RequeuedCount": "requeue_count",
        "SubmissionTime": "submit_time",
        "JobGroup": "job_group",
        "Owner": "owner",
        "InstancesWorking": "nodes_working",
        "ChunkTimeout": "chunk_timeout_seconds",
    }
    _CSV_FIELDS = frozenset({"included_pools", "excluded_pools", "depend_ids"})

    def __init__(self, message: Message | None = None) -> None:
        super().__init__(message)
        if message is None:
            # Muster's defaults: a job at the queue root, every frame, one
            # frame per chunk.
            self._message.kind = jobs_pb2.JOB_KIND_JOB
            self._message.parent_id = -1
            self._message.by_frame = 1.0
            self._message.packet_size = 1

    # Typed attributes, keyed by name: attributeSet<Type>(name, value[, subst]).
    def _attribute(self, name: str, create: bool) -> Any:
        for attribute in self._message.attributes:
            if attribute.name == name:
                return attribute
        if not create:
            return None
        attribute = self._message.attributes.add()
        attribute.name = name
        return attribute

    def _set_attribute(self, name: str, kind: str, value: Any, substitute: bool) -> None:
        attribute = self._attribute(str(name), create=True)
        setattr(attribute, kind, value)
        attribute.substitute_paths = bool(substitute)
        if name in _FRAME_ATTRIBUTES and kind in ("double_value", "int_value"):
            setattr(self._message, _FRAME_ATTRIBUTES[name], float(value))

    def _get_attribute(self, name: str, kind: str, default: Any) -> Any:
        if name in _FRAME_ATTRIBUTES and self._attribute(name, create=False) is None:
            return getattr(self._message, _FRAME_ATTRIBUTES[name])
        attribute = self._attribute(str(name), create=False)
        if attribute is None:
            return default
        if attribute.WhichOneof("value") == kind:
            return getattr(attribute, kind)
        present = attribute.WhichOneof("value")
        return getattr(attribute, present) if present else default

    def attributeSetString(self, name: str, value: str, substitute: bool = False) -> None:
        self._set_attribute(name, "string_value", str(value), substitute)

    def attributeSetFloat(self, name: str, value: float, substitute: bool = False) -> None:
        self._set_attribute(name, "double_value", float(value), substitute)

    def attributeSetInt(self, name: str, value: int, substitute: bool = False) -> None:
        self._set_attribute(name, "int_value", int(value), substitute)

    def attributeSetBool(self, name: str, value: bool, substitute: bool = False) -> None:
        self._set_attribute(name, "bool_value", bool(value), substitute)

    def attributeGetString(self, name: str) -> str:
        return str(self._get_attribute(name, "string_value", ""))

    def attributeGetFloat(self, name: str) -> float:
        return float(self._get_attribute(name, "double_value", 0.0))

    def attributeGetInt(self, name: str) -> int:
        return int(self._get_attribute(name, "int_value", 0))

    def attributeGetBool(self, name: str) -> bool:
        return bool(self._get_attribute(name, "bool_value", False))

    def attributeGetSubst(self, name: str) -> bool:
        attribute = self._attribute(str(name), create=False)
        return bool(attribute and attribute.substitute_paths)

    def attributeRemove(self, name: str) -> None:
        kept = [a for a in self._message.attributes if a.name != name]
        del self._message.attributes[:]
        self._message.attributes.extend(kept)

    def attributeList(self) -> list[str]:
        return [a.name for a in self._message.attributes]


_add_constants(
    MJob,
    jobs_pb2.JobKind.DESCRIPTOR,
    jobs_pb2.JobStatus.DESCRIPTOR,
    jobs_pb2.PacketType.DESCRIPTOR,
    jobs_pb2.DependMode.DESCRIPTOR,
    jobs_pb2.LogsErrorCheck.DESCRIPTOR,
    jobs_pb2.BackupOverwriteMode.DESCRIPTOR,
    jobs_pb2.RestoreActionFlag.DESCRIPTOR,
    kJobTypeJob=jobs_pb2.JOB_KIND_JOB,
    kJobTypeFolder=jobs_pb2.JOB_KIND_FOLDER,
    kJobDependSuccess=jobs_pb2.DEPEND_MODE_SUCCESS,
    kJobDependComplete=jobs_pb2.DEPEND_MODE_COMPLETION,
    kJobDependCompletion=jobs_pb2.DEPEND_MODE_COMPLETION,
    kCheckAll=jobs_pb2.LOGS_ERROR_CHECK_ALL,
    kSkipWarnings=jobs_pb2.LOGS_ERROR_CHECK_SKIP_WARNINGS,
    kSkipAll=jobs_pb2.LOGS_ERROR_CHECK_SKIP_ALL,
    kPacketTypeFrames=jobs_pb2.PACKET_TYPE_FRAMES,
    kJobsBackupRestoreActionDuplicateEntry=jobs_pb2.RESTORE_ACTION_FLAG_DUPLICATE_ENTRY,
    kJobsBackupRestoreActionRestoreParents=jobs_pb2.RESTORE_ACTION_FLAG_RESTORE_PARENTS,
    kJobsBackupRestoreActionRemoveBackup=jobs_pb2.RESTORE_ACTION_FLAG_REMOVE_BACKUP,
    kJobsBackupOverwriteReplace=jobs_pb2.BACKUP_OVERWRITE_MODE_REPLACE,
    kJobsBackupOverwriteKeepBoth=jobs_pb2.BACKUP_OVERWRITE_MODE_KEEP_BOTH,
    kJobsBackupOverwriteFail=jobs_pb2.BACKUP_OVERWRITE_MODE_FAIL,
)


class MChunk(MObject):
    _MESSAGE = jobs_pb2.Chunk
    _ALIASES: ClassVar[dict[str, str]] = {"ChunkId": "id", "ChunkID": "id", "JobID": "job_id"}


_add_constants(MChunk, jobs_pb2.ChunkStatus.DESCRIPTOR)


class MHistoryChunk(MObject):
    _MESSAGE = jobs_pb2.ChunkRun
    _ALIASES: ClassVar[dict[str, str]] = {"ChunkID": "chunk_id", "JobID": "job_id"}


_add_constants(MHistoryChunk, common_pb2.ChunkRunOutcome.DESCRIPTOR)


class MTemplate(MObject):
    _MESSAGE = jobs_pb2.Template
    _ALIASES: ClassVar[dict[str, str]] = {"TemplateId": "id", "TemplateID": "id"}


class MBackupJob(MObject):
    _MESSAGE = jobs_pb2.BackupJob
    _WRAP: ClassVar[dict[str, Callable[[Any], MObject]]] = {"job": MJob}


class MBackupQuery(MObject):
    _MESSAGE = jobs_pb2.BackupQuery


class MBackupQueryBoundaries(MObject):
    _MESSAGE = jobs_pb2.BackupBoundaries
    _ALIASES: ClassVar[dict[str, str]] = {
        "JobsCount": "jobs_count",
        "StartTime": "first_backup_time",
        "EndTime": "last_backup_time",
    }

    def _fill(self, message: jobs_pb2.BackupBoundaries) -> None:
        self._message.CopyFrom(message)


# --- nodes and clients ---------------------------------------------------------------


class MNode(MObject):
    _MESSAGE = nodes_pb2.Node
    _ALIASES: ClassVar[dict[str, str]] = {"NodeId": "id", "NodeID": "id", "HostName": "host_name"}
    _CSV_FIELDS = frozenset({"pools"})


_add_constants(
    MNode,
    nodes_pb2.NodeStatus.DESCRIPTOR,
    common_pb2.Platform.DESCRIPTOR,
    common_pb2.ProcessPriority.DESCRIPTOR,
    common_pb2.SystemEvent.DESCRIPTOR,
)


class MClient(MObject):
    _MESSAGE = nodes_pb2.ConsoleClient
    _ALIASES: ClassVar[dict[str, str]] = {"ClientId": "id", "Username": "user_name"}


class MNClient(MObject):
    _MESSAGE = nodes_pb2.NotificatorClient
    _ALIASES: ClassVar[dict[str, str]] = {"ClientId": "id", "Username": "user_name"}


# --- admin ----------------------------------------------------------------------------


class MUser(MObject):
    _MESSAGE = admin_pb2.User
    _ALIASES: ClassVar[dict[str, str]] = {"Username": "name", "UserName": "name"}


_add_constants(MUser, admin_pb2.UserRole.DESCRIPTOR)


class MGroup(MObject):
    _MESSAGE = admin_pb2.Group


class MPool(MObject):
    _MESSAGE = admin_pb2.Pool
    _ALIASES: ClassVar[dict[str, str]] = {"Nodes": "node_names"}


class MRepository(MObject):
    _MESSAGE = admin_pb2.Repository


class MDispatcherConfiguration(MObject):
    _MESSAGE = admin_pb2.DispatcherConfiguration


_add_constants(
    MDispatcherConfiguration,
    admin_pb2.InstanceIdentity.DESCRIPTOR,
    admin_pb2.CompletedJobPolicy.DESCRIPTOR,
    admin_pb2.EngineStatus.DESCRIPTOR,
)


class MLDAPConfiguration(MObject):
    _MESSAGE = admin_pb2.LdapConfiguration


class MStringRef:
    """An out-parameter holding a string (dbExportQueueSQL fills one)."""

    def __init__(self, value: str = "") -> None:
        self._value = value

    def setString(self, value: str) -> None:
        self._value = str(value)

    def getString(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"MStringRef({len(self._value)} characters)"
