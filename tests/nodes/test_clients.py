"""Consoles and notificators: live streams, lists, messages, resume."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from muster_proto.common.v1 import common_pb2
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services.core.bus import publish, publish_many
from muster_services.core.database import Database
from tests.support import LiveClient


@pytest.fixture
def clients_stub(channel: grpc.Channel) -> nodes_pb2_grpc.ClientsServiceStub:
    return nodes_pb2_grpc.ClientsServiceStub(channel)


@pytest.fixture
def connect(channel: grpc.Channel) -> Iterator[Any]:
    opened: list[LiveClient] = []

    def open_client(user: str, **request: Any) -> LiveClient:
        opened.append(LiveClient(channel, user, **request))
        return opened[-1]

    yield open_client
    for client in opened:
        client.close()


def _publish(db: Database, topic: str, **payload: Any) -> int:
    with db.transaction() as session:
        return publish(session, topic, payload)


def test_connected_consoles_are_listed_with_their_users(
    connect: Any, clients_stub: nodes_pb2_grpc.ClientsServiceStub
) -> None:
    alice, bob = connect("alice"), connect("bob")
    listed = clients_stub.ListConsoles(nodes_pb2.ListConsolesRequest()).consoles
    assert [(c.id, c.user_name) for c in listed] == [
        (alice.connection_id, "alice"),
        (bob.connection_id, "bob"),
    ]
    only_bob = clients_stub.ListConsoles(nodes_pb2.ListConsolesRequest(user_name="bob")).consoles
    assert [c.id for c in only_bob] == [bob.connection_id]
    one = clients_stub.GetConsole(nodes_pb2.GetConsoleRequest(connection_id=alice.connection_id))
    assert (one.console.host, one.console.version) == ("ws-alice", "test")
    assert clients_stub.ListNotificators(nodes_pb2.ListNotificatorsRequest()).notificators == []


def test_broadcast_reaches_every_console_and_a_directed_message_only_its_target(
    connect: Any, clients_stub: nodes_pb2_grpc.ClientsServiceStub
) -> None:
    alice, bob = connect("alice"), connect("bob")
    reply = clients_stub.SendConsoleMessage(
        nodes_pb2.SendConsoleMessageRequest(message="render farm maintenance at 6", broadcast=True)
    )
    assert reply.recipients_count == 2
    for client in (alice, bob):
        assert client.next().custom_message.message == "render farm maintenance at 6"
    clients_stub.SendConsoleMessage(
        nodes_pb2.SendConsoleMessageRequest(
            connection_id=bob.connection_id, template_id=4, message="just you"
        )
    )
    got = bob.next().custom_message
    assert (got.message, got.template_id) == ("just you", 4)
    assert alice.quiet()


def test_forced_disconnection_ends_exactly_that_client(
    connect: Any, clients_stub: nodes_pb2_grpc.ClientsServiceStub
) -> None:
    alice, bob = connect("alice"), connect("bob")
    clients_stub.DisconnectConsole(
        nodes_pb2.DisconnectConsoleRequest(connection_id=alice.connection_id)
    )
    notice = alice.next().disconnect_notice
    assert notice.reason == nodes_pb2.DISCONNECT_REASON_FORCED
    alice.thread.join(10)
    assert not alice.thread.is_alive()
    listed = clients_stub.ListConsoles(nodes_pb2.ListConsolesRequest()).consoles
    assert [c.id for c in listed] == [bob.connection_id]
    with pytest.raises(grpc.RpcError) as error:
        clients_stub.GetConsole(nodes_pb2.GetConsoleRequest(connection_id=alice.connection_id))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_reconnecting_console_resumes_after_the_last_event_it_saw(
    connect: Any, db: Database
) -> None:
    first = connect("alice")
    seen = [_publish(db, "job.edited", job_id=i) for i in (1, 2)]
    got = [first.next().event_id for _ in seen]
    assert got == seen
    first.close()

    missed = [_publish(db, "job.edited", job_id=i) for i in (3, 4, 5)]
    time.sleep(1.0)  # a replica holding no console passes over them unread
    again = connect("alice", resume_after_event_id=got[-1])
    live = _publish(db, "job.deleted", job_id=5)
    events = [again.next() for _ in range(4)]
    assert [e.event_id for e in events] == [*missed, live]
    assert [e.job_changed.job.id for e in events] == [3, 4, 5, 5]
    assert events[-1].job_changed.deleted
    assert again.quiet()


def test_a_batching_console_gets_the_same_events_in_fewer_messages(
    connect: Any, db: Database
) -> None:
    batched, single = connect("alice", batch_events=True), connect("bob")
    with db.transaction() as session:
        publish_many(
            session, [("chunk.finished", {"job_id": 7, "chunk_id": n}, "7") for n in range(5)]
        )
    lone = _publish(db, "job.deleted", job_id=7)
    got = {c: [c.next() for _ in range(6)] for c in (batched, single)}
    assert got[batched] == got[single]  # byte for byte the same events
    assert [e.chunk_changed.chunk.id for e in got[batched][:5]] == [0, 1, 2, 3, 4]
    assert got[batched][-1].event_id == lone
    assert single.responses == 6  # one response per event (after the acceptance)
    assert batched.responses <= 2  # the five together, then the last one
    assert batched.quiet() and single.quiet()


def test_resuming_from_an_event_no_longer_kept_asks_the_client_to_reload(connect: Any) -> None:
    client = connect("alice", resume_after_event_id=10**9)
    notice = client.next().disconnect_notice
    assert notice.reason == nodes_pb2.DISCONNECT_REASON_RESUME_TOO_OLD


def test_consoles_only_get_the_jobs_and_nodes_they_subscribed_to(
    connect: Any, db: Database
) -> None:
    watcher = connect("alice", job_ids=[7])
    _publish(db, "job.edited", job_id=8)
    _publish(db, "node.changed", node_id=3)
    wanted = _publish(db, "chunk.status_changed", job_id=7, chunk_id=2)
    event = watcher.next()
    assert (event.event_id, event.chunk_changed.chunk.id) == (wanted, 2)
    assert watcher.quiet()


def test_a_notificator_hears_only_what_its_preferences_ask_for(
    connect: Any, db: Database, clients_stub: nodes_pb2_grpc.ClientsServiceStub
) -> None:
    prefs = common_pb2.NotificationPreferences(
        job_started=True, job_completed=True, node_offline=True, custom_messages=True
    )
    applet = connect(
        "carol", client_kind=nodes_pb2.CLIENT_KIND_NOTIFICATOR, notification_preferences=prefs
    )
    _publish(db, "chunk.started", job_id=9, chunk_id=1, node_id=2)  # not asked for
    _publish(db, "job.started", job_id=9)
    _publish(db, "job.completed", job_id=9, status="completed")
    _publish(db, "job.completed", job_id=9, status="completed_with_errors")  # not asked for
    _publish(db, "node.lost", node_id=2, name="render-02")
    kinds = [applet.next().notification.kind for _ in range(3)]
    assert kinds == [
        nodes_pb2.NOTIFICATION_KIND_JOB_STARTED,
        nodes_pb2.NOTIFICATION_KIND_JOB_COMPLETED,
        nodes_pb2.NOTIFICATION_KIND_NODE_OFFLINE,
    ]
    assert applet.quiet()
    listed = clients_stub.ListNotificators(nodes_pb2.ListNotificatorsRequest()).notificators
    assert [(n.user_name, n.notification_preferences.job_started) for n in listed] == [
        ("carol", True)
    ]
    clients_stub.SendNotificatorMessage(
        nodes_pb2.SendNotificatorMessageRequest(
            connection_id=applet.connection_id, message="coffee"
        )
    )
    assert applet.next().custom_message.message == "coffee"


def test_bad_requests_are_refused(
    connect: Any, clients_stub: nodes_pb2_grpc.ClientsServiceStub
) -> None:
    client = connect("alice")
    with pytest.raises(grpc.RpcError) as error:
        clients_stub.SendConsoleMessage(
            nodes_pb2.SendConsoleMessageRequest(
                connection_id=client.connection_id, message="x" * (64 * 1024 + 1)
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as error:
        clients_stub.SendConsoleMessage(
            nodes_pb2.SendConsoleMessageRequest(connection_id=999_999, message="hello")
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        clients_stub.DisconnectNotificator(
            nodes_pb2.DisconnectNotificatorRequest(connection_id=client.connection_id)
        )  # a console, not a notificator
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    stream: Any = clients_stub.Connect(nodes_pb2.ConnectRequest())
    with pytest.raises(grpc.RpcError) as error:
        next(stream)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_user_deleted_disabled_or_given_another_role_is_signed_out_of_its_consoles(
    connect: Any, db: Database
) -> None:
    """Its tokens are revoked (muster_services/core/auth.py); the console
    streams it opened with one end too, and no other user's."""
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    # As the admin service publishes them (muster_services/admin/accounts.py).
    _publish(db, "user.updated", user="alice", fields=["email"], tokens_revoked=False)
    _publish(db, "user.updated", user="bob", fields=["password"], tokens_revoked=False)
    _publish(db, "user.updated", user="alice", tokens_revoked=True, actor="admin")
    _publish(db, "user.deleted", user="carol", tokens_revoked=True, actor="admin")
    for client, user in ((alice, "alice"), (carol, "carol")):
        event = client.next()
        while not event.HasField("disconnect_notice"):
            event = client.next()
        assert event.disconnect_notice.reason == nodes_pb2.DISCONNECT_REASON_FORCED
        assert event.disconnect_notice.message == (
            f"signed out: the account {user!r} was changed by admin"
        )
        client.thread.join(10)
        assert not client.thread.is_alive()
    assert bob.thread.is_alive()
