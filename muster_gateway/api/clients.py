"""Muster's Consoles and Notificators APIs: the live client connections
(farm.nodes.v1.ClientsService)."""

from __future__ import annotations

from typing import Any

from muster_gateway.api._arguments import BadArguments, as_int, as_str
from muster_gateway.api._calls import call, pages, refuse
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MClient, MNClient
from muster_proto.nodes.v1 import nodes_pb2

# --- Consoles ----------


def _consoles(function: str, user: str) -> tuple[MUSTERERR, list[MClient]]:
    err, replies = pages(
        function,
        lambda s: s.clients.ListConsoles,
        lambda: nodes_pb2.ListConsolesRequest(user_name=user),
    )
    return err, [MClient(console) for reply in replies for console in reply.consoles]


def clientGetList() -> tuple[MUSTERERR, list[MClient]]:
    return _consoles("clientGetList", "")


def clientGet(id: Any) -> tuple[MUSTERERR, MClient | None]:
    err, reply = call(
        "clientGet",
        lambda s: s.clients.GetConsole,
        lambda: nodes_pb2.GetConsoleRequest(connection_id=as_int(id, "id")),
    )
    return err, MClient(reply.console) if reply else None


def clientGetByUsername(username: Any) -> tuple[MUSTERERR, list[MClient]]:
    try:
        user = as_str(username, "username")
    except BadArguments as exc:
        return refuse("clientGetByUsername", exc), []
    return _consoles("clientGetByUsername", user)


def clientForceDisconnection(id: Any) -> MUSTERERR:
    return call(
        "clientForceDisconnection",
        lambda s: s.clients.DisconnectConsole,
        lambda: nodes_pb2.DisconnectConsoleRequest(connection_id=as_int(id, "id")),
    )[0]


def sendMessageToConsole(
    id: Any, templateId: Any, message: Any, brodcast: Any = False
) -> MUSTERERR:
    return call(
        "sendMessageToConsole",
        lambda s: s.clients.SendConsoleMessage,
        lambda: nodes_pb2.SendConsoleMessageRequest(
            connection_id=as_int(id, "id"),
            template_id=as_int(templateId, "templateId"),
            message=as_str(message, "message"),
            broadcast=bool(brodcast),
        ),
    )[0]


# --- Notificators ----------


def _notificators(function: str, user: str) -> tuple[MUSTERERR, list[MNClient]]:
    err, replies = pages(
        function,
        lambda s: s.clients.ListNotificators,
        lambda: nodes_pb2.ListNotificatorsRequest(user_name=user),
    )
    return err, [MNClient(client) for reply in replies for client in reply.notificators]


def clientNGetList() -> tuple[MUSTERERR, list[MNClient]]:
    return _notificators("clientNGetList", "")


def clientNGet(id: Any) -> tuple[MUSTERERR, MNClient | None]:
    err, reply = call(
        "clientNGet",
        lambda s: s.clients.GetNotificator,
        lambda: nodes_pb2.GetNotificatorRequest(connection_id=as_int(id, "id")),
    )
    return err, MNClient(reply.notificator) if reply else None


def clientNGetByUsername(username: Any) -> tuple[MUSTERERR, list[MNClient]]:
    try:
        user = as_str(username, "username")
    except BadArguments as exc:
        return refuse("clientNGetByUsername", exc), []
    return _notificators("clientNGetByUsername", user)


def clientNForceDisconnection(id: Any) -> MUSTERERR:
    return call(
        "clientNForceDisconnection",
        lambda s: s.clients.DisconnectNotificator,
        lambda: nodes_pb2.DisconnectNotificatorRequest(connection_id=as_int(id, "id")),
    )[0]


def sendMessageToNotificator(
    id: Any, templateId: Any, message: Any, brodcast: Any = False
) -> MUSTERERR:
    return call(
        "sendMessageToNotificator",
        lambda s: s.clients.SendNotificatorMessage,
        lambda: nodes_pb2.SendNotificatorMessageRequest(
            connection_id=as_int(id, "id"),
            template_id=as_int(templateId, "templateId"),
            message=as_str(message, "message"),
            broadcast=bool(brodcast),
        ),
    )[0]
