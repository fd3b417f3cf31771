"""Use cases of pools and repositories (Muster's pool* and repositories*
functions). One transaction each; pool.* / repository.* events; the Notify
calls publish pools.changed / repositories.changed with the whole new list,
which consoles and the scheduler (and agents, for repositories) reload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from muster_services.admin import domain, topics
from muster_services.admin import store as repo
from muster_services.admin.common import Named, check_writable
from muster_services.admin.domain import PoolSpec, RepositorySpec
from muster_services.admin.paths import RepositoryPaths
from muster_services.admin.tables import pools, repositories
from muster_services.core.bus import publish_change
from muster_services.core.database import Database
from muster_services.core.paging import Page

REPOSITORY_FIELDS = ("windows_path", "linux_path", "macos_path", "description")


def _pools(session: Session, rows: list[Row[Any]]) -> list[PoolSpec]:
    nodes = repo.nodes_of_pools(session, [r.id for r in rows])
    return [PoolSpec(r.name, r.description, tuple(nodes.get(r.id, ()))) for r in rows]


def _repositories(session: Session, rows: list[Row[Any]]) -> list[RepositorySpec]:
    return [
        RepositorySpec(r.name, r.windows_path, r.linux_path, r.macos_path, r.description)
        for r in rows
    ]


POOLS = Named(pools, "pool", _pools)
REPOSITORIES = Named(repositories, "repository", _repositories)


class ResourcesService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- pools ---------------------------------------------------------------------------------

    def list_pools(self, page_size: int, page_token: str) -> Page[PoolSpec]:
        return POOLS.list(self.db, page_size, page_token)

    def get_pool(self, name: str) -> PoolSpec:
        return POOLS.get(self.db, name)

    def create_pool(self, spec: PoolSpec, request_id: str = "") -> PoolSpec:
        domain.check_pool(spec)
        return POOLS.create(
            self.db,
            spec.name,
            request_id,
            lambda: {"description": spec.description},
            (topics.POOL_CREATED, {"pool": spec.name, "node_names": list(spec.node_names)}),
            relate=lambda session, row_id: repo.set_pool_nodes(session, row_id, spec.node_names),
        )

    def update_pool(self, name: str, changes: Mapping[str, Any]) -> PoolSpec:
        return POOLS.update_listed(
            self.db,
            name,
            changes,
            "node_names",
            lambda name, description, nodes: domain.check_pool(PoolSpec(name, description, nodes)),
            repo.set_pool_nodes,
            topics.POOL_UPDATED,
        )

    def delete_pool(self, name: str) -> None:
        POOLS.delete(self.db, name, topics.POOL_DELETED)

    def notify_pool_changes(self) -> None:
        with self.db.transaction() as session:
            everything = _pools(session, repo.names_page(session, pools, None, 1_000_000))
            publish_change(
                session,
                topics.POOLS_CHANGED,
                {"pools": {p.name: list(p.node_names) for p in everything}},
            )

    # --- repositories --------------------------------------------------------------------------

    def list_repositories(self, page_size: int, page_token: str) -> Page[RepositorySpec]:
        return REPOSITORIES.list(self.db, page_size, page_token)

    def get_repository(self, name: str) -> RepositorySpec:
        return REPOSITORIES.get(self.db, name)

    def create_repository(self, spec: RepositorySpec, request_id: str = "") -> RepositorySpec:
        domain.check_repository(spec)
        values = {f: getattr(spec, f) for f in REPOSITORY_FIELDS}
        return REPOSITORIES.create(
            self.db,
            spec.name,
            request_id,
            lambda: values,
            (topics.REPOSITORY_CREATED, {"repository": spec.name, **values}),
        )

    def update_repository(self, name: str, changes: Mapping[str, Any]) -> RepositorySpec:
        check_writable(changes, REPOSITORY_FIELDS, "repository")
        with self.db.transaction() as session:
            row = REPOSITORIES.row(session, name, "repository.name", lock=True)
            values = {f: changes.get(f, getattr(row, f)) for f in REPOSITORY_FIELDS}
            spec = domain.check_repository(RepositorySpec(name, **values))
            repo.update_row(session, repositories, row.id, values)
            publish_change(
                session, topics.REPOSITORY_UPDATED, {"repository": name, **values}, key=name
            )
            return spec

    def delete_repository(self, name: str) -> None:
        REPOSITORIES.delete(self.db, name, topics.REPOSITORY_DELETED)

    def notify_repository_changes(self) -> None:
        with self.db.transaction() as session:
            everything = _repositories(session, repo.all_repositories(session))
            publish_change(
                session,
                topics.REPOSITORIES_CHANGED,
                {
                    "repositories": {
                        r.name: {f: getattr(r, f) for f in REPOSITORY_FIELDS[:3]}
                        for r in everything
                    }
                },
            )


def read_repository_paths(session: Session) -> list[RepositoryPaths]:
    """Every repository as map_path takes them (a pure read for other services
    and for the agents' configuration)."""
    return [
        RepositoryPaths(r.windows_path, r.linux_path, r.macos_path)
        for r in repo.all_repositories(session)
    ]
