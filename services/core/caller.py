"""Who is calling: set for every RPC by the server, read by service layers.

Service layers record the caller in events (the action log is built from
them) and, once authentication lands (issue 6), decide permissions from it.
Until then the name comes from the `x-muster-user` metadata the facade sends,
and is a claim, not a proof.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

USER_METADATA_KEY = "x-muster-user"


@dataclass(frozen=True)
class Caller:
    name: str = ""
    peer: str = ""
    # Filled by authentication (issue 6): "administrator" or "user".
    role: str = ""

    @property
    def label(self) -> str:
        return self.name or "anonymous"


SYSTEM = Caller(name="dispatcher", peer="local", role="administrator")

_current: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller", default=SYSTEM)


def current_caller() -> Caller:
    """The caller of the RPC being served (the dispatcher itself outside RPCs)."""
    return _current.get()


@contextmanager
def acting_as(caller: Caller) -> Iterator[Caller]:
    token = _current.set(caller)
    try:
        yield caller
    finally:
        _current.reset(token)


def caller_from_context(context: Any) -> Caller:
    """The caller an RPC context describes (peer address, claimed user name)."""
    metadata = dict(context.invocation_metadata() or ())
    name = metadata.get(USER_METADATA_KEY, "")
    return Caller(name=str(name)[:256], peer=str(context.peer() or ""))
