"""The `muster` program: `muster --help`, docs/cli.md."""

from __future__ import annotations

import getpass
import time
from typing import Annotated

import typer

from muster_cli import farm, jobs, render  # noqa: F401  (they add their commands)
from muster_cli.app import app, connection, fail, reset
from muster_cli.session import forget_session, session_path, write_session


@app.command()
def login(
    user: Annotated[str, typer.Option("-u", "--user", help="Login name.")] = "",
    password: Annotated[
        str, typer.Option("-p", "--password", help="Password (asked when absent).")
    ] = "",
) -> None:
    """Log in and keep the session for later commands (docs/cli.md: where, mode 0600)."""
    conn = connection()
    name = user or conn.credentials()[0] or getpass.getuser()
    secret = password or typer.prompt(f"password for {name}", hide_input=True, err=True)
    reply = conn.login(name, secret)
    address = conn.address("admin")
    path = write_session(address, name, reply.token, float(reply.expire_time.seconds))
    reset()
    left = max(0, reply.expire_time.seconds - int(time.time()))
    render.out().print(
        f"logged in as {name} at {address} for {left // 3600}h{left % 3600 // 60:02d};"
        f" session in {path}"
    )


@app.command()
def logout() -> None:
    """Forget the session `muster login` stored."""
    if not forget_session():
        fail(f"no session to forget ({session_path()})")
    render.out().print("logged out")


def main() -> None:
    app(prog_name="muster")
