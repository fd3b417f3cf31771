"""Answering the dispatcher's network scan (systemStartNodesNetworkScan).

The agent listens for UDP beacons on the discovery port (50052 by default,
MUSTER_AGENT_DISCOVERY="host:port" to change it, "off" to disable) and
answers each with who it is: its host name, instances, platform, version and
the dispatcher it talks to. It never changes its own dispatcher because of a
beacon: a stranger on the network cannot redirect a render node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import platform
from collections.abc import Callable, Mapping
from typing import Any

_LOG = logging.getLogger(__name__)

DEFAULT_DISCOVERY = "0.0.0.0:50052"
MAX_DATAGRAM = 4096


def discovery_address(env: Mapping[str, str]) -> tuple[str, int] | None:
    raw = env.get("MUSTER_AGENT_DISCOVERY", "").strip() or DEFAULT_DISCOVERY
    if raw.lower() in ("off", "0", "none"):
        return None
    host, _, port = raw.rpartition(":")
    return (host or "0.0.0.0", int(port))


def answer(beacon: bytes, identity: Mapping[str, Any]) -> bytes | None:
    """The reply to a beacon, or None for anything that is not one (pure)."""
    if len(beacon) > MAX_DATAGRAM:
        return None
    try:
        message = json.loads(beacon)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("muster") != "scan":
        return None
    return json.dumps({"muster": "here", "scan_id": message.get("scan_id"), **identity}).encode()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, identity: Callable[[], Mapping[str, Any]]) -> None:
        self.identity = identity
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = answer(data, self.identity())
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def listen(
    address: tuple[str, int] | None, name: str, instances: int, dispatcher: str, version: str
) -> asyncio.DatagramTransport | None:
    """Start answering beacons; None when disabled or the port is taken."""
    if address is None:
        return None
    identity = {
        "host_name": name,
        "instances": instances,
        "platform": platform.system().lower(),
        "agent_version": version,
        "dispatcher": dispatcher,
    }
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(lambda: identity), local_addr=address
        )
    except OSError as exc:
        _LOG.warning("network scan answers disabled: cannot listen on %s:%s (%s)", *address, exc)
        return None
    _LOG.info("answering network scans on udp %s:%s", *address)
    return transport
