"""Who is calling: set for every RPC by the server, read by service layers.

Service layers record the caller in events (the action log is built from
them) and decide ownership from it. The server's guard (muster_services/core/auth.py)
builds it from the verified token of each call, so the name is a proof, not a
claim.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    name: str = ""
    peer: str = ""
    # "administrator" or "user" (empty for agents and anonymous callers).
    role: str = ""
    # "user", "service" (the dispatcher's own services) or "agent".
    kind: str = "user"
    # Agents only: the host name and instance their token is bound to.
    host: str = ""
    instance: int = 0

    @property
    def label(self) -> str:
        return self.name or "anonymous"

    @property
    def is_administrator(self) -> bool:
        return self.role == "administrator"

    def may_act_for(self, owner: str) -> bool:
        """Whether this caller may change something `owner` owns."""
        return self.is_administrator or (self.kind == "user" and self.name == owner)

    def describe(self) -> str:
        if not self.name:
            return "caller is not logged in"
        role = f", {self.role}" if self.role else ""
        return f"caller is {self.name} ({self.kind}{role})"

    def stamp(self) -> dict[str, str]:
        """Who and from where, for the events a change publishes (the action log)."""
        return {"actor": self.label, "peer": self.peer}


SYSTEM = Caller(name="dispatcher", peer="local", role="administrator", kind="service")

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
