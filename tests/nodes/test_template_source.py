"""AgentService.GetTemplateSource: an enrolled agent fetches one version of a
template's code; anything else is answered with a precise status."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import insert

from muster_proto.agent.v1 import agent_pb2, agent_pb2_grpc
from muster_services.core.database import Database
from muster_services.jobs.tables import template_versions, templates
from tests.support import InProcessServer, agent_auth, auth

SOURCE = "print('the studio template')\n"


def insert_template(db: Database, template_id: int = 1701, version: str = "abc123") -> None:
    with db.transaction() as session:
        session.execute(
            insert(templates).values(
                id=template_id, name=f"studio {template_id}", version=version, file_path="s.py"
            )
        )
        session.execute(
            insert(template_versions).values(
                template_id=template_id, version=version, source=SOURCE, file_path="/t/s.py"
            )
        )


def test_an_agent_gets_the_source_of_a_version(db: Database, channel: grpc.Channel) -> None:
    insert_template(db)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    answer = stub.GetTemplateSource(
        agent_pb2.GetTemplateSourceRequest(template_id=1701, version="abc123"),
        metadata=agent_auth("node-a"),
    )
    assert (answer.template_id, answer.version, answer.source, answer.file_name) == (
        1701,
        "abc123",
        SOURCE,
        "/t/s.py",
    )


@pytest.mark.parametrize(
    ("template_id", "version", "code"),
    [
        (1701, "other", grpc.StatusCode.NOT_FOUND),
        (9999, "abc123", grpc.StatusCode.NOT_FOUND),
        (0, "abc123", grpc.StatusCode.INVALID_ARGUMENT),
        (-3, "abc123", grpc.StatusCode.INVALID_ARGUMENT),
        (1701, "", grpc.StatusCode.INVALID_ARGUMENT),
        (1701, "x" * 200, grpc.StatusCode.INVALID_ARGUMENT),
        (1701, "bad\nversion", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_unknown_or_bad_requests_get_precise_statuses(
    db: Database, channel: grpc.Channel, template_id: int, version: str, code: grpc.StatusCode
) -> None:
    insert_template(db)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    with pytest.raises(grpc.RpcError) as failed:
        stub.GetTemplateSource(
            agent_pb2.GetTemplateSourceRequest(template_id=template_id, version=version),
            metadata=agent_auth("node-a"),
        )
    assert failed.value.code() == code, failed.value.details()
    assert failed.value.details()


def test_only_an_enrolled_agent_may_fetch_template_code(
    db: Database, nodes_server: InProcessServer
) -> None:
    insert_template(db)
    request = agent_pb2.GetTemplateSourceRequest(template_id=1701, version="abc123")
    with grpc.insecure_channel(nodes_server.address) as bare:
        stub = agent_pb2_grpc.AgentServiceStub(bare)
        with pytest.raises(grpc.RpcError) as failed:
            stub.GetTemplateSource(request)
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # A user token (even an administrator's) is not an agent's.
        with pytest.raises(grpc.RpcError) as failed:
            stub.GetTemplateSource(request, metadata=auth())
        assert failed.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert stub.GetTemplateSource(request, metadata=agent_auth("node-b")).source == SOURCE
