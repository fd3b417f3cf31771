"""The nodes service as the server hosts it: render nodes and their agents'
sessions, console and notificator connections, messaging to all three."""

from __future__ import annotations

import grpc

from farm.agent.v1 import agent_pb2, agent_pb2_grpc
from farm.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from services.core.database import Database
from services.core.server import Component, contract_base
from services.core.settings import Settings

NODES_SERVICE = nodes_pb2.DESCRIPTOR.services_by_name["NodesService"]
CLIENTS_SERVICE = nodes_pb2.DESCRIPTOR.services_by_name["ClientsService"]
AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]


class NodesServicer(contract_base(nodes_pb2_grpc.NodesServiceServicer, NODES_SERVICE)):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        self.db = db


class ClientsServicer(contract_base(nodes_pb2_grpc.ClientsServiceServicer, CLIENTS_SERVICE)):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        self.db = db


class AgentServicer(contract_base(agent_pb2_grpc.AgentServiceServicer, AGENT_SERVICE)):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        self.db = db


def build(db: Database, settings: Settings) -> Component:
    nodes, clients, agent = NodesServicer(db), ClientsServicer(db), AgentServicer(db)

    def register(server: grpc.aio.Server) -> None:
        nodes_pb2_grpc.add_NodesServiceServicer_to_server(nodes, server)
        nodes_pb2_grpc.add_ClientsServiceServicer_to_server(clients, server)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(agent, server)

    return Component("nodes", [NODES_SERVICE, CLIENTS_SERVICE, AGENT_SERVICE], register)
