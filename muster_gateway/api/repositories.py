"""Muster's Repositories APIs (farm.admin.v1.AdminService)."""

from __future__ import annotations

from typing import Any

from muster_gateway.api._arguments import as_message, as_str
from muster_gateway.api._calls import call, pages
from muster_gateway.errors import MUSTERERR
from muster_gateway.objects import MRepository
from muster_proto.admin.v1 import admin_pb2


def repositoriesGetList() -> tuple[MUSTERERR, list[MRepository]]:
    err, replies = pages(
        "repositoriesGetList",
        lambda s: s.admin.ListRepositories,
        admin_pb2.ListRepositoriesRequest,
    )
    return err, [MRepository(item) for reply in replies for item in reply.repositories]


def repositoriesGet(name: Any) -> tuple[MUSTERERR, MRepository | None]:
    err, reply = call(
        "repositoriesGet",
        lambda s: s.admin.GetRepository,
        lambda: admin_pb2.GetRepositoryRequest(name=as_str(name, "name")),
    )
    return err, MRepository(reply.repository) if reply else None


def repositoriesConfigure(repository: Any) -> MUSTERERR:
    return call(
        "repositoriesConfigure",
        lambda s: s.admin.UpdateRepository,
        lambda: admin_pb2.UpdateRepositoryRequest(
            repository=as_message(repository, MRepository, "repository")
        ),
    )[0]


def repositoriesAdd(repository: Any) -> MUSTERERR:
    return call(
        "repositoriesAdd",
        lambda s: s.admin.CreateRepository,
        lambda: admin_pb2.CreateRepositoryRequest(
            repository=as_message(repository, MRepository, "repository")
        ),
    )[0]


def repositoriesNotifyChanges() -> MUSTERERR:
    return call(
        "repositoriesNotifyChanges",
        lambda s: s.admin.NotifyRepositoryChanges,
        admin_pb2.NotifyRepositoryChangesRequest,
    )[0]


def repositoriesRemove(repository: Any) -> MUSTERERR:
    return call(
        "repositoriesRemove",
        lambda s: s.admin.DeleteRepository,
        lambda: admin_pb2.DeleteRepositoryRequest(name=as_str(repository, "repository")),
    )[0]
