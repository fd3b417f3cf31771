"""The network scan (systemStartNodesNetworkScan), on the nodes service's side.

A UDP beacon goes to the discovery port of every address of the configured
scan ranges and of every registered node that is offline; agents answer with
who they are. Agents not registered yet appear in the node list as offline
nodes (they register themselves once pointed at this dispatcher); registered
ones are known to be reachable. The scan ends with
`system.network_scan_finished` (found, new).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from muster_services.core.bus import Event, publish
from muster_services.nodes import store as repo
from muster_services.nodes import topics

_LOG = logging.getLogger(__name__)

DEFAULT_DISCOVERY_PORT = 50052
ANSWER_WINDOW_SECONDS = 2.0
MAX_TARGETS = 65_536


def targets(ranges: Iterable[str], offline_ips: Iterable[str]) -> list[str]:
    """Every address to send a beacon to (pure): the ranges' hosts, then the
    offline nodes' addresses, each once, at most MAX_TARGETS."""
    seen: dict[str, None] = {}
    for cidr in ranges:
        network = ipaddress.ip_network(cidr, strict=False)
        hosts = [network.network_address] if network.num_addresses == 1 else network.hosts()
        for host in hosts:
            seen[str(host)] = None
            if len(seen) >= MAX_TARGETS:
                return list(seen)
    for ip in offline_ips:
        if ip:
            seen[ip] = None
    return list(seen)[:MAX_TARGETS]


def probe(
    addresses: list[str], port: int, scan_id: str, window: float = ANSWER_WINDOW_SECONDS
) -> list[dict[str, Any]]:
    """Send one beacon to each address and gather the answers for `window` seconds."""
    beacon = json.dumps({"muster": "scan", "scan_id": scan_id}).encode()
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for address in addresses:
            try:
                sock.sendto(beacon, (address, port))
            except OSError as exc:
                _LOG.debug("beacon to %s failed: %s", address, exc)
        deadline = time.monotonic() + window
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (ip, _) = sock.recvfrom(4096)
            except (TimeoutError, OSError):
                break
            try:
                reply = json.loads(data)
            except ValueError:
                continue
            if isinstance(reply, dict) and reply.get("scan_id") == scan_id:
                reply["ip_address"] = ip
                answers[(ip, str(reply.get("host_name", "")))] = reply
    return list(answers.values())


def record(session: Session, answers: list[dict[str, Any]]) -> int:
    """Add the answering agents that are not registered as offline nodes."""
    added = 0
    for reply in answers:
        host = str(reply.get("host_name", ""))[:255]
        if not host:
            continue
        platform = str(reply.get("platform", ""))
        platform = platform if platform in ("windows", "linux", "macos") else "linux"
        if repo.host_is_known(session, host):
            continue
        repo.insert_discovered_node(
            session,
            host,
            reply.get("ip_address", ""),
            platform,
            str(reply.get("agent_version", ""))[:64],
        )
        added += 1
    return added


def run_scan(session: Session, event: Event, port: int) -> None:
    """The bus handler of system.network_scan (one replica at a time)."""
    ranges = [str(r) for r in event.payload.get("ranges", [])]
    offline = repo.offline_ip_addresses(session)
    answers = probe(targets(ranges, offline), port, str(event.id))
    added = record(session, answers)
    publish(
        session,
        topics.SYSTEM_NETWORK_SCAN_FINISHED,
        {"found": len(answers), "new": added, "actor": "dispatcher"},
    )
    _LOG.info("network scan: %d agents answered, %d new nodes", len(answers), added)
