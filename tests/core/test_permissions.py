"""The access table covers every RPC, and docs/security.md shows it as it is."""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf.descriptor import ServiceDescriptor

from muster_proto.admin.v1 import admin_pb2
from muster_proto.agent.v1 import agent_pb2
from muster_proto.jobs.v1 import chunk_runs_pb2, jobs_pb2
from muster_proto.nodes.v1 import nodes_pb2
from muster_services.core.permissions import POLICY, Access, access_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
ROW = re.compile(r"^\| `(?P<service>[\w.]+)` \| `(?P<rpc>\w+)` \| (?P<access>\w+) \|")


def _services() -> list[ServiceDescriptor]:
    modules = (jobs_pb2, chunk_runs_pb2, nodes_pb2, agent_pb2, admin_pb2)
    return [s for m in modules for s in m.DESCRIPTOR.services_by_name.values()]


def test_every_rpc_of_every_service_has_an_access_level_and_none_is_stale() -> None:
    declared = {(s.full_name, m.name) for s in _services() for m in s.methods}
    listed = {(service, rpc) for service, rpcs in POLICY.items() for rpc in rpcs}
    assert declared - listed == set(), "RPCs missing from muster_services/core/permissions.py"
    assert listed - declared == set(), "stale entries in muster_services/core/permissions.py"


def test_an_unknown_method_needs_an_administrator() -> None:
    assert access_of("/farm.jobs.v1.JobsService/NotYetWritten") is Access.ADMIN
    assert access_of("/some.Other/Thing") is Access.ADMIN
    assert access_of("/grpc.health.v1.Health/Check") is Access.PUBLIC


def test_docs_security_md_shows_the_access_table_as_the_code_has_it() -> None:
    documented = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            documented[(match["service"], match["rpc"])] = match["access"]
    expected = {
        (service.rsplit(".", 1)[-1], rpc): access.name.lower()
        for service, rpcs in POLICY.items()
        for rpc, access in rpcs.items()
    }
    assert documented == expected
