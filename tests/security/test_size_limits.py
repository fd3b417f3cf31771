"""Messages above the documented size limits (docs/security.md): refused
with RESOURCE_EXHAUSTED or INVALID_ARGUMENT naming the field, and every
service still serves afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from muster_proto.admin.v1 import admin_pb2
from muster_proto.admin.v1.admin_pb2_grpc import AdminServiceStub
from muster_proto.jobs.v1 import jobs_pb2
from muster_proto.jobs.v1.jobs_pb2_grpc import JobsServiceStub
from muster_proto.nodes.v1 import nodes_pb2
from muster_proto.nodes.v1.nodes_pb2_grpc import NodesServiceStub
from muster_services.admin.domain import MAX_LOG_MESSAGE
from muster_services.core.database import Database
from muster_services.core.requests import MAX_STRING_CHARS
from muster_services.core.server import MAX_MESSAGE_BYTES
from muster_services.jobs.domain import MAX_NOTES_LENGTH
from tests.security.audit import audit
from tests.security.fuzz import FUZZ_PLAN
from tests.support import health_status

pytestmark = pytest.mark.database


def _calls(channel: grpc.Channel, text: str) -> dict[str, Callable[[], Any]]:
    """One text-carrying call of each service, with `text` in its text field."""
    jobs, nodes, admin = (
        JobsServiceStub(channel),
        NodesServiceStub(channel),
        AdminServiceStub(channel),
    )
    return {
        "job.notes": lambda: jobs.UpdateJob(
            jobs_pb2.UpdateJobRequest(
                job=jobs_pb2.Job(id=2, notes=text), update_mask=FieldMask(paths=["notes"])
            ),
            timeout=60,
        ),
        "name": lambda: nodes.FindNode(nodes_pb2.FindNodeRequest(name=text), timeout=60),
        "message": lambda: admin.AddLogEntry(
            admin_pb2.AddLogEntryRequest(message=text), timeout=60
        ),
    }


def _refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), str(error.value.details())


def _serving(channel: grpc.Channel) -> None:
    for name in [*FUZZ_PLAN, ""]:
        assert health_status(channel, name) == "SERVING", name


def test_requests_above_the_request_limit_are_resource_exhausted(
    seeded: grpc.Channel, stack_db: Database
) -> None:
    channel = seeded
    for field, call in _calls(channel, "x" * (MAX_MESSAGE_BYTES + 1)).items():
        code, details = _refused(call)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (field, details)
    _serving(channel)
    assert audit(stack_db) == {}


def test_texts_above_the_text_limit_are_invalid_argument_naming_the_field(
    seeded: grpc.Channel,
) -> None:
    channel = seeded
    for field, call in _calls(channel, "é" * (MAX_STRING_CHARS + 1)).items():
        code, details = _refused(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (field, details)
        assert details.startswith(field + ":"), details
    _serving(channel)


def test_nul_in_any_text_is_invalid_argument_naming_the_field(seeded: grpc.Channel) -> None:
    channel = seeded
    for field, call in _calls(channel, "a\x00b").items():
        code, details = _refused(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (field, details)
        assert details == f"{field}: must not contain NUL characters", details


@pytest.mark.parametrize(
    ("field", "limit"),
    [("job.notes", MAX_NOTES_LENGTH), ("message", MAX_LOG_MESSAGE)],
    ids=["notes", "log"],
)
def test_service_text_limits_below_the_request_limit(
    seeded: grpc.Channel, field: str, limit: int
) -> None:
    """The services' own limits (docs/jobs.md, docs/admin.md) hold below the generic one."""
    code, details = _refused(_calls(seeded, "y" * (limit + 1))[field])
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith(field), details
