"""Real `muster-console` and `muster-notificator` processes against the dev stack.

One `dispatcher run --agents 2` (jobs, nodes, admin and two local agent
slots) serves every test of this module; each client process logs in with
its own user's name and password, as a user on a workstation would.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from muster_gateway.live import VERSION
from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services.core.bus import publish
from muster_services.core.database import Database, drop_database, ensure_database, with_database
from tests.conftest import new_database_name
from tests.e2e.conftest import DISCOVERY_PORT, free_port, online_nodes
from tests.e2e.test_render import eventually, frame_job
from tests.support import REPO, ClientProcess, DispatcherProcess

USERS = ("alice", "bob", "carol")
HOST = socket.gethostname()
EVENT_ID = re.compile(r"#(\d+)\s")


class Farm:
    """The module's dispatcher, its database, and the client processes tests start."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.env = {
            "MUSTER_DATABASE_URL": url,
            "MUSTER_LISTEN": f"127.0.0.1:{free_port()}",
            # A fixed gRPC port (restarts keep it) would put `run`'s metrics on 9464,
            # which another test's dispatcher may hold: a free one instead.
            "MUSTER_METRICS_LISTEN": "127.0.0.1:0",
            "MUSTER_DATA_DIR": str(folder / "data"),
            "MUSTER_HOOKS_DIR": str(folder / "no-hooks"),
            "MUSTER_AGENT_DISCOVERY": "off",
            "MUSTER_DISCOVERY_PORT": str(DISCOVERY_PORT),
            "MUSTER_EVENT_POLL_SECONDS": "1",
        }
        self.dispatcher = self.start()
        self.clients: list[ClientProcess] = []
        self.db = Database(url, pool_size=2)

    def start(self) -> DispatcherProcess:
        self.dispatcher = DispatcherProcess(["run", "--agents", "2"], self.env, timeout=120)
        return self.dispatcher

    def client(self, program: str, user: str, *args: str) -> ClientProcess:
        """`program` logged in as `user`, connected (waits for it)."""
        client = ClientProcess(
            program,
            self.dispatcher.address,
            *args,
            env={
                "MUSTER_USER": user,
                "MUSTER_PASSWORD": f"{user}-password",
                "MUSTER_CLIENT_CONFIG": str(self.folder / "no-client-file.json"),
            },
        )
        self.clients.append(client)
        client.wait_log("connected to")
        return client

    def console(self, user: str, *args: str) -> ClientProcess:
        return self.client("console", user, *args)

    def notificator(self, user: str, *args: str) -> ClientProcess:
        return self.client("notificator", user, "--no-desktop", *args)

    def publish(self, topic: str, **payload: Any) -> int:
        with self.db.transaction() as session:
            return publish(session, topic, payload)

    def close(self) -> None:
        for client in self.clients:
            client.kill()
        self.db.dispose()
        self.dispatcher.stop()


@pytest.fixture(scope="module")
def farm(postgres_admin_url: str, template_database: str) -> Iterator[Farm]:
    name = new_database_name()
    ensure_database(postgres_admin_url, name, template=template_database)
    folder = REPO / ".data" / f"tmp-{name}"
    folder.mkdir(parents=True)
    farm = Farm(
        with_database(postgres_admin_url, name).render_as_string(hide_password=False), folder
    )
    try:
        with farm.dispatcher.channel() as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            for user in USERS:
                admin.CreateUser(
                    admin_pb2.CreateUserRequest(
                        user=admin_pb2.User(
                            name=user,
                            password=f"{user}-password",
                            role=admin_pb2.USER_ROLE_USER,
                            enabled=True,
                        )
                    )
                )
        yield farm
    finally:
        farm.close()
        shutil.rmtree(folder, ignore_errors=True)
        drop_database(postgres_admin_url, name)


