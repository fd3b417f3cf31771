"""The facade's one calling idiom: a Muster function makes one RPC, named as a
stub attribute the type checker sees, and answers `(MUSTERERR, response | None)`.

    err, reply = call("jobGet", lambda s: s.jobs.GetJob,
                      lambda: jobs_pb2.GetJobRequest(job_id=as_int(id, "id")))

`call` makes one unary call; `pages` makes a List call page after page and
returns every item. Both, in this order: refuse a context where the
dispatcher's functions do not work (kErrorWrongContext); take the caller's
token (logging in when needed); resolve the stub (kErrorNotConfigured without
a dispatcher address); build the request (kErrorBadArguments); make the call
with the connection's timeout, logging in again once when the token was
refused; and turn a gRPC status into its MUSTERERR code (muster_gateway/errors.py).
The request is built by a function so that these refusals keep that order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from muster_gateway import errors
from muster_gateway.api._arguments import BadArguments
from muster_gateway.connection import Connection, NotConfigured, connection, session_connection
from muster_gateway.context import running_context
from muster_gateway.errors import MUSTERERR
from muster_proto.admin.v1 import admin_pb2_grpc
from muster_proto.jobs.v1 import jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2_grpc

# Contexts where the dispatcher's functions work (a console script may call
# them too: it targets the dispatcher through the network API).
ALLOWED_CONTEXTS = ("dispatcher", "console")
PAGE_SIZE = 1000

Metadata = tuple[tuple[str, str], ...]


class Stubs:
    """The dispatcher's services for one call: each stub made when named."""

    def __init__(self, conn: Connection, metadata: Metadata) -> None:
        self._conn = conn
        self.timeout = conn.timeout
        self.metadata = metadata

    @property
    def jobs(self) -> jobs_pb2_grpc.JobsServiceStub:
        return self._conn.jobs()

    @property
    def nodes(self) -> nodes_pb2_grpc.NodesServiceStub:
        return self._conn.nodes()

    @property
    def clients(self) -> nodes_pb2_grpc.ClientsServiceStub:
        return self._conn.clients()

    @property
    def admin(self) -> admin_pb2_grpc.AdminServiceStub:
        return self._conn.admin()


Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)
Result = TypeVar("Result")


class PagedRequest(Protocol):
    page_size: int
    page_token: str


class PagedResponse(Protocol):
    @property
    def next_page_token(self) -> str: ...


ListRequest = TypeVar("ListRequest", bound=PagedRequest)
ListResponse = TypeVar("ListResponse", bound=PagedResponse)


def refuse(function: str, exc: BadArguments) -> MUSTERERR:
    """The MUSTERERR of arguments a function refuses before anything else."""
    return MUSTERERR(errors.kErrorBadArguments, f"{function}: {exc}")


def _invoke(function: str, work: Callable[[Stubs], Result]) -> tuple[MUSTERERR, Result | None]:
    context = running_context()
    # A client-library session (connection.using) works in any context, as
    # Muster's client library does: only the context modules are bound to one.
    if context not in ALLOWED_CONTEXTS and session_connection() is None:
        return MUSTERERR(
            errors.kErrorWrongContext,
            f"{function}: MDispatcherAPI works in the dispatcher and console contexts,"
            f" not in {context!r}",
        ), None
    try:
        conn = connection()
        try:
            return errors.SUCCESS, work(Stubs(conn, conn.metadata()))
        except grpc.RpcError as exc:
            # A token that expired or was issued under another signing key:
            # log in again once, when we hold a password to do it with.
            if exc.code() != grpc.StatusCode.UNAUTHENTICATED or not conn.forget_token():
                raise
            return errors.SUCCESS, work(Stubs(conn, conn.metadata()))
    except BadArguments as exc:
        return refuse(function, exc), None
    except NotConfigured as exc:
        return MUSTERERR(errors.kErrorNotConfigured, f"{function}: {exc}"), None
    except grpc.RpcError as exc:
        return MUSTERERR.from_rpc_error(exc, function), None


def call(
    function: str,
    rpc: Callable[[Stubs], grpc.UnaryUnaryMultiCallable[Request, Response]],
    request: Callable[[], Request],
) -> tuple[MUSTERERR, Response | None]:
    """One unary RPC for the Muster function `function`: its reply, or None
    with a non-zero MUSTERERR."""

    def one(stubs: Stubs) -> Response:
        method = rpc(stubs)
        return method(request(), timeout=stubs.timeout, metadata=stubs.metadata)

    return _invoke(function, one)


def pages(
    function: str,
    rpc: Callable[[Stubs], grpc.UnaryUnaryMultiCallable[ListRequest, ListResponse]],
    request: Callable[[], ListRequest],
) -> tuple[MUSTERERR, list[ListResponse]]:
    """Every page of a List RPC, in order; [] with a non-zero MUSTERERR."""

    def every_page(stubs: Stubs) -> list[ListResponse]:
        method = rpc(stubs)
        page = request()
        page.page_size = PAGE_SIZE
        replies: list[ListResponse] = []
        while True:
            reply = method(page, timeout=stubs.timeout, metadata=stubs.metadata)
            replies.append(reply)
            if not reply.next_page_token:
                return replies
            page.page_token = reply.next_page_token

    err, replies = _invoke(function, every_page)
    return err, replies or []
