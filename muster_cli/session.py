"""Who the `muster` command is and where it connects.

The facade's rules (muster_gateway/connection.py) with one addition: the session
`muster login` stores. Order of the token a command sends:

1. `MUSTER_TOKEN`, as the facade;
2. a login with `MUSTER_USER` and `MUSTER_PASSWORD` when both are set;
3. the token `muster login` stored for this dispatcher's address, while it
   has not expired;
4. a login with the user and password of the client file `dispatcher run`
   writes.

The session file is `$MUSTER_SESSION_FILE`, else `session.json` beside the
client file (`~/.config/muster-dispatcher/session.json`), created mode 0600.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from muster_gateway.client_config import client_config_path, read_json_object, write_private_json
from muster_gateway.connection import Connection
from muster_proto.admin.v1 import admin_pb2


def session_path() -> Path:
    explicit = os.environ.get("MUSTER_SESSION_FILE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    return client_config_path().with_name("session.json")


def read_session() -> dict[str, Any]:
    return read_json_object(session_path())


def write_session(address: str, user: str, token: str, expires: float) -> Path:
    # Private: it holds a bearer token.
    record = {"address": address, "user": user, "token": token, "expires": expires}
    return write_private_json(session_path(), record)


def forget_session() -> bool:
    """Remove the stored session; whether there was one."""
    try:
        session_path().unlink()
    except FileNotFoundError:
        return False
    return True


class CliConnection(Connection):
    """The facade's connection, plus the session of `muster login`."""

    def stored_token(self) -> str:
        """The stored session's token, when it is for this dispatcher and valid."""
        if os.environ.get("MUSTER_TOKEN", "").strip():
            return ""
        if os.environ.get("MUSTER_USER", "").strip() and os.environ.get("MUSTER_PASSWORD"):
            return ""
        stored = read_session()
        if stored.get("address") != self.address("admin"):
            return ""
        if float(stored.get("expires", 0)) <= time.time():
            return ""
        return str(stored.get("token", ""))

    def token(self) -> str:
        return self.stored_token() or super().token()

    def user(self) -> str:
        if self.stored_token():
            return str(read_session().get("user", "")) or super().user()
        return super().user()

    def login(self, user: str, password: str) -> admin_pb2.LoginResponse:
        reply: admin_pb2.LoginResponse = self.admin().Login(
            admin_pb2.LoginRequest(user_name=user, password=password), timeout=self.timeout
        )
        return reply
