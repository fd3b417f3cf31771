"""Helpers for tests that start real dispatcher processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import text

from muster_gateway.live import events_of
from muster_gateway.tls import open_channel, with_token
from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from muster_services.core.auth import TokenSigner, auth_metadata
from muster_services.core.server import Component, DispatcherServer

REPO = Path(__file__).resolve().parent.parent
# Searched, not matched: the line is written whole, but stdout and stderr share
# the pipe and a long log record written in pieces may precede it on its line.
READY = re.compile(r"dispatcher ready: (?P<names>[\w ]+) at (?P<address>\S+)$")

# The farm secrets of every test database (tests/conftest.py seeds them in the
# template) and of every dispatcher process tests start (environment files).
TEST_SIGNING_KEY = "test-signing-key-0123456789abcdef"
TEST_ENROLLMENT_SECRET = "test-enrollment-secret"
TEST_ADMIN = "admin"
TEST_ADMIN_PASSWORD = "test-admin-password"
TEST_SIGNER = TokenSigner(TEST_SIGNING_KEY.encode())


def token(name: str = TEST_ADMIN, role: str = "administrator", kind: str = "user") -> str:
    """A token signed with the test databases' key."""
    return TEST_SIGNER.issue(name, kind, role, 3600)[0]


def agent_auth(host: str, instance: int = 0) -> tuple[tuple[str, str]]:
    """Call metadata of an agent enrolled as `host` instance `instance`."""
    signed = TEST_SIGNER.issue(
        f"agent:{host}#{instance}", "agent", "", 3600, host=host, instance=instance
    )[0]
    return auth_metadata(signed)


def auth(name: str = TEST_ADMIN, role: str = "administrator") -> tuple[tuple[str, str]]:
    """Call metadata for `name` (an administrator unless said otherwise)."""
    return auth_metadata(token(name, role))


def authorized_channel(
    address: str, name: str = TEST_ADMIN, role: str = "administrator", bearer: str = ""
) -> grpc.Channel:
    """A channel whose calls carry a token for `name` (or `bearer`) by default."""
    return with_token(open_channel(address), bearer or token(name, role))


def login(address: str, user: str = TEST_ADMIN, password: str = TEST_ADMIN_PASSWORD) -> str:
    """A token from the Login RPC of the dispatcher at `address`."""
    with open_channel(address) as channel:
        reply = admin_pb2_grpc.AdminServiceStub(channel).Login(
            admin_pb2.LoginRequest(user_name=user, password=password), timeout=30
        )
    return str(reply.token)


