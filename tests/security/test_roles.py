"""Roles against the real services: plain users, administrators, agents, services.

One dispatcher (every service) in process; callers carry tokens for the
names and roles each test needs, signed with the test database's key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.agent.v1 import agent_pb2, agent_pb2_grpc
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import chunk_runs_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services import app
from muster_services.core.database import Database
from muster_services.core.permissions import POLICY, Access
from muster_services.core.settings import Settings
from tests.jobs.conftest import a_job
from tests.support import (
    TEST_ENROLLMENT_SECRET,
    InProcessServer,
    agent_auth,
    auth,
)

STUBS: dict[str, Any] = {
    "farm.jobs.v1.JobsService": jobs_pb2_grpc.JobsServiceStub,
    "farm.jobs.v1.ChunkRunsService": chunk_runs_pb2_grpc.ChunkRunsServiceStub,
    "farm.nodes.v1.NodesService": nodes_pb2_grpc.NodesServiceStub,
    "farm.nodes.v1.ClientsService": nodes_pb2_grpc.ClientsServiceStub,
    "farm.agent.v1.AgentService": agent_pb2_grpc.AgentServiceStub,
    "farm.admin.v1.AdminService": admin_pb2_grpc.AdminServiceStub,
}
# Tables whose content a refused call must leave as it was.
AUDITED_TABLES = (
    "jobs",
    "chunks",
    "users",
    "groups",
    "pools",
    "repositories",
    "nodes",
    "dispatcher_config",
    "ldap_config",
    "engine_state",
    "log_messages",
)


@pytest.fixture
def farm(db: Database) -> Iterator[InProcessServer]:
    components = app.build_components(list(app.SERVICE_NAMES), db, Settings())
    with InProcessServer(components) as server:
        yield server


@pytest.fixture
def channel(farm: InProcessServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(farm.address) as ch:
        yield ch


def _snapshot(db: Database) -> dict[str, Any]:
    with db.read() as session:
        return {
            table: session.execute(
                text(
                    "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    f" FROM {table} t"
                )
            ).scalar_one()
            for table in AUDITED_TABLES
        }


def _request_of(service: str, rpc: str) -> tuple[Any, Any]:
    stub_class = STUBS[service]
    from google.protobuf import descriptor_pool, message_factory

    found = descriptor_pool.Default().FindServiceByName(service)
    descriptor = found.methods_by_name[rpc]
    request_class = message_factory.GetMessageClass(descriptor.input_type)
    return stub_class, (descriptor, request_class())


def _call(channel: grpc.Channel, service: str, rpc: str, metadata: Any) -> grpc.StatusCode:
    stub_class, (descriptor, request) = _request_of(service, rpc)
    method = getattr(stub_class(channel), rpc)
    try:
        if descriptor.client_streaming:
            responses = method(iter([request]), metadata=metadata, timeout=10)
            list(responses) if descriptor.server_streaming else None
        elif descriptor.server_streaming:
            next(iter(method(request, metadata=metadata, timeout=10)))
        else:
            method(request, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


LINUX = common_pb2.PLATFORM_LINUX
ADMIN_ONLY = sorted(
    (service, rpc)
    for service, rpcs in POLICY.items()
    for rpc, access in rpcs.items()
    if access in (Access.ADMIN, Access.SERVICE)
)


def test_every_administrator_only_call_by_a_plain_user_is_denied_and_changes_nothing(
    channel: grpc.Channel, db: Database
) -> None:
    jobs = jobs_pb2_grpc.JobsServiceStub(channel)
    jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=a_job(owner="bob")), metadata=auth("bob", "user"))
    before = _snapshot(db)
    codes = {
        f"{service.rsplit('.', 1)[-1]}.{rpc}": _call(channel, service, rpc, auth("bob", "user"))
        for service, rpc in ADMIN_ONLY
    }
    assert len(codes) > 50
    assert {
        name: code for name, code in codes.items() if code != grpc.StatusCode.PERMISSION_DENIED
    } == {}
    assert _snapshot(db) == before


def test_agent_tokens_open_only_the_agent_protocol(channel: grpc.Channel) -> None:
    token = agent_auth("render-01")
    for service, rpcs in POLICY.items():
        for rpc, access in rpcs.items():
            if access in (Access.PUBLIC, Access.AGENT):
                continue
            assert _call(channel, service, rpc, token) == grpc.StatusCode.PERMISSION_DENIED, rpc


def test_an_agent_token_cannot_register_another_node(channel: grpc.Channel) -> None:
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    register = agent_pb2.SessionRequest(
        register=agent_pb2.Register(
            host_name="render-02", instance_number=0, cpu_cores=1, platform=LINUX
        )
    )
    with pytest.raises(grpc.RpcError) as error:
        list(stub.Session(iter([register]), metadata=agent_auth("render-01"), timeout=10))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "render-01" in (error.value.details() or "")


def test_enrollment_needs_the_farm_secret_and_binds_the_token_to_the_node(
    channel: grpc.Channel,
) -> None:
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    with pytest.raises(grpc.RpcError) as wrong:
        stub.Enroll(agent_pb2.EnrollRequest(enrollment_secret="guess", host_name="render-09"))
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as empty:
        stub.Enroll(agent_pb2.EnrollRequest(enrollment_secret=TEST_ENROLLMENT_SECRET))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    enrolled = stub.Enroll(
        agent_pb2.EnrollRequest(enrollment_secret=TEST_ENROLLMENT_SECRET, host_name="render-09")
    )
    metadata = (("authorization", f"Bearer {enrolled.token}"),)
    register = agent_pb2.SessionRequest(
        register=agent_pb2.Register(
            host_name="render-09", instance_number=0, cpu_cores=1, platform=LINUX
        )
    )
    first = next(iter(stub.Session(iter([register]), metadata=metadata, timeout=10)))
    assert first.WhichOneof("message") == "register_accepted"
    nodes = nodes_pb2_grpc.NodesServiceStub(channel)
    with pytest.raises(grpc.RpcError) as denied:
        nodes.ListNodes(nodes_pb2.ListNodesRequest(), metadata=metadata)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _submit(jobs: Any, owner: str) -> int:
    reply = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=a_job(owner=owner)), metadata=auth(owner, "user")
    )
    return int(reply.job.id)


def test_a_user_changes_only_their_own_jobs(channel: grpc.Channel, db: Database) -> None:
    jobs = jobs_pb2_grpc.JobsServiceStub(channel)
    alice_job = _submit(jobs, "alice")
    bob = auth("bob", "user")
    before = _snapshot(db)
    attempts: dict[str, Callable[[], Any]] = {
        "UpdateJob": lambda: jobs.UpdateJob(
            jobs_pb2.UpdateJobRequest(job=jobs_pb2.Job(id=alice_job, priority=99)), metadata=bob
        ),
        "ReinitJob": lambda: jobs.ReinitJob(
            jobs_pb2.ReinitJobRequest(job_id=alice_job), metadata=bob
        ),
        "DeleteJob": lambda: jobs.DeleteJob(
            jobs_pb2.DeleteJobRequest(job_id=alice_job), metadata=bob
        ),
        "MoveJob": lambda: jobs.MoveJob(
            jobs_pb2.MoveJobRequest(job_id=alice_job, new_parent_id=-1), metadata=bob
        ),
        "ArchiveJob": lambda: jobs.ArchiveJob(
            jobs_pb2.ArchiveJobRequest(
                job_id=alice_job, overwrite_mode=jobs_pb2.BACKUP_OVERWRITE_MODE_REPLACE
            ),
            metadata=bob,
        ),
        "SetChunkStatus": lambda: jobs.SetChunkStatus(
            jobs_pb2.SetChunkStatusRequest(
                job_id=alice_job, chunk_id=1, status=jobs_pb2.CHUNK_STATUS_COMPLETED
            ),
            metadata=bob,
        ),
        "KillJobProcesses": lambda: nodes_pb2_grpc.NodesServiceStub(channel).KillJobProcesses(
            nodes_pb2.KillJobProcessesRequest(
                job_id=alice_job, follow_up=common_pb2.KILL_FOLLOW_UP_PAUSE
            ),
            metadata=bob,
        ),
        "SubmitJob as alice": lambda: jobs.SubmitJob(
            jobs_pb2.SubmitJobRequest(job=a_job(owner="alice")), metadata=bob
        ),
    }
    for name, attempt in attempts.items():
        with pytest.raises(grpc.RpcError) as error:
            attempt()
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
        assert "alice" in (error.value.details() or ""), name
    assert _snapshot(db) == before
    # Alice may, and so may an administrator.
    jobs.ReinitJob(jobs_pb2.ReinitJobRequest(job_id=alice_job), metadata=auth("alice", "user"))
    jobs.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=alice_job), metadata=auth("root"))
    # A user's job without an owner is theirs.
    mine = jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(job=a_job(owner="")), metadata=auth("carol", "user")
    )
    assert mine.job.owner == "carol"


def test_refusals_are_written_to_the_action_log(channel: grpc.Channel) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    with pytest.raises(grpc.RpcError):
        admin.CreatePool(
            admin_pb2.CreatePoolRequest(pool=admin_pb2.Pool(name="gpu")),
            metadata=auth("mallory", "user"),
        )
    with pytest.raises(grpc.RpcError):
        admin.ListUsers(admin_pb2.ListUsersRequest())
    deadline = time.monotonic() + 30
    lines: list[str] = []
    while time.monotonic() < deadline:
        files = admin.ListActionLogs(admin_pb2.ListActionLogsRequest(), metadata=auth()).log_files
        if files:
            content = admin.GetActionLog(
                admin_pb2.GetActionLogRequest(name=files[0].name), metadata=auth()
            ).content
            lines = content.splitlines()
            if any("mallory" in line for line in lines) and any(
                "anonymous" in line for line in lines
            ):
                break
        time.sleep(0.3)
    denied = next(line for line in lines if "mallory" in line)
    assert "AdminService.CreatePool" in denied and "denied PERMISSION_DENIED" in denied
    assert "ipv4:127.0.0.1:" in denied
    anonymous = next(line for line in lines if "anonymous" in line)
    assert "AdminService.ListUsers" in anonymous and "UNAUTHENTICATED" in anonymous


def test_internal_log_messages_are_hidden_from_plain_users(channel: grpc.Channel) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    admin.AddInternalLogEntry(
        admin_pb2.AddInternalLogEntryRequest(message="secret diagnostics"), metadata=auth()
    )
    admin.AddLogEntry(admin_pb2.AddLogEntryRequest(message="hello"), metadata=auth("bob", "user"))

    def messages(metadata: Any) -> list[str]:
        reply = admin.ListLogEntries(
            admin_pb2.ListLogEntriesRequest(include_internal=True), metadata=metadata
        )
        return [e.message for e in reply.log_entries]

    assert "secret diagnostics" in messages(auth())
    assert "secret diagnostics" not in messages(auth("bob", "user"))
    assert "hello" in messages(auth("bob", "user"))
