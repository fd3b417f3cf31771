"""The nodes service as the server hosts it: render nodes and their agents'
sessions, console and notificator connections, messaging to all three."""

from __future__ import annotations

from typing import cast

import grpc

from muster_proto.agent.v1 import agent_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc
from muster_services.admin import topics as admin_topics
from muster_services.core import metrics
from muster_services.core.auth import ENROLLMENT_SECRET, ServiceIdentity, farm_secret, security_for
from muster_services.core.background import Periodic
from muster_services.core.bus import (
    ASSIGNMENTS_CHANNEL,
    DurableConsumer,
    HintListener,
    Listener,
    LiveSubscription,
)
from muster_services.core.database import Database
from muster_services.core.server import Component, RawResponseServer
from muster_services.core.settings import Settings
from muster_services.jobs import for_nodes
from muster_services.jobs import topics as jobs_topics
from muster_services.nodes import store, topics
from muster_services.nodes.client_hub import ClientHub
from muster_services.nodes.clients import ClientsService
from muster_services.nodes.delivery import AssignmentDelivery
from muster_services.nodes.enrollment import Enrollment
from muster_services.nodes.relay import ResultRelay
from muster_services.nodes.scan import run_scan
from muster_services.nodes.service import NodesService, new_replica_id
from muster_services.nodes.servicer import (
    AGENT_SERVICE,
    CLIENTS_SERVICE,
    NODES_SERVICE,
    AgentServicer,
    ClientsServicer,
    NodesServicer,
)
from muster_services.nodes.sessions import RELEASING_TOPICS, SessionHub
from muster_services.nodes.timings import NodeTimings

LOST_SWEEP_SECONDS = 1.0


def build(db: Database, settings: Settings) -> Component:
    replica = new_replica_id()
    service = NodesService(db, replica)
    hub = SessionHub(service)
    client_hub = ClientHub(db, ClientsService(db, replica), settings.client_timeout_seconds)
    security = security_for(db)
    delivery = AssignmentDelivery(db, service, hub)
    relay = ResultRelay(db, service, hub, ServiceIdentity(security, "nodes"))
    relay.jobs_address = settings.jobs_address
    hub.render_listener = delivery
    nodes = NodesServicer(service)
    clients = ClientsServicer(client_hub.service, client_hub)
    timings = NodeTimings(db, settings.node_lost_timeout_seconds)
    hub.timings = timings
    relay.timings = timings
    enrollment = Enrollment(
        security.signer, farm_secret(db, ENROLLMENT_SECRET, settings.enrollment_secret())
    )
    agent = AgentServicer(service, hub, delivery, relay, timings, enrollment)

    def register(server: grpc.aio.Server) -> None:
        nodes_pb2_grpc.add_NodesServiceServicer_to_server(nodes, server)
        # Connect sends events serialized once for every stream (client_hub.py).
        nodes_pb2_grpc.add_ClientsServiceServicer_to_server(
            clients, cast(grpc.aio.Server, RawResponseServer(server, ["Connect"]))
        )
        agent_pb2_grpc.add_AgentServiceServicer_to_server(agent, server)

    return Component(
        "nodes",
        [NODES_SERVICE, CLIENTS_SERVICE, AGENT_SERVICE],
        register,
        on_listening=[relay.listening],
        security=security,
        metrics=[metrics.nodes_by_state(db, store.count_by_state)],
        background=[
            delivery,
            relay,
            # chunkSetStatus on a running chunk: its process is killed (once).
            Listener(
                DurableConsumer(
                    db,
                    "nodes-chunk-kills",
                    lambda session, event: service.kill_requested(session, event.payload),
                    topics=[jobs_topics.CHUNK_KILL_REQUESTED],
                ),
                settings.event_poll_seconds,
                exclusive=True,
            ),
            Listener(
                DurableConsumer(
                    db,
                    "nodes-network-scan",
                    lambda session, event: run_scan(session, event, settings.discovery_port),
                    topics=[admin_topics.SYSTEM_NETWORK_SCAN],
                    transactional=False,
                ),
                settings.event_poll_seconds,
                exclusive=True,
            ),
            hub,
            client_hub,
            # The scheduler's hints: assignments go out the moment they commit
            # (and the state table is read whenever it listens again).
            HintListener(
                db,
                ASSIGNMENTS_CHANNEL,
                hub.on_assigned,
                settings.event_poll_seconds,
                on_listening=delivery.listening,
            ),
            LiveSubscription(
                db,
                [
                    topics.NODE_COMMAND,
                    topics.NODE_DELETED,
                    admin_topics.SYSTEM_SOFT_RESTART,
                    *sorted(for_nodes.REFERENCE_TOPICS),
                    *sorted(RELEASING_TOPICS),
                ],
                hub.on_events,
                settings.event_poll_seconds,
                consumer="nodes-agents",
            ),
            Periodic(
                "lost-nodes",
                LOST_SWEEP_SECONDS,
                lambda: relay.release_lost(
                    sorted(
                        set(service.sweep_lost(timings.lost_timeout()))
                        | set(service.offline_with_chunks())
                    )
                ),
            ),
        ],
    )
