"""The admin service as the server hosts it: users, pools, repositories, system."""

from __future__ import annotations

import grpc

from farm.admin.v1 import admin_pb2, admin_pb2_grpc
from services.core.database import Database
from services.core.server import Component, contract_base
from services.core.settings import Settings

ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]


class AdminServicer(contract_base(admin_pb2_grpc.AdminServiceServicer, ADMIN_SERVICE)):  # type: ignore[misc]
    """Translates AdminService calls to the admin service layer."""

    def __init__(self, db: Database) -> None:
        self.db = db


def build(db: Database, settings: Settings) -> Component:
    servicer = AdminServicer(db)

    def register(server: grpc.aio.Server) -> None:
        admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)

    return Component("admin", [ADMIN_SERVICE], register)
