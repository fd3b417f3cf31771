"""Use cases of console and notificator connections.

A connection is a row in client_connections, held by one nodes-service
replica. Listing reads the rows, so it works across replicas; forcing a
disconnection and messaging publish an event that the holding replica acts
on (client.disconnect, client.message).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from muster_services.core.bus import publish
from muster_services.core.caller import current_caller
from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument, NotFound, PermissionDenied
from muster_services.core.paging import Page, page_of, page_request
from muster_services.nodes import store as repo
from muster_services.nodes import topics

MAX_MESSAGE_LENGTH = 64 * 1024
MAX_FILTER_IDS = 10_000
# A connection its replica has not refreshed for this long is gone.
CONNECTION_TIMEOUT_SECONDS = 60.0


class ClientsService:
    def __init__(self, db: Database, replica: str) -> None:
        self.db = db
        self.replica = replica

    def connect(
        self,
        kind: str,
        host: str,
        version: str,
        subscription: dict[str, list[int]],
        preferences: dict[str, bool],
    ) -> Row[Any]:
        caller = current_caller()
        if len(host) > 255 or len(version) > 255:
            raise InvalidArgument("host and version: at most 255 characters each")
        for name, ids in subscription.items():
            if len(ids) > MAX_FILTER_IDS:
                raise InvalidArgument(f"{name}: at most {MAX_FILTER_IDS} ids")
        with self.db.transaction() as session:
            row = repo.insert_connection(
                session,
                kind=kind,
                user_name=caller.label,
                host=host,
                ip_address=caller.peer,
                client_version=version,
                replica=self.replica,
                subscription=subscription,
                notification_preferences=preferences,
            )
            publish(
                session,
                topics.CLIENT_CONNECTED,
                {"connection_id": row.id, "kind": kind, "actor": caller.label},
                key=str(row.id),
            )
            return row

    def closed(self, connection_id: int, reason: str) -> None:
        with self.db.transaction() as session:
            repo.close_connection(session, connection_id, reason)

    def get(self, kind: str, connection_id: int) -> Row[Any]:
        if connection_id <= 0:
            raise InvalidArgument(f"connection_id: must be a positive id, got {connection_id}")
        with self.db.transaction() as session:
            row = repo.get_connection(session, connection_id, kind)
        if row is None:
            raise NotFound(f"no {kind} is connected with id {connection_id}")
        return row

    def page(self, kind: str, user_name: str, page_size: int, page_token: str) -> Page[Row[Any]]:
        page = page_request(page_size, page_token, {"kind": kind, "user": user_name})
        after = int(page.after) if isinstance(page.after, int) else 0
        with self.db.transaction() as session:
            rows = repo.list_connections(session, kind, user_name, after, page.size + 1)
        return page_of(rows, page, lambda row: row.id)

    def force_disconnect(self, kind: str, connection_id: int) -> None:
        row = self.get(kind, connection_id)
        caller = current_caller()
        if not caller.may_act_for(row.user_name):
            raise PermissionDenied(
                f"{kind} {connection_id} is {row.user_name!r}'s; {caller.describe()}:"
                " only an administrator disconnects another user's clients"
            )
        with self.db.transaction() as session:
            repo.close_connection(session, connection_id, "forced")
            publish(
                session,
                topics.CLIENT_DISCONNECT,
                {"connection_id": connection_id, "kind": kind, **caller.stamp()},
                key=str(connection_id),
            )

    def send_message(
        self, kind: str, connection_id: int, template_id: int, message: str, broadcast: bool
    ) -> int:
        if len(message.encode()) > MAX_MESSAGE_LENGTH:
            raise InvalidArgument(f"message: larger than {MAX_MESSAGE_LENGTH} bytes")
        if template_id < 0:
            raise InvalidArgument(f"template_id: must not be negative, got {template_id}")
        with self.db.transaction() as session:
            if broadcast:
                recipients = len(repo.connected_ids(session, kind))
            else:
                if repo.get_connection(session, connection_id, kind) is None:
                    raise NotFound(f"no {kind} is connected with id {connection_id}")
                recipients = 1
            publish(
                session,
                topics.CLIENT_MESSAGE,
                {
                    "kind": kind,
                    "connection_id": 0 if broadcast else connection_id,
                    "template_id": template_id,
                    "message": message,
                    "sender": current_caller().label,
                    "actor": current_caller().label,
                },
            )
            return recipients

    def refresh(self, positions: dict[int, int]) -> None:
        with self.db.transaction() as session:
            repo.touch_connections(session, positions)

    def sweep_stale(self, timeout_seconds: float = CONNECTION_TIMEOUT_SECONDS) -> list[int]:
        with self.db.transaction() as session:
            return repo.close_stale_connections(session, timeout_seconds)
