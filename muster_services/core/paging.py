"""Keyset pagination shared by every List RPC (AIP-158).

A page token is an opaque, URL-safe encoding of the last key returned and a
fingerprint of the request's filters: a token used with different filters is
refused, and paging over a million rows stays an index range scan.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from muster_services.core.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 5000


@dataclass(frozen=True)
class PageRequest:
    size: int
    after: Any  # the last key of the previous page (None on the first page)
    fingerprint: str

    def next_token(self, last_key: Any) -> str:
        return encode_token(last_key, self.fingerprint)


def _fingerprint(filters: Any) -> str:
    raw = json.dumps(filters, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_token(last_key: Any, fingerprint: str) -> str:
    raw = json.dumps({"k": last_key, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_request(page_size: int, page_token: str, filters: Any = None) -> PageRequest:
    """Validate a List request's paging fields.

    page_size 0 means the default, above the maximum is capped, negative is
    INVALID_ARGUMENT; a token that does not decode or was made for other
    filters is INVALID_ARGUMENT.
    """
    if page_size < 0:
        raise InvalidArgument(f"page_size must be >= 0, got {page_size}")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    fingerprint = _fingerprint(filters)
    if not page_token:
        return PageRequest(size, None, fingerprint)
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after, token_fingerprint = decoded["k"], decoded["f"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidArgument("page_token is not a token this service issued") from None
    if token_fingerprint != fingerprint:
        raise InvalidArgument("page_token was issued for a request with other filters")
    return PageRequest(size, after, fingerprint)


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a List RPC's results and the token of the next ("" = last)."""

    items: list[T]
    next_page_token: str


def page_of(
    rows: Sequence[T], request: PageRequest, key: Callable[[T], Any], limit: int | None = None
) -> Page[T]:
    """The page of `rows` a query fetched with limit + 1 (`limit` defaults to
    request.size): the extra row only says whether another page follows, and
    the token carries the key of the last row kept."""
    size = request.size if limit is None else limit
    items = list(rows[:size])
    token = request.next_token(key(items[-1])) if len(rows) > size and items else ""
    return Page(items, token)
