"""The nodes service as the server hosts it: render nodes and their agents'
sessions, console and notificator connections, messaging to all three."""

from __future__ import annotations

import grpc

from farm.agent.v1 import agent_pb2_grpc
from farm.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from services.core.background import Periodic
from services.core.bus import LiveSubscription
from services.core.database import Database
from services.core.server import Component, contract_base
from services.core.settings import Settings
from services.nodes.service import NodesService, new_replica_id
from services.nodes.servicer import AGENT_SERVICE, NODES_SERVICE, AgentServicer, NodesServicer
from services.nodes.sessions import SessionHub

CLIENTS_SERVICE = nodes_pb2.DESCRIPTOR.services_by_name["ClientsService"]

# Until the dispatcher configuration (admin) drives them.
NODE_LOST_TIMEOUT_SECONDS = 60.0
LOST_SWEEP_SECONDS = 5.0


class ClientsServicer(contract_base(nodes_pb2_grpc.ClientsServiceServicer, CLIENTS_SERVICE)):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        self.db = db


def build(db: Database, settings: Settings) -> Component:
    service = NodesService(db, new_replica_id())
    hub = SessionHub(service)
    nodes, clients, agent = NodesServicer(service), ClientsServicer(db), AgentServicer(service, hub)

    def register(server: grpc.aio.Server) -> None:
        nodes_pb2_grpc.add_NodesServiceServicer_to_server(nodes, server)
        nodes_pb2_grpc.add_ClientsServiceServicer_to_server(clients, server)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(agent, server)

    return Component(
        "nodes",
        [NODES_SERVICE, CLIENTS_SERVICE, AGENT_SERVICE],
        register,
        background=[
            hub,
            LiveSubscription(
                db, ["node.command", "node.deleted"], hub.on_event, settings.event_poll_seconds
            ),
            Periodic(
                "lost-nodes",
                LOST_SWEEP_SECONDS,
                lambda: service.sweep_lost(NODE_LOST_TIMEOUT_SECONDS),
            ),
        ],
    )