@pytest.fixture
def clients(farm: Farm) -> Iterator[nodes_pb2_grpc.ClientsServiceStub]:
    with farm.dispatcher.channel() as channel:
        yield nodes_pb2_grpc.ClientsServiceStub(channel)
    for client in farm.clients:
        client.kill()
    farm.clients.clear()


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def test_client_processes_are_listed_messaged_and_disconnected(
    farm: Farm, clients: nodes_pb2_grpc.ClientsServiceStub
) -> None:
    alice, bob = farm.console("alice"), farm.console("bob")
    carol = farm.notificator("carol", "--only", "custom_messages")

    consoles = {
        c.user_name: c for c in clients.ListConsoles(nodes_pb2.ListConsolesRequest()).consoles
    }
    assert sorted(consoles) == ["alice", "bob"]
    assert all(c.host == HOST and c.version == VERSION for c in consoles.values())
    notificators = clients.ListNotificators(nodes_pb2.ListNotificatorsRequest()).notificators
    assert [(n.user_name, n.host) for n in notificators] == [("carol", HOST)]
    assert notificators[0].notification_preferences.custom_messages

    def to_consoles(message: str, connection_id: int = 0) -> int:
        return int(
            clients.SendConsoleMessage(
                nodes_pb2.SendConsoleMessageRequest(
                    connection_id=connection_id, message=message, broadcast=not connection_id
                )
            ).recipients_count
        )

    assert to_consoles("hello every console") == 2
    assert "message" in alice.wait_line("hello every console")
    bob.wait_line("hello every console")
    assert to_consoles("only for bob", consoles["bob"].id) == 1
    bob.wait_line("only for bob")
    clients.SendNotificatorMessage(
        nodes_pb2.SendNotificatorMessageRequest(connection_id=notificators[0].id, message="carol!")
    )
    assert "from admin" in carol.wait_line("carol!")
    to_consoles("second round")
    alice.wait_line("second round")
    assert not any("only for bob" in line for line in alice.printed)
    assert carol.printed == [line for line in carol.printed if "carol!" in line]

    # Unknown ids and oversized messages: refused, nothing sent.
    unknown = 987_654
    assert _code(
        lambda: clients.GetConsole(nodes_pb2.GetConsoleRequest(connection_id=unknown))
    ) == (grpc.StatusCode.NOT_FOUND)
    for call in (
        lambda: clients.GetNotificator(nodes_pb2.GetNotificatorRequest(connection_id=unknown)),
        lambda: clients.DisconnectConsole(
            nodes_pb2.DisconnectConsoleRequest(connection_id=unknown)
        ),
        lambda: clients.DisconnectNotificator(
            nodes_pb2.DisconnectNotificatorRequest(connection_id=unknown)
        ),
        lambda: to_consoles("to nobody", unknown),
        # A notificator's id is not a console's.
        lambda: clients.GetConsole(nodes_pb2.GetConsoleRequest(connection_id=notificators[0].id)),
    ):
        assert _code(call) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: to_consoles("x" * (64 * 1024 + 1))) == grpc.StatusCode.INVALID_ARGUMENT
    to_consoles("x" * (64 * 1024))  # the documented limit itself goes through
    assert len(bob.wait_line("xxxx")) > 64 * 1024

    # A forced disconnection ends exactly that process.
    clients.DisconnectConsole(
        nodes_pb2.DisconnectConsoleRequest(connection_id=consoles["alice"].id)
    )
    assert "disconnected by the dispatcher" in alice.wait_line("disconnected")
    assert alice.proc.wait(15) == 0
    assert bob.proc.poll() is None and carol.proc.poll() is None
    assert to_consoles("after alice left") == 1
    bob.wait_line("after alice left")
    left = clients.ListConsoles(nodes_pb2.ListConsolesRequest()).consoles
    assert [c.user_name for c in left] == ["bob"]
    assert bob.stop() == 0 and carol.stop() == 0


def test_notificator_processes_follow_a_real_render_by_the_local_agents(
    farm: Farm, clients: nodes_pb2_grpc.ClientsServiceStub
) -> None:
    carol = farm.notificator("carol", "--only", "job_started,job_completed")
    alice = farm.notificator("alice", "--only", "job_completed", "--own-jobs-only")
    bob = farm.notificator("bob", "--only", "job_completed,custom_messages", "--own-jobs-only")
    console = farm.console("bob")
    out = farm.folder / "frames"
    out.mkdir()
    with farm.dispatcher.channel() as channel:
        nodes = nodes_pb2_grpc.NodesServiceStub(channel)
        eventually(lambda: len(online_nodes(nodes)) == 2, what="the two local agents online")
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=frame_job(out, 4, 1))).job_id

    started = carol.wait_line("job started", 60)
    assert f"job {job_id} (frames) started" in started
    completed = carol.wait_line("job completed", 90)
    assert f"job {job_id} (frames) finished: completed" in completed
    alice.wait_line("job completed")
    line = console.wait_line(f"job {job_id} (frames) completed, 100%", 30)
    assert "[4/4 chunks" in line
    assert len(list(out.glob("frame_*.txt"))) == 4
    # Nothing the preferences exclude: carol saw the start and the end, no
    # chunk started (every chunk started before the job completed); alice
    # only the completion of her own job; bob, who owns none of it, only
    # the broadcast sent after the render.
    assert carol.printed == [started, completed]
    clients.SendNotificatorMessage(
        nodes_pb2.SendNotificatorMessageRequest(message="render over", broadcast=True)
    )
    bob.wait_line("render over")
    assert len(bob.printed) == 1
    assert alice.printed == [completed]  # the same event, the same line


def test_a_console_process_misses_no_event_across_a_dispatcher_restart(
    farm: Farm, clients: nodes_pb2_grpc.ClientsServiceStub
) -> None:
    console = farm.console("bob")

    def chunk_events(first: int) -> list[int]:
        return [
            farm.publish("chunk.finished", job_id=1, chunk_id=n) for n in range(first, first + 3)
        ]

    before = chunk_events(1)
    console.wait_line(f"#{before[-1]} ")
    assert farm.dispatcher.stop() == 0
    console.wait_log("retrying")
    while_down = chunk_events(4)
    farm.start()
    console.wait_log("resuming after event", 60)
    after = chunk_events(7)
    console.wait_line(f"#{after[-1]} ", 60)

    printed = [int(m[1]) for line in console.printed if (m := EVENT_ID.search(line))]
    assert len(printed) == len(set(printed))  # nothing twice
    # Every event published, in the order it was committed (the bus's order:
    # ids of concurrent transactions, like the agents' node changes, may
    # commit out of id order).
    ours = before + while_down + after
    assert [i for i in printed if i in ours] == ours
    assert all(f"chunk {n} of job 1 changed" in " ".join(console.printed) for n in range(1, 10))
    assert console.proc.poll() is None