class AgentProcess:
    """A real render-node agent (`python -m muster_agent`) as a child process."""

    def __init__(
        self,
        address: str,
        name: str,
        work_dir: Path,
        instances: int = 1,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        """`command` starts another installation's agent (run outside the
        repository, so that it imports its own code)."""
        work_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log = work_dir / "agent.log"
        self.proc = subprocess.Popen(
            [
                *(command or [sys.executable, "-m", "muster_agent"]),
                "--dispatcher",
                address,
                "--name",
                name,
                "--work-dir",
                str(work_dir),
                "--instances",
                str(instances),
                "--log-level",
                "debug",
            ],
            cwd=REPO if command is None else work_dir,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
            # Scan answers off unless a test asks: agents would share port 50052.
            env={**os.environ, "MUSTER_AGENT_DISCOVERY": "off", **(env or {})},
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)


class LiveClient:
    """A console or notificator connection, read in a thread."""

    def __init__(self, channel: grpc.Channel, user: str, **request: Any) -> None:
        stub = nodes_pb2_grpc.ClientsServiceStub(channel)
        request.setdefault("client_kind", nodes_pb2.CLIENT_KIND_CONSOLE)
        self.call: Any = cast(
            Any,
            stub.Connect(
                nodes_pb2.ConnectRequest(host="ws-" + user, version="test", **request),
                metadata=auth(user, "user"),
            ),
        )
        self.events: queue.Queue[nodes_pb2.ClientEvent] = queue.Queue()
        self.responses = 0
        first = next(self.call)
        assert first.WhichOneof("message") == "accepted"
        self.connection_id = first.accepted.connection_id
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.responses += 1
                for event in events_of(message):  # one, or a batch
                    self.events.put(event)
        except grpc.RpcError:
            pass

    def next(self, timeout: float = 10) -> nodes_pb2.ClientEvent:
        return self.events.get(timeout=timeout)

    def quiet(self, seconds: float = 0.5) -> bool:
        try:
            event = self.events.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected event {event}")

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(10)


class DispatcherProcess:
    """`dispatcher run` or `dispatcher serve ...` as a real child process."""

    def __init__(self, args: list[str], env: dict[str, str], timeout: float = 60) -> None:
        client_file = REPO / ".data" / f"client-{os.getpid()}-{id(self)}.json"
        full_env = {
            **os.environ,
            "MUSTER_LISTEN": "127.0.0.1:0",
            "MUSTER_CLIENT_CONFIG": str(client_file),
            **env,
        }
        self.client_file = client_file
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "muster_services.cli", *args],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.address = self._wait_ready(timeout)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            self._lines.put(line.rstrip())

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = READY.search(line)
            if match:
                return match["address"]
        self.proc.kill()
        raise AssertionError("dispatcher did not become ready:\n" + "\n".join(self.output))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("dispatcher did not stop:\n" + "\n".join(self.output)) from None

    def credentials(self) -> tuple[str, str]:
        """The administrator's login: the client file `run` writes, else the test one."""
        try:
            known = json.loads(self.client_file.read_text())
            return str(known["user"]), str(known["password"])
        except (OSError, ValueError, KeyError):
            return TEST_ADMIN, TEST_ADMIN_PASSWORD

    def token(self) -> str:
        return login(self.address, *self.credentials())

    def channel(self) -> grpc.Channel:
        """A channel to this dispatcher authorized as its administrator."""
        return authorized_channel(self.address, bearer=self.token())

    def facade_env(self) -> dict[str, str]:
        """Environment for a facade script talking to this dispatcher as its administrator."""
        user, password = self.credentials()
        return {"MUSTER_DISPATCHER": self.address, "MUSTER_USER": user, "MUSTER_PASSWORD": password}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def health_status(channel: grpc.Channel, service: str) -> str:
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def reflected_services(channel: grpc.Channel) -> set[str]:
    return set(ProtoReflectionDescriptorDatabase(channel).get_services())


