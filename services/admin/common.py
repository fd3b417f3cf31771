"""What every admin use case shares: events with the caller, pages of named
rows, and the mapping of a lost creation race to ALREADY_EXISTS."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Row, Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from services.admin import store as repo
from services.core.bus import publish
from services.core.caller import current_caller
from services.core.errors import AlreadyExists, InvalidArgument
from services.core.paging import page_request

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


def publish_change(session: Session, topic: str, payload: Mapping[str, Any], key: str = "") -> None:
    """Publish a state change with who made it (the action log reads both)."""
    publish(session, topic, {**payload, **current_caller().stamp()}, key=key)


def named_page(
    session: Session,
    table: Table,
    page_size: int,
    page_token: str,
    convert: Callable[[Session, list[Row[Any]]], list[T]],
    filters: Any = None,
    *where: ColumnElement[bool],
) -> Page[T]:
    """A page of a table of named rows in name order (the key is the name)."""
    page = page_request(page_size, page_token, filters)
    if page.after is not None and not isinstance(page.after, str):
        raise InvalidArgument("page_token is not a token this service issued")
    rows = repo.names_page(session, table, page.after, page.size + 1, *where)
    more = len(rows) > page.size
    rows = rows[: page.size]
    token = page.next_token(rows[-1].name) if more else ""
    return Page(convert(session, rows), token)


@contextmanager
def creating(what: str, name: str) -> Iterator[None]:
    """A concurrent creation of the same name loses on the unique constraint:
    report it as the duplicate it is."""
    try:
        yield
    except IntegrityError as error:
        if "uq_" in str(error.orig) or "ux_" in str(error.orig):
            raise AlreadyExists(f"{what}.name: {name!r} already exists") from None
        raise
