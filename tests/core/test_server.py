"""The server bootstrap: contract fallbacks, error mapping, graceful stop."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import grpc
import grpc.aio
import pytest
from psycopg.errors import DeadlockDetected
from sqlalchemy.exc import OperationalError

from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_services.core.auth import Security
from muster_services.core.errors import InvalidArgument, NotFound
from muster_services.core.server import (
    GC_THRESHOLD,
    RETRIES,
    Component,
    DispatcherServer,
    contract_base,
)
from muster_services.jobs.component import JOBS_SERVICE
from tests.support import TEST_SIGNER, auth


class ProbeJobsServicer(contract_base(jobs_pb2_grpc.JobsServiceServicer, JOBS_SERVICE)):  # type: ignore[misc]
    """A servicer with a few behaviours the bootstrap must handle."""

    attempts = 0

    def GetJob(self, request: jobs_pb2.GetJobRequest, context: Any) -> jobs_pb2.GetJobResponse:
        if request.job_id < 0:
            raise InvalidArgument("job_id must be >= 0")
        if request.job_id == 404:
            raise NotFound("job 404 does not exist")
        if request.job_id == 500:
            raise RuntimeError("a bug, with secrets in its message")
        if request.job_id in (408, 409):
            type(self).attempts += 1
            if request.job_id == 409 or type(self).attempts == 1:
                raise OperationalError("UPDATE", {}, DeadlockDetected("deadlock detected"))
        if request.job_id == 777:
            time.sleep(1.0)  # an in-flight call during shutdown
        return jobs_pb2.GetJobResponse(job=jobs_pb2.Job(id=request.job_id, name="probe"))


def _component() -> Component:
    servicer = ProbeJobsServicer()
    return Component(
        "jobs",
        [JOBS_SERVICE],
        lambda server: jobs_pb2_grpc.add_JobsServiceServicer_to_server(servicer, server),
        security=Security(TEST_SIGNER),
    )


async def _call(stub: jobs_pb2_grpc.JobsServiceAsyncStub, job_id: int) -> tuple[str, str]:
    try:
        reply = await stub.GetJob(
            jobs_pb2.GetJobRequest(job_id=job_id), timeout=10, metadata=auth()
        )
        return "OK", reply.job.name
    except grpc.aio.AioRpcError as err:
        return err.code().name, err.details() or ""


def _run(scenario: Any) -> Any:
    async def main() -> Any:
        server = DispatcherServer([_component()], worker_threads=4)
        port = await server.start("127.0.0.1:0")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await scenario(server, jobs_pb2_grpc.JobsServiceStub(channel))
        finally:
            await server.stop(1)

    return asyncio.run(main())


def test_rpc_not_implemented_yet_answers_unimplemented_naming_the_muster_function() -> None:
    async def scenario(server: DispatcherServer, stub: Any) -> tuple[str, str]:
        try:
            await stub.SubmitJob(jobs_pb2.SubmitJobRequest(), timeout=10, metadata=auth())
        except grpc.aio.AioRpcError as err:
            return err.code().name, err.details() or ""
        return "OK", ""

    code, message = _run(scenario)
    assert code == "UNIMPLEMENTED"
    assert "jobSubmit" in message
    assert "farm.jobs.v1.JobsService.SubmitJob" in message


@pytest.mark.parametrize(
    ("job_id", "code", "message"),
    [
        (7, "OK", "probe"),
        (-1, "INVALID_ARGUMENT", "job_id must be >= 0"),
        (404, "NOT_FOUND", "job 404 does not exist"),
    ],
)
def test_domain_errors_become_their_status_with_the_message(
    job_id: int, code: str, message: str
) -> None:
    async def scenario(server: DispatcherServer, stub: Any) -> tuple[str, str]:
        return await _call(stub, job_id)

    assert _run(scenario) == (code, message)


def test_unexpected_failure_answers_internal_with_an_incident_id_and_no_details() -> None:
    async def scenario(server: DispatcherServer, stub: Any) -> tuple[str, str]:
        return await _call(stub, 500)

    code, message = _run(scenario)
    assert code == "INTERNAL"
    assert message.startswith("internal error (incident ")
    assert "secrets" not in message


def test_a_deadlock_is_retried_and_answers_aborted_once_retries_run_out() -> None:
    """PostgreSQL rolled the transaction back: it changed nothing, so it runs
    again; a caller gets ABORTED (try again), not INTERNAL, if it keeps losing."""

    async def scenario(server: DispatcherServer, stub: Any) -> list[tuple[str, str]]:
        return [await _call(stub, 408), await _call(stub, 409)]

    ProbeJobsServicer.attempts = 0
    (once, always) = _run(scenario)
    assert once == ("OK", "probe")
    assert always[0] == "ABORTED" and "try again" in always[1]
    assert ProbeJobsServicer.attempts == 2 + RETRIES


def test_graceful_stop_finishes_in_flight_calls_and_refuses_new_ones() -> None:
    async def scenario(server: DispatcherServer, stub: Any) -> tuple[Any, ...]:
        in_flight = asyncio.ensure_future(_call(stub, 777))
        await asyncio.sleep(0.3)
        stopping = asyncio.ensure_future(server.stop(5))
        await asyncio.sleep(0.1)
        after = await _call(stub, 1)
        await stopping
        return await in_flight, after

    finished, after = _run(scenario)
    assert finished == ("OK", "probe")
    assert after[0] == "UNAVAILABLE"


def test_servicers_see_the_caller_its_token_names_and_calls_without_one_are_refused() -> None:
    from muster_services.core.caller import current_caller

    seen: list[tuple[str, str]] = []

    class WhoServicer(ProbeJobsServicer):
        def GetJob(self, request: jobs_pb2.GetJobRequest, context: Any) -> jobs_pb2.GetJobResponse:
            caller = current_caller()
            seen.append((caller.label, caller.role))
            return jobs_pb2.GetJobResponse()

    async def main() -> list[str]:
        servicer = WhoServicer()
        component = Component(
            "jobs",
            [JOBS_SERVICE],
            lambda server: jobs_pb2_grpc.add_JobsServiceServicer_to_server(servicer, server),
            security=Security(TEST_SIGNER),
        )
        server = DispatcherServer([component], worker_threads=2)
        port = await server.start("127.0.0.1:0")
        codes = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = jobs_pb2_grpc.JobsServiceStub(channel)
                await stub.GetJob(jobs_pb2.GetJobRequest(job_id=1), metadata=auth("alice", "user"))
                for metadata in [(), (("x-muster-user", "admin"),), (("authorization", "x"),)]:
                    try:
                        await stub.GetJob(jobs_pb2.GetJobRequest(job_id=1), metadata=metadata)
                    except grpc.aio.AioRpcError as err:
                        codes.append(err.code().name)
        finally:
            await server.stop(1)
        return codes

    codes = asyncio.run(main())
    assert seen == [("alice", "user")]
    assert codes == ["UNAUTHENTICATED"] * 3


def test_a_server_without_a_token_signer_refuses_to_start() -> None:
    component = Component("jobs", [JOBS_SERVICE], lambda server: None)
    with pytest.raises(ValueError, match="Security"):
        DispatcherServer([component])


def test_the_health_listener_answers_only_the_health_check_with_the_main_statuses() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.e2e.conftest import free_port

    health_address = f"127.0.0.1:{free_port()}"

    async def check(channel: grpc.aio.Channel, service: str) -> str:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    async def main() -> tuple[list[str], str, str]:
        server = DispatcherServer([_component()], worker_threads=2)
        await server.start("127.0.0.1:0", health_address)
        async with grpc.aio.insecure_channel(health_address) as channel:
            try:
                statuses = [await check(channel, name) for name in ("", JOBS_SERVICE.full_name)]
                try:
                    await jobs_pb2_grpc.JobsServiceStub(channel).GetJob(
                        jobs_pb2.GetJobRequest(job_id=1), timeout=10, metadata=auth()
                    )
                    other = "OK"
                except grpc.aio.AioRpcError as err:
                    other = err.code().name
            finally:
                await server.stop(1)
            try:
                after = await check(channel, "")
            except grpc.aio.AioRpcError as err:
                after = err.code().name
        return statuses, other, after

    statuses, other, after = asyncio.run(main())
    assert statuses == ["SERVING", "SERVING"]
    assert other == "UNIMPLEMENTED"  # the health port serves nothing else
    assert after == "UNAVAILABLE"  # it closes with the server


def test_a_health_listener_on_a_busy_port_fails_the_start() -> None:
    async def main() -> None:
        first = DispatcherServer([_component()], worker_threads=2)
        port = await first.start("127.0.0.1:0")
        try:
            second = DispatcherServer([_component()], worker_threads=2)
            with pytest.raises((OSError, RuntimeError), match=f"127.0.0.1:{port}"):
                await second.start("127.0.0.1:0", f"127.0.0.1:{port}")
        finally:
            await first.stop(1)

    asyncio.run(main())


def test_settling_the_heap_hides_the_startup_objects_from_full_collections() -> None:
    """A full collection walked every object of a nodes replica (50-150 ms
    with 2,000 streams); what exists once a server has started is frozen."""
    import subprocess
    import sys

    script = (
        "import gc, json; from muster_services.core.server import settle_heap;"
        " settle_heap(); print(json.dumps([gc.get_freeze_count(), gc.get_threshold()[0]]))"
    )
    frozen, threshold = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], check=True, capture_output=True, text=True
        ).stdout
    )
    assert frozen > 10_000  # the modules, schemas and generated classes a service loads
    assert threshold == GC_THRESHOLD
