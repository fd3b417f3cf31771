"""The dashboard's HTTP side: the single page, its JSON API and live streams.

Every API call is made to the services with the token of the user whose
browser asked (an HttpOnly cookie set at login), so what a user may see and do
is what the services allow them; a refusal comes back with the service's own
message and the matching HTTP status (upstream.HTTP_STATUS).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import Cookie, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel

from muster_gateway.tls import open_aio_channel
from muster_proto.admin.v1 import admin_pb2
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2
from muster_services.core.auth import auth_metadata
from muster_web import views
from muster_web.hub import EventHub
from muster_web.settings import WebSettings
from muster_web.upstream import Upstream, http_status

COOKIE = "muster_session"
USER_COOKIE = "muster_user"
# Sent by the page's own script with every change: a form or link on another
# site cannot add it, so no cross-site request can act for the user.
CSRF_HEADER = "x-muster-web"
STATIC = resources.files("muster_web") / "static"
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


def session(muster_session: Annotated[str, Cookie()] = "") -> str:
    if not muster_session:
        raise HTTPException(401, "not logged in")
    return muster_session


def from_page(x_muster_web: Annotated[str, Header()] = "") -> None:
    """Requests that change something come from the dashboard's own script."""
    if x_muster_web != "1":
        raise HTTPException(403, f"needs the {CSRF_HEADER} header the dashboard page sends")


Token = Annotated[str, Depends(session)]
FromPage = Annotated[None, Depends(from_page)]


def accepted(request: Request, token: Token) -> str:
    """The session's token once the services accepted it, before a stream
    starts (its status cannot change after): a stale or forged cookie gets
    401 and is never lent to the shared event connection."""
    request.app.state.check_token(token)
    return token


Accepted = Annotated[str, Depends(accepted)]


def change(token: Token, _: FromPage) -> str:
    return token


Changing = Annotated[str, Depends(change)]


def _paused(job_id: int, paused: bool) -> jobs_pb2.UpdateJobRequest:
    request = jobs_pb2.UpdateJobRequest(job=jobs_pb2.Job(id=job_id, paused=paused))
    request.update_mask.paths.append("paused")
    return request


class LoginForm(BaseModel):
    user: str
    password: str


