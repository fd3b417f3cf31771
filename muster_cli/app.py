"""The `muster` application object, its error handling and its RPC helpers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import typer
from typer import _click
from typer.core import TyperGroup

from muster_cli.session import CliConnection
from muster_gateway.connection import NotConfigured

# Exit codes (docs/cli.md): 0 success, 1 the dispatcher refused or failed,
# 2 bad usage, 3 `watch`: the job failed or finished with errors,
# 4 `watch`: the job finished with warnings, 5 `watch`: the job was deleted.
EXIT_ERROR = 1
EXIT_USAGE = 2

# What each refusal means, in a user's words; the server's message follows.
_STATUS_TEXT = {
    grpc.StatusCode.NOT_FOUND: "not found",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid",
    grpc.StatusCode.PERMISSION_DENIED: "permission denied",
    grpc.StatusCode.UNAUTHENTICATED: "not logged in",
    grpc.StatusCode.FAILED_PRECONDITION: "refused",
    grpc.StatusCode.ALREADY_EXISTS: "already exists",
    grpc.StatusCode.ABORTED: "changed meanwhile, try again",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timed out",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "too much at once",
    grpc.StatusCode.UNAVAILABLE: "dispatcher unreachable",
}


class Failure(Exception):
    """A readable reason to stop, with the exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    raise Failure(message, code)


def describe_rpc_error(exc: grpc.RpcError) -> str:
    code: grpc.StatusCode = exc.code()
    details = str(exc.details() or "").strip()
    label = _STATUS_TEXT.get(code, code.name.lower().replace("_", " "))
    if code == grpc.StatusCode.UNAUTHENTICATED:
        hint = "run `muster login` or set MUSTER_USER and MUSTER_PASSWORD"
        return f"{label}: {details} ({hint})" if details else f"{label} ({hint})"
    if code == grpc.StatusCode.UNAVAILABLE:
        try:
            where = connection().address("jobs")
        except NotConfigured:
            where = "?"
        return f"{label} at {where}: {details}"
    return f"{label}: {details}" if details else label


class CliGroup(TyperGroup):
    """Every command's failure ends as one line on stderr and an exit code."""

    def invoke(self, ctx: _click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Failure as exc:
            message, code = str(exc), exc.code
        except grpc.RpcError as exc:
            message, code = describe_rpc_error(exc), EXIT_ERROR
        except NotConfigured as exc:
            message, code = str(exc), EXIT_ERROR
        except OSError as exc:
            message, code = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_ERROR
        typer.echo(f"muster: {message}".replace("\n", " "), err=True)
        sys.exit(code)


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=CliGroup,
        help=help_text,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


app = new_app("Operate the render farm from a shell: jobs, chunks, logs, nodes and settings.")

_connection: CliConnection | None = None


def connection() -> CliConnection:
    global _connection
    if _connection is None:
        _connection = CliConnection()
    return _connection


def reset() -> None:
    """Forget the connection (the environment changed: tests, `login`)."""
    global _connection
    if _connection is not None:
        _connection.close()
    _connection = None


Reply = TypeVar("Reply")


def call(method: Callable[..., Reply], request: Any, timeout: float | None = None) -> Reply:
    """One unary call with the login's token; logs in again once when the
    token expired and a password is known."""
    conn = connection()
    wait = conn.timeout if timeout is None else timeout
    try:
        return method(request, timeout=wait, metadata=conn.metadata())
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAUTHENTICATED or not conn.forget_token():
            raise
        return method(request, timeout=wait, metadata=conn.metadata())


class _Paged(Protocol):
    page_token: str


def every_page(method: Callable[..., Any], request: _Paged) -> Iterator[Any]:
    """Each reply of a List RPC, following next_page_token."""
    while True:
        reply = call(method, request)
        yield reply
        if not reply.next_page_token:
            return
        request.page_token = reply.next_page_token


def every_item(method: Callable[..., Any], request: _Paged, field: str) -> list[Any]:
    """The items (reply.`field`) of every page of a List RPC."""
    return [item for reply in every_page(method, request) for item in getattr(reply, field)]


def stream_metadata() -> tuple[tuple[str, str], ...]:
    return connection().metadata()
