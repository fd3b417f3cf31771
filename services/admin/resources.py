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

from services.admin import domain
from services.admin import store as repo
from services.admin.common import Page, creating, named_page, publish_change
from services.admin.domain import PoolSpec, RepositorySpec
from services.admin.paths import RepositoryPaths
from services.admin.tables import pools, repositories
from services.core.database import Database
from services.core.errors import AlreadyExists, InvalidArgument, NotFound

REPOSITORY_FIELDS = ("windows_path", "linux_path", "macos_path", "description")


def _pools(session: Session, rows: list[Row[Any]]) -> list[PoolSpec]:
    nodes = repo.nodes_of_pools(session, [r.id for r in rows])
    return [PoolSpec(r.name, r.description, tuple(nodes.get(r.id, ()))) for r in rows]


def _repositories(session: Session, rows: list[Row[Any]]) -> list[RepositorySpec]:
    return [
        RepositorySpec(r.name, r.windows_path, r.linux_path, r.macos_path, r.description)
        for r in rows
    ]


def _unknown(changes: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise InvalidArgument(f"update_mask: {what} has no writable field {unknown[0]!r}")


class ResourcesService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- pools ---------------------------------------------------------------------------------

    def list_pools(self, page_size: int, page_token: str) -> Page[PoolSpec]:
        with self.db.transaction() as session:
            return named_page(session, pools, page_size, page_token, _pools)

    def get_pool(self, name: str) -> PoolSpec:
        with self.db.transaction() as session:
            return self._pool(session, name, "name")

    def _pool(self, session: Session, name: str, field_name: str) -> PoolSpec:
        row = repo.row_by_name(session, pools, name)
        if row is None:
            raise NotFound(f"{field_name}: no pool named {name!r}")
        return _pools(session, [row])[0]

    def create_pool(self, spec: PoolSpec, request_id: str = "") -> PoolSpec:
        domain.check_pool(spec)
        with creating("pool", spec.name), self.db.transaction() as session:
            if request_id:
                earlier = repo.row_by_request_id(session, pools, request_id)
                if earlier is not None:
                    return _pools(session, [earlier])[0]
            if repo.row_by_name(session, pools, spec.name) is not None:
                raise AlreadyExists(f"pool.name: {spec.name!r} already exists")
            row = repo.insert_row(
                session,
                pools,
                {
                    "name": spec.name,
                    "description": spec.description,
                    "request_id": request_id or None,
                },
            )
            repo.set_pool_nodes(session, row.id, spec.node_names)
            publish_change(
                session,
                "pool.created",
                {"pool": spec.name, "node_names": list(spec.node_names)},
                key=spec.name,
            )
            return self._pool(session, spec.name, "pool.name")

    def update_pool(self, name: str, changes: Mapping[str, Any]) -> PoolSpec:
        _unknown(changes, ("description", "node_names"), "pool")
        with self.db.transaction() as session:
            row = repo.row_by_name(session, pools, name, lock=True)
            if row is None:
                raise NotFound(f"pool.name: no pool named {name!r}")
            current = _pools(session, [row])[0]
            spec = domain.check_pool(
                PoolSpec(
                    name,
                    changes.get("description", current.description),
                    tuple(changes.get("node_names", current.node_names)),
                )
            )
            repo.update_row(session, pools, row.id, {"description": spec.description})
            if spec.node_names != current.node_names:
                repo.set_pool_nodes(session, row.id, spec.node_names)
            publish_change(
                session,
                "pool.updated",
                {"pool": name, "node_names": list(spec.node_names)},
                key=name,
            )
            return self._pool(session, name, "pool.name")

    def delete_pool(self, name: str) -> None:
        with self.db.transaction() as session:
            row = repo.row_by_name(session, pools, name, lock=True)
            if row is None:
                raise NotFound(f"name: no pool named {name!r}")
            repo.delete_row(session, pools, row.id)
            publish_change(session, "pool.deleted", {"pool": name}, key=name)

    def notify_pool_changes(self) -> None:
        with self.db.transaction() as session:
            everything = _pools(session, repo.names_page(session, pools, None, 1_000_000))
            publish_change(
                session,
                "pools.changed",
                {"pools": {p.name: list(p.node_names) for p in everything}},
            )

    # --- repositories --------------------------------------------------------------------------

    def list_repositories(self, page_size: int, page_token: str) -> Page[RepositorySpec]:
        with self.db.transaction() as session:
            return named_page(session, repositories, page_size, page_token, _repositories)

    def get_repository(self, name: str) -> RepositorySpec:
        with self.db.transaction() as session:
            return self._repository(session, name, "name")

    def _repository(self, session: Session, name: str, field_name: str) -> RepositorySpec:
        row = repo.row_by_name(session, repositories, name)
        if row is None:
            raise NotFound(f"{field_name}: no repository named {name!r}")
        return _repositories(session, [row])[0]

    def create_repository(self, spec: RepositorySpec, request_id: str = "") -> RepositorySpec:
        domain.check_repository(spec)
        with creating("repository", spec.name), self.db.transaction() as session:
            if request_id:
                earlier = repo.row_by_request_id(session, repositories, request_id)
                if earlier is not None:
                    return _repositories(session, [earlier])[0]
            if repo.row_by_name(session, repositories, spec.name) is not None:
                raise AlreadyExists(f"repository.name: {spec.name!r} already exists")
            values = {f: getattr(spec, f) for f in REPOSITORY_FIELDS}
            repo.insert_row(
                session,
                repositories,
                {"name": spec.name, **values, "request_id": request_id or None},
            )
            publish_change(
                session, "repository.created", {"repository": spec.name, **values}, key=spec.name
            )
            return spec

    def update_repository(self, name: str, changes: Mapping[str, Any]) -> RepositorySpec:
        _unknown(changes, REPOSITORY_FIELDS, "repository")
        with self.db.transaction() as session:
            row = repo.row_by_name(session, repositories, name, lock=True)
            if row is None:
                raise NotFound(f"repository.name: no repository named {name!r}")
            values = {f: changes.get(f, getattr(row, f)) for f in REPOSITORY_FIELDS}
            spec = domain.check_repository(RepositorySpec(name, **values))
            repo.update_row(session, repositories, row.id, values)
            publish_change(session, "repository.updated", {"repository": name, **values}, key=name)
            return spec

    def delete_repository(self, name: str) -> None:
        with self.db.transaction() as session:
            row = repo.row_by_name(session, repositories, name, lock=True)
            if row is None:
                raise NotFound(f"name: no repository named {name!r}")
            repo.delete_row(session, repositories, row.id)
            publish_change(session, "repository.deleted", {"repository": name}, key=name)

    def notify_repository_changes(self) -> None:
        with self.db.transaction() as session:
            everything = _repositories(session, repo.all_repositories(session))
            publish_change(
                session,
                "repositories.changed",
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
