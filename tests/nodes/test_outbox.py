"""The per-stream structures of a nodes replica (sessions.Outbox, Closed) as
the stream's writer uses them (servicer.next_message): no message lost or
reordered, whichever of a message and the stream's end comes first."""

from __future__ import annotations

import asyncio

from muster_proto.agent.v1 import agent_pb2
from muster_services.nodes.servicer import next_message
from muster_services.nodes.sessions import Closed, Outbox


def _message(sequence: int) -> agent_pb2.SessionResponse:
    return agent_pb2.SessionResponse(
        heartbeat_recorded=agent_pb2.HeartbeatRecorded(sequence=sequence)
    )


async def _next(
    outgoing: Outbox, closed: Closed, also: asyncio.Future[None] | None = None
) -> agent_pb2.SessionResponse | None:
    return await next_message(outgoing, closed, also)


def _sequence(message: agent_pb2.SessionResponse | None) -> int:
    assert message is not None
    return message.heartbeat_recorded.sequence


def test_messages_come_in_order_queued_or_awaited() -> None:
    async def scenario() -> list[int]:
        outgoing, closed = Outbox(), Closed()
        outgoing.put_nowait(_message(1))
        await outgoing.put(_message(2))
        assert outgoing.qsize() == 2
        got = [_sequence(await _next(outgoing, closed))]
        got.append(_sequence(await _next(outgoing, closed)))
        assert outgoing.empty()
        waiting = asyncio.ensure_future(_next(outgoing, closed))
        await asyncio.sleep(0)
        assert not waiting.done()
        outgoing.put_nowait(_message(3))
        outgoing.put_nowait(_message(4))
        got.append(_sequence(await waiting))
        got.append(_sequence(await _next(outgoing, closed)))
        return got

    assert asyncio.run(scenario()) == [1, 2, 3, 4]


def test_the_end_wakes_the_writer_and_loses_no_message() -> None:
    async def scenario() -> None:
        outgoing, closed = Outbox(), Closed()
        waiting = asyncio.ensure_future(_next(outgoing, closed))
        await asyncio.sleep(0)
        closed.set()
        assert await waiting is None
        assert closed.is_set()
        # The cancelled getter took nothing: a message queued now stays.
        outgoing.put_nowait(_message(5))
        assert outgoing.qsize() == 1
        assert await _next(outgoing, closed) is None  # closed: not sent
        assert _sequence(outgoing.get_nowait()) == 5
        await asyncio.wait_for(closed.wait(), 1)

    asyncio.run(scenario())


def test_a_reader_ending_first_leaves_the_messages() -> None:
    async def scenario() -> None:
        outgoing, closed = Outbox(), Closed()
        reader: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(_next(outgoing, closed, reader))
        await asyncio.sleep(0)
        reader.set_result(None)
        assert await waiting is None
        outgoing.put_nowait(_message(6))
        assert _sequence(await outgoing.get()) == 6
        try:
            outgoing.get_nowait()
        except asyncio.QueueEmpty:
            pass
        else:
            raise AssertionError("an empty outbox answered a message")

    asyncio.run(scenario())
