"""The bare relay of the render benchmark (bench/bare_relay.py) over a real
grpc.aio server on 127.0.0.1: it answers the two messages of a chunk as the
nodes service does, so that its figure is the same loop without the rest."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from bench.bare_relay import BareRelay
from muster_proto.agent.v1 import agent_pb2, agent_pb2_grpc
from muster_proto.common.v1 import common_pb2

TEMPLATE = agent_pb2.Assignment(job_id=7, chunk_id=1, fencing_token=1, job_name="shot", end_frame=1)


@contextlib.asynccontextmanager
async def _relay() -> AsyncIterator[agent_pb2_grpc.AgentServiceAsyncStub]:
    """A bare relay serving on 127.0.0.1, and a stub of it."""
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(BareRelay(TEMPLATE), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield agent_pb2_grpc.AgentServiceStub(channel)
    finally:
        await server.stop(None)


async def _scenario(requests: list[agent_pb2.SessionRequest], answers: int) -> list[Any]:
    async with _relay() as stub:
        outgoing: asyncio.Queue[agent_pb2.SessionRequest | None] = asyncio.Queue()
        for request in requests:
            outgoing.put_nowait(request)

        async def stream() -> Any:
            while (message := await outgoing.get()) is not None:
                yield message

        call = stub.Session(stream())
        received = [await asyncio.wait_for(call.read(), 10) for _ in range(answers)]
        outgoing.put_nowait(None)
        return received


def _result(token: int) -> agent_pb2.SessionRequest:
    return agent_pb2.SessionRequest(
        result=agent_pb2.ChunkResult(
            job_id=7,
            chunk_id=token,
            fencing_token=token,
            outcome=common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED,
        )
    )


def test_a_register_then_each_result_gets_its_acceptance_and_the_next_assignment() -> None:
    register = agent_pb2.SessionRequest(register=agent_pb2.Register(host_name="sim-1"))
    heartbeat = agent_pb2.SessionRequest(heartbeat=agent_pb2.Heartbeat())
    received = asyncio.run(_scenario([register, heartbeat, _result(1), _result(2)], 6))
    kinds = [m.WhichOneof("message") for m in received]
    assert kinds == [
        "register_accepted",
        "assignment",
        "result_accepted",
        "assignment",
        "result_accepted",
        "assignment",
    ]
    assert received[0].register_accepted.node_name == "sim-1"
    # The captured assignment, sent again with a new chunk and token each time.
    tokens = [m.assignment.fencing_token for m in received if m.HasField("assignment")]
    assert tokens == [1, 2, 3]
    assert [m.assignment.chunk_id for m in received if m.HasField("assignment")] == tokens
    assert all(m.assignment.job_name == "shot" for m in received if m.HasField("assignment"))
    accepted = [m.result_accepted for m in received if m.HasField("result_accepted")]
    assert [(a.fencing_token, a.applied) for a in accepted] == [(1, True), (2, True)]


def test_only_the_session_is_served() -> None:
    async def enroll() -> None:
        async with _relay() as stub:
            await stub.Enroll(agent_pb2.EnrollRequest())

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        asyncio.run(enroll())
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
