"""Helpers for tests that start real dispatcher processes."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from services.core.server import Component, DispatcherServer

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"^dispatcher ready: (?P<names>[\w ]+) at (?P<address>\S+)$")


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
            [sys.executable, "-m", "services.cli", *args],
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
            match = READY.match(line)
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

    def __exit__(self, *exc: object) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return
        asyncio.run_coroutine_threadsafe(server.stop(1), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(30)
