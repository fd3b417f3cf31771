"""What the admin use cases of named rows share (users, groups, pools,
repositories): pages in name order, the lookup that answers NOT_FOUND, and
create and delete by name, with the events they publish (muster_services/core/bus.py
`publish_change`, stamped with the caller)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Row, Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from muster_services.admin import store as repo
from muster_services.core.bus import publish_change
from muster_services.core.database import Database
from muster_services.core.errors import AlreadyExists, InvalidArgument, NotFound
from muster_services.core.paging import Page, page_of, page_request

V = TypeVar("V")

# Rows as the API shows them (one query for the rows' relations).
Views = Callable[[Session, list[Row[Any]]], list[V]]


def named_page(
    session: Session,
    table: Table,
    page_size: int,
    page_token: str,
    convert: Views[V],
    filters: Any = None,
    *where: ColumnElement[bool],
) -> Page[V]:
    """A page of a table of named rows in name order (the key is the name)."""
    page = page_request(page_size, page_token, filters)
    if page.after is not None and not isinstance(page.after, str):
        raise InvalidArgument("page_token is not a token this service issued")
    rows = page_of(repo.names_page(session, table, page.after, page.size + 1, *where), page, _name)
    return Page(convert(session, rows.items), rows.next_page_token)


def _name(row: Row[Any]) -> str:
    return str(row.name)


def check_writable(changes: Mapping[str, Any], writable: tuple[str, ...], what: str) -> None:
    """INVALID_ARGUMENT for an update naming a field that cannot be changed."""
    unknown = sorted(set(changes) - set(writable))
    if unknown:
        raise InvalidArgument(f"update_mask: {what} has no writable field {unknown[0]!r}")


@dataclass(frozen=True)
class Named(Generic[V]):
    """A table of rows known by a unique name, and how the API shows them."""

    table: Table
    what: str  # "user": the message's name of one ("user.name: ...")
    views: Views[V]

    def list(self, db: Database, page_size: int, page_token: str) -> Page[V]:
        with db.transaction() as session:
            return self.page(session, page_size, page_token)

    def get(self, db: Database, name: str) -> V:
        with db.transaction() as session:
            return self.view(session, self.row(session, name))

    def page(
        self,
        session: Session,
        page_size: int,
        page_token: str,
        filters: Any = None,
        *where: ColumnElement[bool],
    ) -> Page[V]:
        return named_page(session, self.table, page_size, page_token, self.views, filters, *where)

    def row(
        self, session: Session, name: str, field_name: str = "name", lock: bool = False
    ) -> Row[Any]:
        """The row named `name` (NOT_FOUND naming `field_name` without one)."""
        row = repo.row_by_name(session, self.table, name, lock=lock)
        if row is None:
            raise NotFound(f"{field_name}: no {self.what} named {name!r}")
        return row

    def view(self, session: Session, row: Row[Any]) -> V:
        return self.views(session, [row])[0]

    def create(
        self,
        db: Database,
        name: str,
        request_id: str,
        values: Callable[[], Mapping[str, Any]],
        event: tuple[str, Mapping[str, Any]],
        check: Callable[[Session], None] | None = None,
        relate: Callable[[Session, int], None] | None = None,
    ) -> V:
        """Insert a row named `name` (its other columns: `values()`) and
        publish `event` (topic, payload); `check` runs before the insert and
        `relate` after it, with the new row's id. A request id seen before
        answers the row it created; a name taken, or taken by a concurrent
        creation, is ALREADY_EXISTS."""
        try:
            with db.transaction() as session:
                if request_id:
                    earlier = repo.row_by_request_id(session, self.table, request_id)
                    if earlier is not None:
                        return self.view(session, earlier)
                if repo.row_by_name(session, self.table, name) is not None:
                    raise AlreadyExists(f"{self.what}.name: {name!r} already exists")
                if check is not None:
                    check(session)
                row = repo.insert_row(
                    session,
                    self.table,
                    {"name": name, **values(), "request_id": request_id or None},
                )
                if relate is not None:
                    relate(session, row.id)
                topic, payload = event
                publish_change(session, topic, payload, key=name)
                return self.view(session, row)
        except IntegrityError as error:
            # A concurrent creation of the same name lost on the unique constraint.
            if "uq_" in str(error.orig) or "ux_" in str(error.orig):
                raise AlreadyExists(f"{self.what}.name: {name!r} already exists") from None
            raise

    def update_listed(
        self,
        db: Database,
        name: str,
        changes: Mapping[str, Any],
        listed: str,
        checked: Callable[[str, str, tuple[str, ...]], Any],
        store: Callable[[Session, int, Sequence[str]], None],
        topic: str,
        exist: Callable[[Session, Sequence[str]], None] | None = None,
    ) -> V:
        """Change the description and the list named `listed` (a group's
        members, a pool's nodes) of the row named `name`: `checked(name,
        description, list)` is the domain's checked spec, `exist` checks the
        listed names exist, `store` writes a changed list; publishes `topic`
        with the list."""
        check_writable(changes, ("description", listed), self.what)
        field_name = f"{self.what}.name"
        with db.transaction() as session:
            row = self.row(session, name, field_name, lock=True)
            current: Any = self.view(session, row)
            before = tuple(getattr(current, listed))
            spec = checked(
                name,
                changes.get("description", current.description),
                tuple(changes.get(listed, before)),
            )
            after = tuple(getattr(spec, listed))
            if exist is not None:
                exist(session, after)
            repo.update_row(session, self.table, row.id, {"description": spec.description})
            if after != before:
                store(session, row.id, after)
            publish_change(session, topic, {self.what: name, listed: list(after)}, key=name)
            return self.view(session, self.row(session, name, field_name))

    def delete(self, db: Database, name: str, topic: str) -> None:
        """Delete the row named `name` and publish `topic` ({what: name})."""
        with db.transaction() as session:
            row = self.row(session, name, lock=True)
            repo.delete_row(session, self.table, row.id)
            publish_change(session, topic, {self.what: name}, key=name)
