"""Consoles held by one nodes-service replica, listed, messaged and
disconnected through another; a dead replica's consoles leave the lists."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest

from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.support import DispatcherProcess, LiveClient, auth

CLIENT_TIMEOUT_SECONDS = 3.0


@dataclass
class Replicas:
    """Two nodes-service processes on one database, a channel to each, and
    the consoles a test opened (closed after it)."""

    first: DispatcherProcess
    second: DispatcherProcess
    on_first: grpc.Channel
    on_second: grpc.Channel
    clients: list[LiveClient] = field(default_factory=list)

    def console(self, channel: grpc.Channel, user: str) -> LiveClient:
        client = LiveClient(channel, user)
        self.clients.append(client)
        return client


@pytest.fixture
def replicas(database_url: str) -> Iterator[Replicas]:
    env = {
        "MUSTER_DATABASE_URL": database_url,
        "MUSTER_CLIENT_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT_SECONDS),
        "MUSTER_EVENT_POLL_SECONDS": "1",
    }
    first = DispatcherProcess(["serve", "nodes"], env)
    second = DispatcherProcess(["serve", "nodes"], env)
    try:
        with (
            grpc.insecure_channel(first.address) as on_first,
            grpc.insecure_channel(second.address) as on_second,
        ):
            held = Replicas(first, second, on_first, on_second)
            try:
                yield held
            finally:
                for client in held.clients:
                    client.close()
    finally:
        for replica in (first, second):
            replica.kill()


def _consoles(channel: grpc.Channel) -> dict[int, str]:
    stub = nodes_pb2_grpc.ClientsServiceStub(channel)
    listed = stub.ListConsoles(nodes_pb2.ListConsolesRequest(), metadata=auth()).consoles
    return {c.id: c.user_name for c in listed}


def _custom_messages(client: LiveClient, seconds: float) -> list[str]:
    deadline, found = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        try:
            event = client.events.get(timeout=0.2)
        except Exception:
            continue
        if event.HasField("custom_message"):
            found.append(event.custom_message.message)
        if event.HasField("disconnect_notice"):
            found.append(
                f"notice:{nodes_pb2.DisconnectReason.Name(event.disconnect_notice.reason)}"
            )
    return found


def test_consoles_on_one_replica_are_listed_messaged_and_disconnected_from_another(
    replicas: Replicas,
) -> None:
    on_second = replicas.on_second
    alice = replicas.console(replicas.on_first, "alice")
    bob = replicas.console(replicas.on_first, "bob")
    assert _consoles(on_second) == {alice.connection_id: "alice", bob.connection_id: "bob"}
    stub = nodes_pb2_grpc.ClientsServiceStub(on_second)
    stub.SendConsoleMessage(
        nodes_pb2.SendConsoleMessageRequest(
            connection_id=alice.connection_id, message="only alice"
        ),
        metadata=auth(),
    )
    stub.SendConsoleMessage(
        nodes_pb2.SendConsoleMessageRequest(message="everyone", broadcast=True),
        metadata=auth(),
    )
    assert _custom_messages(alice, 3) == ["only alice", "everyone"]
    assert _custom_messages(bob, 0.5) == ["everyone"]

    stub.DisconnectConsole(
        nodes_pb2.DisconnectConsoleRequest(connection_id=bob.connection_id),
        metadata=auth(),
    )
    assert _custom_messages(bob, 3) == ["notice:DISCONNECT_REASON_FORCED"]
    bob.thread.join(5)
    assert not bob.thread.is_alive()  # the stream ended
    assert _consoles(on_second) == {alice.connection_id: "alice"}


def test_the_consoles_of_a_replica_that_died_leave_the_lists_within_the_timeout(
    replicas: Replicas,
) -> None:
    on_second = replicas.on_second
    orphan = replicas.console(replicas.on_first, "carol")
    kept = replicas.console(on_second, "dave")
    assert set(_consoles(on_second)) == {orphan.connection_id, kept.connection_id}
    replicas.first.stop(signal.SIGKILL)  # no goodbye: its rows stay until the timeout
    died = time.monotonic()
    while orphan.connection_id in _consoles(on_second):
        assert time.monotonic() - died < 2 * CLIENT_TIMEOUT_SECONDS + 5
        time.sleep(0.2)
    # The live replica's console stays, refreshed well within the timeout.
    time.sleep(CLIENT_TIMEOUT_SECONDS)
    assert set(_consoles(on_second)) == {kept.connection_id}
