"""Limits every request meets before a service sees it.

The server applies them to each request (ErrorMappingInterceptor), so they
hold for every RPC, present and future, whatever its service checks:

- A request is at most MAX_MESSAGE_BYTES on the wire (muster_services/core/server.py,
  the gRPC server's max_receive_message_length): larger ones are
  RESOURCE_EXHAUSTED before any code of ours runs.
- No string field holds NUL (U+0000): PostgreSQL text cannot store it, and
  no Muster field means anything with it. Render output (LogLine.text) is
  the exception: the jobs service strips NUL from stored log lines.
- No string field is longer than MAX_STRING_CHARS, except the fields in
  LONG_TEXT_FIELDS, whose service sets its own limit (the queue import).

The messages of a client stream (the agent session) are not seen here: the
service reading the stream checks them.

Each refusal is INVALID_ARGUMENT naming the field, e.g.
`job.notes: must not contain NUL characters`. Services keep their own,
tighter, per-field limits (docs/jobs.md, docs/admin.md).
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from muster_services.core.errors import InvalidArgument

MAX_STRING_CHARS = 1024 * 1024
LONG_TEXT_FIELDS = frozenset({"farm.jobs.v1.ImportQueueSqlRequest.sql"})
NUL_TOLERANT_FIELDS = frozenset({"farm.common.v1.LogLine.text"})


def check_request(request: object) -> None:
    """Raise InvalidArgument for the first string field breaking the limits
    (a client stream's iterator passes: its messages are its service's)."""
    if isinstance(request, Message):
        _check_message(request, "")


def _message_type(field: FieldDescriptor) -> Descriptor:
    kind = field.message_type
    assert kind is not None  # a message field always has its type
    return kind


def _check_message(message: Message, prefix: str) -> None:
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if _message_type(field).GetOptions().map_entry:
                _check_map(field, value, path)
            elif field.is_repeated:
                for index, item in enumerate(value):
                    _check_message(item, f"{path}[{index}].")
            else:
                _check_message(value, path + ".")
        elif field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                for index, item in enumerate(value):
                    _check_string(field, item, f"{path}[{index}]")
            else:
                _check_string(field, value, path)


def _check_map(field: FieldDescriptor, value: object, path: str) -> None:
    key_field = _message_type(field).fields_by_name["key"]
    value_field = _message_type(field).fields_by_name["value"]
    for key, item in value.items():  # type: ignore[attr-defined]
        where = f"{path}[{key!r}]"
        if key_field.type == FieldDescriptor.TYPE_STRING:
            _check_string(key_field, key, f"{path} key {key[:40]!r}")
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            _check_message(item, where + ".")
        elif value_field.type == FieldDescriptor.TYPE_STRING:
            _check_string(value_field, item, where)


def _check_string(field: FieldDescriptor, value: str, path: str) -> None:
    if len(value) > MAX_STRING_CHARS and field.full_name not in LONG_TEXT_FIELDS:
        raise InvalidArgument(
            f"{path}: at most {MAX_STRING_CHARS} characters in any request text, got {len(value)}"
        )
    if "\x00" in value and field.full_name not in NUL_TOLERANT_FIELDS:
        raise InvalidArgument(f"{path}: must not contain NUL characters")