class InProcessServer:
    """The production DispatcherServer on 127.0.0.1:0, run in a thread.

    Tests stay synchronous: the server's event loop lives in its own thread
    (the same boundary the dev stack has), and tests talk to `address` with
    ordinary blocking stubs.

        with InProcessServer([jobs_component.build(db, Settings())]) as server:
            with grpc.insecure_channel(server.address) as channel: ...
    """

    def __init__(self, components: list[Component], worker_threads: int = 8) -> None:
        self.components = components
        self.worker_threads = worker_threads
        self.address = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: DispatcherServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> InProcessServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = DispatcherServer(self.components, self.worker_threads)
                port = loop.run_until_complete(self._server.start("127.0.0.1:0"))
                self.address = f"127.0.0.1:{port}"
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            # Let worker threads (asyncio.to_thread) finish before the loop goes.
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

        self._thread = threading.Thread(target=run, name="in-process-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    def token(self, name: str = TEST_ADMIN, role: str = "administrator") -> str:
        """A token for `name`, signed with this server's own key."""
        security = next(c.security for c in self.components if c.security is not None)
        return security.signer.issue(name, "user", role, 3600)[0]

    def channel(self, name: str = TEST_ADMIN, role: str = "administrator") -> grpc.Channel:
        """A channel to this server whose calls carry a token for `name`."""
        return authorized_channel(self.address, bearer=self.token(name, role))

    def __exit__(self, *exc: object) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return
        asyncio.run_coroutine_threadsafe(server.stop(1), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(30)


def admin_channel(address: str, service: bool = False) -> grpc.Channel:
    """A channel to `address` that calls as the farm's administrator (a token
    signed with the test databases' key), or with `service` as the
    dispatcher's own service identity: the one place the hostile-input suite
    gets its channels from."""
    if service:
        return authorized_channel(address, bearer=token("service:nodes", kind="service"))
    return authorized_channel(address)


class ClientProcess:
    """`python -m muster_console|muster_notificator ...` as a real process
    (`program` is "console" or "notificator"): its stdout lines in `lines`, its
    log (stderr) lines in `log`."""

    def __init__(self, program: str, address: str, *args: str, env: dict[str, str]) -> None:
        module = f"muster_{program}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--dispatcher", address, "--log-level", "info", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: queue.Queue[str] = queue.Queue()
        self.printed: list[str] = []  # every stdout line, also those taken from `lines`
        self.logged: list[str] = []  # every stderr line
        for stream, target in ((self.proc.stdout, self.lines), (self.proc.stderr, self.log)):
            threading.Thread(target=self._pump, args=(stream, target), daemon=True).start()

    def _pump(self, stream: Any, target: queue.Queue[str]) -> None:
        for line in stream:
            (self.printed if target is self.lines else self.logged).append(line.rstrip())
            target.put(line.rstrip())

    def wait_log(self, text: str, timeout: float = 30) -> str:
        return self._wait(self.log, text, timeout)

    def wait_line(self, text: str, timeout: float = 30) -> str:
        """The next stdout line containing `text` (lines before it are consumed)."""
        return self._wait(self.lines, text, timeout)

    def _wait(self, source: queue.Queue[str], text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = source.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line with {text!r} within {timeout}s; printed: {self.printed[-20:]};"
                    f" logged: {self.logged[-20:]}"
                ) from None
            if text in line:
                return line

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(15)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def until_lock_wait(db: Any, seconds: float = 10.0) -> None:
    """Return once a backend of `db`'s database (a fresh one per test) waits
    for a lock: the concurrent transaction a test started has come to block."""
    deadline = time.monotonic() + seconds
    with db.read() as connection:
        while not connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        ).scalar_one():
            assert time.monotonic() < deadline, "no transaction came to wait for a lock"
            time.sleep(0.02)


@contextlib.contextmanager
def executed(db: Any, explain: str = "") -> Iterator[list[str]]:
    """The statements `db`'s engine runs inside the block, in order; with
    `explain`, instead the plans (EXPLAIN, costs off) of those containing it."""
    found: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if not explain:
            found.append(statement)
        elif explain in statement and not statement.startswith("EXPLAIN"):
            cursor.execute(f"EXPLAIN (COSTS OFF) {statement}", params)
            found.append("\n".join(row[0] for row in cursor.fetchall()))

    sqlalchemy_event.listen(db.engine, "before_cursor_execute", seen)
    try:
        yield found
    finally:
        sqlalchemy_event.remove(db.engine, "before_cursor_execute", seen)


def busy_farm(
    db: Any, job_id: int, count: int, free_every: int = 10, analysed: bool = True
) -> list[int]:
    """`count` online nodes, each but every `free_every`-th holding a live
    assignment of one of job `job_id`'s chunks 1..count (which must exist),
    tables analysed unless `analysed` is False (a young farm): a farm large
    enough that a plan scanning a whole table per batch shows. Returns the
    nodes' ids in chunk order."""
    with db.transaction() as session:
        ids = [
            int(i)
            for i in session.execute(
                text(
                    "INSERT INTO nodes (name, host_name, platform, status, session_id,"
                    " last_heartbeat_at) SELECT 'farm-' || g, 'farm-' || g, 'linux', 'idle',"
                    " 'live', now() FROM generate_series(1, :count) g RETURNING id"
                ),
                {"count": count},
            ).scalars()
        ]
        session.execute(
            text(
                "INSERT INTO chunk_assignments (job_id, chunk_number, node_id, state)"
                " SELECT :job, g, (CAST(:ids AS bigint[]))[g], 'running'"
                " FROM generate_series(1, :count) g WHERE g % :every <> 0"
            ),
            {"job": job_id, "ids": ids, "count": count, "every": free_every},
        )
        for table in ("nodes", "chunks", "chunk_assignments") if analysed else ():
            session.execute(text(f"ANALYZE {table}"))
    return ids