def create_app(settings: WebSettings, upstream: Upstream | None = None) -> FastAPI:
    upstream = upstream or Upstream()
    hub = EventHub(upstream)
    aio_channels: dict[str, grpc.aio.Channel] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        hub.stop()
        for channel in aio_channels.values():
            await channel.close(None)

    app = FastAPI(title="Render farm dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.hub = hub
    app.state.upstream = upstream

    def call(method: Callable[..., T], request: Any, token: str) -> T:
        try:
            return method(request, metadata=auth_metadata(token), timeout=upstream.timeout)
        except grpc.RpcError as exc:
            raise HTTPException(http_status(exc.code()), exc.details() or exc.code().name) from None

    def check_token(token: str) -> None:
        call(upstream.admin().GetStatisticsBounds, admin_pb2.GetStatisticsBoundsRequest(), token)

    app.state.check_token = check_token

    def perform(
        what: str,
        ident: int,
        action: str,
        token: str,
        actions: dict[str, tuple[Callable[..., Any], Any]],
    ) -> views.Json:
        """Make the named action's call; 404 naming the actions there are."""
        if action not in actions:
            raise HTTPException(404, f"no {what} action {action!r}: {', '.join(actions)}")
        method, request = actions[action]
        call(method, request, token)
        return {"done": action, f"{what}_id": ident}

    def paged(
        method: Callable[..., Any], request: Any, token: str, field: str, view: Callable[[Any], Any]
    ) -> views.Json:
        """One page of a List call: its items as the page shows them, the next token."""
        reply = call(method, request, token)
        items = [view(item) for item in getattr(reply, field)]
        return {field: items, "next_page_token": reply.next_page_token}

    @app.exception_handler(HTTPException)
    async def error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """One readable line: 'query.page_size: Input should be ...'."""
        problems = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    # --- the page -------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> views.Json:
        """Liveness and readiness (Kubernetes probes); says nothing of the services."""
        return {"ok": True}

    # --- session --------------------------------------------------------------

    @app.post("/api/login")
    def login(form: LoginForm, _: FromPage) -> Response:
        try:
            reply = upstream.admin().Login(
                admin_pb2.LoginRequest(user_name=form.user, password=form.password),
                timeout=upstream.timeout,
            )
        except grpc.RpcError as exc:
            raise HTTPException(http_status(exc.code()), exc.details() or exc.code().name) from None
        role = views.enum_name(admin_pb2.UserRole, reply.role, "USER_ROLE_")
        response = JSONResponse({"user": form.user, "role": role})
        max_age = max(0, int(reply.expire_time.seconds - time.time()))
        for name, value, http_only in (
            (COOKIE, reply.token, True),
            (USER_COOKIE, form.user, False),
        ):
            response.set_cookie(
                name,
                value,
                max_age=max_age,
                httponly=http_only,
                secure=settings.cookie_secure,
                samesite="strict",
            )
        return response

    @app.post("/api/logout")
    def logout() -> Response:
        response = JSONResponse({})
        response.delete_cookie(COOKIE)
        response.delete_cookie(USER_COOKIE)
        return response

    # --- jobs -----------------------------------------------------------------

    @app.get("/api/jobs")
    def list_jobs(
        token: Token,
        parent: int | None = -1,
        page_token: str = "",
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    ) -> views.Json:
        request = jobs_pb2.ListJobsRequest(page_size=page_size, page_token=page_token)
        if parent is not None:
            request.parent_id = parent
        return paged(upstream.jobs().ListJobs, request, token, "jobs", views.job)

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: int, token: Token) -> views.Json:
        reply = call(upstream.jobs().GetJob, jobs_pb2.GetJobRequest(job_id=job_id), token)
        return views.job(reply.job)

    @app.post("/api/jobs/{job_id}/{action}")
    def job_action(job_id: int, action: str, token: Changing) -> views.Json:
        jobs = upstream.jobs()
        return perform(
            "job",
            job_id,
            action,
            token,
            {
                "pause": (jobs.UpdateJob, _paused(job_id, True)),
                "resume": (jobs.UpdateJob, _paused(job_id, False)),
                "reinit": (jobs.ReinitJob, jobs_pb2.ReinitJobRequest(job_id=job_id)),
                "delete": (jobs.DeleteJob, jobs_pb2.DeleteJobRequest(job_id=job_id)),
            },
        )

    @app.get("/api/jobs/{job_id}/chunks")
    def list_chunks(
        job_id: int,
        token: Token,
        page_token: str = "",
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    ) -> views.Json:
        request = jobs_pb2.ListChunksRequest(
            job_id=job_id, page_size=page_size, page_token=page_token
        )
        return paged(upstream.jobs().ListChunks, request, token, "chunks", views.chunk)

    @app.get("/api/jobs/{job_id}/chunks/{chunk_id}/history")
    def chunk_history(job_id: int, chunk_id: int, token: Token) -> views.Json:
        request = jobs_pb2.ListChunkHistoryRequest(job_id=job_id, chunk_id=chunk_id)
        reply = call(upstream.jobs().ListChunkHistory, request, token)
        return {"runs": [views.run(r) for r in reply.chunk_runs]}

    @app.post("/api/jobs/{job_id}/chunks/{chunk_id}/requeue")
    def requeue_chunk(job_id: int, chunk_id: int, token: Changing) -> views.Json:
        request = jobs_pb2.SetChunkStatusRequest(
            job_id=job_id, chunk_id=chunk_id, status=jobs_pb2.CHUNK_STATUS_QUEUED
        )
        return views.chunk(call(upstream.jobs().SetChunkStatus, request, token).chunk)

    @app.get("/api/jobs/{job_id}/chunks/{chunk_id}/log")
    def chunk_log(
        job_id: int,
        chunk_id: int,
        token: Token,
        run: Annotated[int, Query(ge=0)] = 0,
        from_line: Annotated[int, Query(ge=0)] = 0,
        tail: Annotated[int, Query(ge=0, le=10000)] = 0,
        limit: Annotated[int, Query(ge=0, le=10000)] = 0,
    ) -> views.Json:
        request = jobs_pb2.GetChunkLogRequest(
            job_id=job_id,
            chunk_id=chunk_id,
            run_number=run,
            from_line=from_line,
            tail=tail,
            limit=limit,
        )
        reply = call(upstream.jobs().GetChunkLog, request, token)
        return {
            "run": views.run(reply.run),
            "lines": [views.log_line(line) for line in reply.lines],
            "gaps": [views.gap(g) for g in reply.gaps],
            "last_line": reply.last_line,
            "next_line": reply.next_line,
            "error_lines": list(reply.error_lines),
            "warning_lines": list(reply.warning_lines),
        }

    @app.get("/api/jobs/{job_id}/chunks/{chunk_id}/log/follow", response_class=EventSourceResponse)
    async def follow_log(
        job_id: int,
        chunk_id: int,
        token: Accepted,
        run: Annotated[int, Query(ge=0)] = 0,
        tail: Annotated[int, Query(ge=0, le=10000)] = 0,
    ) -> AsyncIterator[ServerSentEvent]:
        address = upstream.address("jobs")
        channel = aio_channels.get(address)
        if channel is None:
            channel = aio_channels[address] = open_aio_channel(address)
        stub = jobs_pb2_grpc.JobsServiceStub(channel)
        request = jobs_pb2.FollowChunkLogRequest(
            job_id=job_id, chunk_id=chunk_id, run_number=run, tail=tail
        )
        stream = stub.FollowChunkLog(request, metadata=auth_metadata(token))
        try:
            async for reply in stream:
                yield ServerSentEvent(
                    event="lines",
                    data={
                        "run": views.run(reply.run) if reply.HasField("run") else None,
                        "lines": [views.log_line(line) for line in reply.lines],
                        "gaps": [views.gap(g) for g in reply.gaps],
                        "ended": reply.ended,
                    },
                )
        except grpc.aio.AioRpcError as exc:
            yield ServerSentEvent(
                event="failed", data={"error": exc.details(), "status": http_status(exc.code())}
            )
        finally:
            stream.cancel()

    # --- nodes ----------------------------------------------------------------

    @app.get("/api/nodes")
    def list_nodes(
        token: Token,
        page_token: str = "",
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    ) -> views.Json:
        request = nodes_pb2.ListNodesRequest(page_size=page_size, page_token=page_token)
        return paged(upstream.nodes().ListNodes, request, token, "nodes", views.node)

    @app.post("/api/nodes/{node_id}/{action}")
    def node_action(node_id: int, action: str, token: Changing) -> views.Json:
        nodes = upstream.nodes()
        return perform(
            "node",
            node_id,
            action,
            token,
            {
                "pause": (nodes.PauseNode, nodes_pb2.PauseNodeRequest(node_id=node_id)),
                "resume": (nodes.ResumeNode, nodes_pb2.ResumeNodeRequest(node_id=node_id)),
            },
        )

    # --- statistics -----------------------------------------------------------

    @app.get("/api/statistics")
    def statistics(
        token: Token,
        hours: Annotated[float, Query(gt=0, le=24 * 366)] = 24,
    ) -> views.Json:
        start = Timestamp()
        start.FromSeconds(int(time.time() - hours * 3600))
        samples: list[views.Json] = []
        page_token = ""
        while True:
            request = admin_pb2.ListStatisticsSamplesRequest(page_size=1000, page_token=page_token)
            request.time_range.start_time.CopyFrom(start)
            reply = call(upstream.admin().ListStatisticsSamples, request, token)
            samples.extend(views.sample(s) for s in reply.samples)
            page_token = reply.next_page_token
            if not page_token:
                return {"samples": samples}

    # --- live changes ---------------------------------------------------------

    @app.get("/api/events", response_class=EventSourceResponse)
    async def events(token: Accepted) -> AsyncIterator[ServerSentEvent]:
        hub.lend(token)
        yield ServerSentEvent(event="hello", data={"subscribers": hub.subscribers + 1})
        async for batch in hub.subscribe():
            yield ServerSentEvent(event="changes", data=batch)

    return app
