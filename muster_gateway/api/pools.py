"""Muster's Pools APIs (farm.admin.v1.AdminService)."""

from __future__ import annotations

from typing import Any

from muster_gateway.api._arguments import as_message, as_str
from muster_gateway.api._calls import call, pages
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MPool
from muster_proto.admin.v1 import admin_pb2


def poolGetList() -> tuple[MUSTERERR, list[MPool]]:
    err, replies = pages("poolGetList", lambda s: s.admin.ListPools, admin_pb2.ListPoolsRequest)
    return err, [MPool(pool) for reply in replies for pool in reply.pools]


def poolGet(name: Any) -> tuple[MUSTERERR, MPool | None]:
    err, reply = call(
        "poolGet",
        lambda s: s.admin.GetPool,
        lambda: admin_pb2.GetPoolRequest(name=as_str(name, "name")),
    )
    return err, MPool(reply.pool) if reply else None


def poolConfigure(pool: Any) -> MUSTERERR:
    return call(
        "poolConfigure",
        lambda s: s.admin.UpdatePool,
        lambda: admin_pb2.UpdatePoolRequest(pool=as_message(pool, MPool, "pool")),
    )[0]


def poolAdd(pool: Any) -> MUSTERERR:
    return call(
        "poolAdd",
        lambda s: s.admin.CreatePool,
        lambda: admin_pb2.CreatePoolRequest(pool=as_message(pool, MPool, "pool")),
    )[0]


def poolRemove(name: Any) -> MUSTERERR:
    return call(
        "poolRemove",
        lambda s: s.admin.DeletePool,
        lambda: admin_pb2.DeletePoolRequest(name=as_str(name, "name")),
    )[0]


def poolNotifyChanges() -> MUSTERERR:
    return call(
        "poolNotifyChanges", lambda s: s.admin.NotifyPoolChanges, admin_pb2.NotifyPoolChangesRequest
    )[0]
