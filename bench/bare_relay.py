"""The design's physical limit on this machine: a bare grpc.aio relay.

`python -m bench.bare_relay ASSIGNMENT_FILE` serves AgentService.Session on
127.0.0.1 (its own process, as the nodes service is) and prints
"bare relay at ADDRESS". It speaks to the render benchmark's simulated nodes
(bench/render.py) the two messages of a chunk and nothing else: a register is
accepted, then each node gets an assignment, and each result is answered with
its ResultAccepted and the node's next assignment. No database, no rules, no
scheduler, no jobs service; heartbeats are read and dropped. The assignment is
a real one (captured from the render loop in the same run, in
ASSIGNMENT_FILE), sent again with a new chunk and fencing token each time, so
the bytes on the wire are the render loop's own.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from muster_proto.agent.v1 import agent_pb2, agent_pb2_grpc
from muster_services.core.server import settle_heap


class BareRelay(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, assignment: agent_pb2.Assignment) -> None:
        self.assignment = assignment
        self.tokens = itertools.count(1)
        self.node_ids = itertools.count(1)

    def _next(self) -> agent_pb2.SessionResponse:
        token = next(self.tokens)
        assignment = agent_pb2.Assignment()
        assignment.CopyFrom(self.assignment)
        assignment.chunk_id, assignment.fencing_token = token, token
        return agent_pb2.SessionResponse(assignment=assignment)

    async def Enroll(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bare relay serves Session only")

    async def GetTemplateSource(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bare relay serves Session only")

    async def Session(
        self, request_iterator: AsyncIterator[agent_pb2.SessionRequest], context: Any
    ) -> AsyncIterator[agent_pb2.SessionResponse]:
        async for request in request_iterator:
            kind = request.WhichOneof("message")
            if kind == "register":
                node_id = next(self.node_ids)
                yield agent_pb2.SessionResponse(
                    register_accepted=agent_pb2.RegisterAccepted(
                        node_id=node_id,
                        node_name=request.register.host_name,
                        heartbeat_interval_seconds=10,
                    )
                )
                yield self._next()
            elif kind == "result":
                result = request.result
                yield agent_pb2.SessionResponse(
                    result_accepted=agent_pb2.ResultAccepted(
                        job_id=result.job_id,
                        chunk_id=result.chunk_id,
                        fencing_token=result.fencing_token,
                        applied=True,
                    )
                )
                yield self._next()


async def serve(assignment: agent_pb2.Assignment) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    agent_pb2_grpc.add_AgentServiceServicer_to_server(BareRelay(assignment), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settle_heap()  # as every service does once started
    print(f"bare relay at 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    message = agent_pb2.Assignment.FromString(Path(sys.argv[1]).read_bytes())
    asyncio.run(serve(message))
