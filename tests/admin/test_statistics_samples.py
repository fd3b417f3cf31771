"""ListStatisticsSamples (the dashboard's charts): a time range, oldest first,
paged; bad requests refused with INVALID_ARGUMENT."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import insert

from muster_proto.admin.v1 import admin_pb2 as pb
from muster_proto.admin.v1.admin_pb2_grpc import AdminServiceStub
from muster_services.admin.tables import statistics_samples
from muster_services.core.database import Database

pytestmark = pytest.mark.database


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def listed(stub: AdminServiceStub, request: pb.ListStatisticsSamplesRequest) -> list[int]:
    """nodes_total of every sample the request's pages give, page after page."""
    found: list[int] = []
    while True:
        reply = stub.ListStatisticsSamples(request)
        found += [s.nodes_total for s in reply.samples]
        if not reply.next_page_token:
            return found
        request.page_token = reply.next_page_token


def test_samples_of_a_range_oldest_first_page_by_page(stub: AdminServiceStub, db: Database) -> None:
    days = [1, 2, 3, 4, 5]
    with db.transaction() as session:
        session.execute(
            insert(statistics_samples),
            [
                {
                    "sampled_at": datetime(2026, 1, d, tzinfo=UTC),
                    "counters": {"nodes_total": d, "chunks_running": 10 * d, "jobs_other": 1},
                }
                for d in days
            ],
        )
    reply = stub.ListStatisticsSamples(pb.ListStatisticsSamplesRequest())
    assert [s.nodes_total for s in reply.samples] == [1, 2, 3, 4, 5]
    assert reply.samples[2].chunks_running == 30
    assert reply.samples[0].sample_time.ToDatetime(UTC) == datetime(2026, 1, 1, tzinfo=UTC)

    ranged = pb.ListStatisticsSamplesRequest(page_size=1)
    ranged.time_range.start_time.CopyFrom(stamp(datetime(2026, 1, 2, tzinfo=UTC)))
    ranged.time_range.end_time.CopyFrom(stamp(datetime(2026, 1, 4, tzinfo=UTC)))
    assert listed(stub, ranged) == [2, 3, 4]
    open_end = pb.ListStatisticsSamplesRequest(page_size=2)
    open_end.time_range.start_time.CopyFrom(stamp(datetime(2026, 1, 4, tzinfo=UTC)))
    assert listed(stub, open_end) == [4, 5]


def test_bad_requests_are_refused(stub: AdminServiceStub) -> None:
    inverted = pb.ListStatisticsSamplesRequest()
    inverted.time_range.start_time.CopyFrom(stamp(datetime(2026, 1, 3, tzinfo=UTC)))
    inverted.time_range.end_time.CopyFrom(stamp(datetime(2026, 1, 2, tzinfo=UTC)))
    for request, word in (
        (inverted, "after"),
        (pb.ListStatisticsSamplesRequest(page_size=-1), "page_size"),
        (pb.ListStatisticsSamplesRequest(page_token="garbage"), "page_token"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListStatisticsSamples(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert word in (refused.value.details() or "")
