"""systemStartNodesNetworkScan finds agents on the (loopback) network."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.e2e.conftest import DISCOVERY_PORT, free_port
from tests.e2e.test_render import eventually


def test_a_network_scan_lists_an_agent_that_never_registered(
    channel: grpc.Channel,
    nodes: nodes_pb2_grpc.NodesServiceStub,
    start_agent: Callable[..., Any],
) -> None:
    # An agent pointed at a dispatcher that does not exist: only the scan finds it.
    start_agent(
        "e2e-stray",
        env={"MUSTER_AGENT_DISCOVERY": f"127.0.0.1:{DISCOVERY_PORT}"},
        address=f"127.0.0.1:{free_port()}",
    )
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    admin.UpdateDispatcherConfiguration(
        admin_pb2.UpdateDispatcherConfigurationRequest(
            configuration=admin_pb2.DispatcherConfiguration(network_scan_ranges=["127.0.0.1/32"]),
            update_mask=field_mask_pb2.FieldMask(paths=["network_scan_ranges"]),
            persist=False,
        )
    )

    def found() -> list[nodes_pb2.Node]:
        try:
            admin.StartNetworkScan(admin_pb2.StartNetworkScanRequest())
        except grpc.RpcError as exc:  # the previous scan is still listening
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        time.sleep(0.5)
        listed = nodes.ListNodes(nodes_pb2.ListNodesRequest()).nodes
        return [n for n in listed if n.name == "e2e-stray"]

    stray = eventually(found, timeout=60, what="the stray agent in the node list")
    assert stray[0].status == nodes_pb2.NODE_STATUS_OFFLINE
    assert stray[0].ip_address == "127.0.0.1"
