"""Where the facade connects and as whom.

Address, in order: `MUSTER_DISPATCHER` (host:port of a dispatcher serving
every service), else the client file that `dispatcher run` writes
(`$MUSTER_CLIENT_CONFIG`, default `~/.config/muster-dispatcher/client.json`).
`MUSTER_JOBS_ADDRESS`, `MUSTER_NODES_ADDRESS`, `MUSTER_ADMIN_ADDRESS` send one
service's calls elsewhere (Kubernetes without a single front door).
The user name sent with calls: `MUSTER_USER`, else the client file's, else
the login name.
"""

from __future__ import annotations

import getpass
import json
import os
import threading

import grpc

from farm.admin.v1 import admin_pb2_grpc
from farm.jobs.v1 import jobs_pb2_grpc
from farm.nodes.v1 import nodes_pb2_grpc
from gateway.client_config import client_config_path, read_client_config

DEFAULT_TIMEOUT_SECONDS = 30.0

# One channel option set for every facade channel: retry when the dispatcher
# is briefly unreachable (a restart), never for anything else.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)
CHANNEL_OPTIONS = [("grpc.service_config", _SERVICE_CONFIG), ("grpc.enable_retries", 1)]


class NotConfigured(Exception):
    """No dispatcher address is known."""


class Connection:
    """Channels and stubs to the dispatcher's services, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self.timeout = float(os.environ.get("MUSTER_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))

    def address(self, service: str) -> str:
        specific = os.environ.get(f"MUSTER_{service.upper()}_ADDRESS", "").strip()
        if specific:
            return specific
        address = os.environ.get("MUSTER_DISPATCHER", "").strip()
        if address:
            return address
        address = str(read_client_config().get("address", "")).strip()
        if address:
            return address
        raise NotConfigured(
            "no dispatcher address: set MUSTER_DISPATCHER=host:port or start one with"
            f" `make run` (which writes {client_config_path()})"
        )

    def user(self) -> str:
        return (
            os.environ.get("MUSTER_USER", "").strip()
            or str(read_client_config().get("user", "")).strip()
            or getpass.getuser()
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-muster-user", self.user()),)

    def channel(self, service: str) -> grpc.Channel:
        address = self.address(service)
        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
                self._channels[address] = channel
            return channel

    def jobs(self) -> jobs_pb2_grpc.JobsServiceStub:
        return jobs_pb2_grpc.JobsServiceStub(self.channel("jobs"))

    def nodes(self) -> nodes_pb2_grpc.NodesServiceStub:
        return nodes_pb2_grpc.NodesServiceStub(self.channel("nodes"))

    def clients(self) -> nodes_pb2_grpc.ClientsServiceStub:
        return nodes_pb2_grpc.ClientsServiceStub(self.channel("nodes"))

    def admin(self) -> admin_pb2_grpc.AdminServiceStub:
        return admin_pb2_grpc.AdminServiceStub(self.channel("admin"))

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


_connection: Connection | None = None
_connection_lock = threading.Lock()


def connection() -> Connection:
    global _connection
    with _connection_lock:
        if _connection is None:
            _connection = Connection()
        return _connection


def reset_connection() -> None:
    """Forget channels (after the environment changed; used by tests)."""
    global _connection
    with _connection_lock:
        if _connection is not None:
            _connection.close()
        _connection = None
