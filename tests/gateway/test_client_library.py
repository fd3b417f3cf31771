"""MClientAPI's client-library calls against an in-process dispatcher: the
session's own rules (order of calls, its own login, any context) and the
address map. The whole submitter as its own process, rendering on agents, is
tests/e2e/test_client_library.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import MClientAPI
import MDispatcherAPI
import pytest
from grpc_health.v1 import health_pb2

from muster_gateway import client_library, context, errors
from muster_proto.common.v1 import common_pb2
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID

USER, PASSWORD = "submitter", "s3cret-pass"


@pytest.fixture
def address(dispatcher: str) -> Iterator[str]:
    """The dispatcher's address, with a user that logs in with a password."""
    user = MClientAPI.MUser()
    user.setName(USER)
    user.setPassword(PASSWORD)
    user.setRole(MClientAPI.MUser.kUserRoleUser)
    user.setEnabled(True)
    err = MDispatcherAPI.userAdd(user)
    assert err.getErrorCode() in (errors.kErrorNone, errors.kErrorAlreadyExists), err
    yield dispatcher


def _code(err: MClientAPI.MUSTERERR) -> int:
    return err.getErrorCode()


def _queued_job(name: str) -> MClientAPI.MJob:
    job = MClientAPI.MJob()
    job.setName(name)
    job.setTemplateID(COMMAND_LINE_TEMPLATE_ID)
    job.attributeSetString("executable", "/bin/true")
    job.setIncludedPools("nowhere")  # stays queued: no agent here
    return job


def test_calls_in_the_wrong_order_are_errors_and_change_nothing(address: str) -> None:
    host, port = address.rsplit(":", 1)
    session = MClientAPI.InitializeSession()
    job = _queued_job("too early")
    early = errors.kErrorFailedPrecondition
    assert _code(MClientAPI.Authenticate(session, USER, PASSWORD)) == early
    assert _code(MClientAPI.ActionSendJob(session, job)) == errors.kErrorFailedPrecondition
    assert _code(MClientAPI.Disconnect(session)) == errors.kErrorFailedPrecondition
    assert _code(MClientAPI.Connect(session, host, int(port))) == 0
    refused = MClientAPI.ActionSendJob(session, job)
    assert _code(refused) == errors.kErrorUnauthenticated
    assert "Authenticate" in refused.getDescription()
    assert job.getJobId() == 0
    # A failed login leaves the session as it was (connected, nobody).
    assert _code(MClientAPI.Authenticate(session, USER, "wrong")) == errors.kErrorUnauthenticated
    assert _code(MClientAPI.Authenticate(session, USER, "")) == errors.kErrorBadArguments
    assert _code(MClientAPI.ActionSendJob(session, job)) == errors.kErrorUnauthenticated
    assert _code(MClientAPI.Authenticate(session, USER, PASSWORD)) == 0
    bad = MClientAPI.ActionSendJob(session, "not a job")
    assert _code(bad) == errors.kErrorBadArguments
    assert bad.getDescription().startswith("ActionSendJob: ")
    assert _code(MClientAPI.Disconnect(session)) == 0
    assert _code(MClientAPI.Disconnect(session)) == errors.kErrorFailedPrecondition
    for wrong in ((None, host, 1), (session, 5, 1), (session, host, 0), (session, " ", 1)):
        assert _code(MClientAPI.Connect(*wrong)) == errors.kErrorBadArguments, wrong
    assert _code(MClientAPI.InitializeLibrary(None)) == errors.kErrorBadArguments


def test_a_session_acts_as_its_own_user_in_any_context(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = address.rsplit(":", 1)
    # Code a node runs (a template callback) may submit through a session;
    # the process' own login (an administrator's token here) is not used.
    monkeypatch.setenv(context.CONTEXT_VARIABLE, "renderclient")
    session = MClientAPI.InitializeSession()
    assert _code(MClientAPI.Connect(session, host, int(port))) == 0
    assert _code(MClientAPI.Authenticate(session, USER, PASSWORD)) == 0
    job = _queued_job("from a node")
    assert _code(MClientAPI.ActionSendJob(session, job)) == 0
    job_id = job.getJobId()
    assert job_id > 0
    assert _code(MDispatcherAPI.jobGet(job_id)[0]) == errors.kErrorWrongContext
    monkeypatch.setenv(context.CONTEXT_VARIABLE, "console")
    err, stored = MDispatcherAPI.jobGet(job_id)
    assert _code(err) == 0 and stored is not None
    assert (stored.getName(), stored.getOwner()) == ("from a node", USER)
    # Reconnecting a connected session starts it again: nobody logged in.
    assert _code(MClientAPI.Connect(session, host, int(port))) == 0
    again = MClientAPI.ActionSendJob(session, _queued_job("x"))
    assert _code(again) == errors.kErrorUnauthenticated
    assert _code(MClientAPI.Disconnect(session)) == 0
    assert _code(MDispatcherAPI.jobDelete(job_id)) == 0


def test_the_address_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        client_library.ADDRESS_MAP_VARIABLE,
        " OldFarm:9781=127.0.0.1:50051 , *:9881=farm.example:50051,[::1]:7000=127.0.0.1:7001",
    )
    where = client_library.dispatcher_address
    assert where("oldfarm", 9781) == "127.0.0.1:50051"
    assert where("anything", 9881) == "farm.example:50051"
    assert where("::1", 7000) == "127.0.0.1:7001"
    assert where("elsewhere", 9781) is None  # a Muster port: the configured dispatcher
    assert where("farm", 50051) == "farm:50051"
    assert where("::1", 50051) == "[::1]:50051"
    monkeypatch.setenv(client_library.ADDRESS_MAP_VARIABLE, "oldfarm:9781=nowhere")
    err = MClientAPI.Connect(MClientAPI.InitializeSession(), "oldfarm", 9781)
    assert _code(err) == errors.kErrorNotConfigured
    assert "'oldfarm:9781=nowhere'" in err.getDescription()


def test_get_platform_answers_this_machines_platform_constant() -> None:
    expected = {"linux": MClientAPI.kPlatformLinux, "darwin": MClientAPI.kPlatformMac}
    platform = MClientAPI.GetPlatform()
    assert platform == expected.get(sys.platform, MClientAPI.kPlatformWindows)
    # The numbers of farm.common.v1.Platform, which nodes report.
    assert (MClientAPI.kPlatformWindows, MClientAPI.kPlatformLinux, MClientAPI.kPlatformMac) == (
        common_pb2.PLATFORM_WINDOWS,
        common_pb2.PLATFORM_LINUX,
        common_pb2.PLATFORM_MACOS,
    )


@pytest.mark.parametrize(
    "status",
    [
        health_pb2.HealthCheckResponse.UNKNOWN,
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
        health_pb2.HealthCheckResponse.SERVICE_UNKNOWN,
    ],
)
def test_the_health_answer_is_read_without_grpc_health(status: int) -> None:
    """Connect reads the health service's answer with its own decoder (the
    client needs only grpcio and protobuf): it agrees with grpc_health's."""
    answer = health_pb2.HealthCheckResponse(status=status).SerializeToString()
    assert client_library._health_status(answer) == status


def test_a_health_answer_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError):
        client_library._health_status(b"\x0a\x02ab")  # field 1 as a string
    with pytest.raises(ValueError):
        client_library._health_status(b"\x08")  # truncated
