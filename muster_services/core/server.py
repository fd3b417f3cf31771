"""Server bootstrap shared by every service.

One `grpc.aio` server hosts the components it is given: the nodes service's
long-lived streams run on the event loop, while the request/response
servicers of jobs and admin stay synchronous and run on the server's worker
thread pool (`migration_thread_pool`). That pool is the explicit boundary
between the two models. Every server gets the standard health service (a
status per service), server reflection, and the interceptor chain (error
mapping and access log; authentication plugs in at its head).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import grpc.aio
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from muster_gateway.tls import ServerTLS
from muster_services.core.auth import Guard, Security
from muster_services.core.caller import Caller, acting_as
from muster_services.core.database import retryable
from muster_services.core.errors import DomainError, status_of
from muster_services.core.metrics import Endpoint, MethodMetrics, Snapshot, rpc_method
from muster_services.core.permissions import Access, access_of
from muster_services.core.requests import check_request
from muster_services.core.settings import Settings

_LOG = logging.getLogger(__name__)

# The largest request any RPC accepts (a queue import, a big job submission).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class Background(Protocol):
    """Work a component runs beside its servicers (bus consumers, sweeps)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Component:
    """One service of the dispatcher as the server hosts it."""

    name: str
    services: Sequence[ServiceDescriptor]
    register: Callable[[grpc.aio.Server], None]
    background: list[Background] = field(default_factory=list)
    # Told the address the server listens on once it is bound (a service
    # that calls a co-hosted service by RPC needs it when the port was 0).
    on_listening: list[Callable[[str], None]] = field(default_factory=list)
    # The signer and audit the server's guard uses (muster_services/core/auth.py);
    # every component built on one database carries the same.
    security: Security | None = None
    # Gauges read from the database that the metrics endpoint serves
    # (muster_services/core/metrics.py: queue depth, nodes by state).
    metrics: list[Snapshot] = field(default_factory=list)

    @property
    def service_names(self) -> list[str]:
        return [s.full_name for s in self.services]


# --- the contract: RPCs not implemented yet --------------------------------


def muster_functions(method: MethodDescriptor) -> list[str]:
    """The Muster MDispatcherAPI functions an RPC serves (its proto option)."""
    from muster_proto.common.v1 import options_pb2

    return list(method.GetOptions().Extensions[options_pb2.muster_functions])


def _unimplemented(method: MethodDescriptor) -> Callable[[Any, Any, Any], Any]:
    names = muster_functions(method)
    what = " / ".join(names) if names else method.name
    message = f"{what} ({method.full_name}) is not implemented yet in this dispatcher"

    def handler(self: Any, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    handler.__name__ = method.name
    return handler


T = TypeVar("T")


def contract_base(generated_base: type[T], service: ServiceDescriptor) -> type[T]:
    """A servicer base whose every RPC answers UNIMPLEMENTED naming its function.

    Concrete servicers subclass it and override the RPCs they implement; the
    rest keep telling callers exactly which Muster function is missing.
    """
    methods = {m.name: _unimplemented(m) for m in service.methods}
    return type(f"Contract{generated_base.__name__}", (generated_base,), methods)


def _passthrough(serializer: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def serialize(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serializer(message)

    return serialize


class _RawResponses(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """`inner`'s handlers, whose `methods` may also answer pre-serialized bytes."""

    def __init__(self, inner: Any, methods: frozenset[str]) -> None:
        self.inner = inner
        self.methods = methods

    def patch(self, name: str, handler: Any) -> Any:
        if handler is None or name not in self.methods:
            return handler
        return handler._replace(response_serializer=_passthrough(handler.response_serializer))

    def service(self, handler_call_details: Any) -> Any:
        handler = self.inner.service(handler_call_details)
        return self.patch(str(handler_call_details.method).rsplit("/", 1)[-1], handler)


class RawResponseServer:
    """Stands for a server while a generated `add_...Servicer_to_server` registers
    a servicer: the named methods may then yield bytes they serialized once
    themselves (one event sent to a thousand streams) as well as messages."""

    def __init__(self, server: Any, methods: Iterable[str]) -> None:
        self.server = server
        self.methods = frozenset(methods)

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        self.server.add_generic_rpc_handlers(
            tuple(_RawResponses(h, self.methods) for h in handlers)
        )

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        patcher = _RawResponses(None, self.methods)
        self.server.add_registered_method_handlers(
            service, {name: patcher.patch(name, h) for name, h in handlers.items()}
        )


# --- interceptors ------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A call that ended in an error, for the audit (muster_services/admin/logs.py)."""

    caller: Caller
    method: str
    access: Access
    code: grpc.StatusCode
    message: str


# Told of every refused call and of every failed state-changing call.
AuditSink = Callable[[Refusal], None]


def _aborted_code(context: Any) -> grpc.StatusCode:
    """The status a handler aborted with (an asynchronous context tells it;
    the synchronous one does not: UNKNOWN)."""
    code = getattr(context, "code", None)
    found = code() if callable(code) else None
    return found if isinstance(found, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Admits the caller, maps DomainError to its status, logs each call.

    Every call first passes the guard (a verified token and the method's
    access level, muster_services/core/auth.py), then the request limits every RPC
    shares (muster_services/core/requests.py). An unexpected exception answers
    INTERNAL with an incident id that is also in the log, never a stack trace.
    Refusals and failed state-changing calls go to the audit sink. With
    `rpc_metrics`, each call's end is counted (and a request/response call's
    latency observed) by method and status, and open streams are gauged
    (muster_services/core/metrics.py), from the same timing as the access log.
    """

    def __init__(
        self, guard: Guard, audit: AuditSink | None = None, rpc_metrics: bool = True
    ) -> None:
        self.guard = guard
        self.audit = audit
        self.rpc_metrics = rpc_metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        call = _Call(self, handler_call_details.method)
        for kind, make in _HANDLER_KINDS.items():
            behavior = getattr(handler, kind)
            if behavior is not None:
                return make(
                    call.wrap(behavior, kind),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler


_HANDLER_KINDS: dict[str, Callable[..., Any]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}

# Transactions PostgreSQL rolled back because of a concurrent one: the use
# case committed nothing, so running it again is safe.
RETRIES = 3


class _Call:
    """One RPC method as the interceptor serves it."""

    def __init__(self, interceptor: ErrorMappingInterceptor, method: str) -> None:
        self.interceptor = interceptor
        self.method = method
        self.access = access_of(method)
        self.metrics: MethodMetrics | None = rpc_method(method) if interceptor.rpc_metrics else None
        self.streaming = False

    def identify(self, context: Any) -> Caller:
        return self.interceptor.guard.identify(
            self.method, context.invocation_metadata() or (), str(context.peer() or "")
        )

    def authorize(self, caller: Caller) -> None:
        self.interceptor.guard.authorize(self.method, caller)

    def failure(self, exc: BaseException, caller: Caller) -> tuple[grpc.StatusCode, str] | None:
        """The status to answer for an exception, or None to let gRPC handle it."""
        if isinstance(exc, DomainError):
            code, message = status_of(exc), exc.message
        elif isinstance(exc, grpc.aio.AbortError):
            return None  # the handler aborted with its own status
        elif retryable(exc):
            # Rolled back RETRIES times by concurrent work: nothing changed,
            # and the caller may try again.
            _LOG.warning("%s: gave up after %d concurrency rollbacks", self.method, RETRIES)
            code = grpc.StatusCode.ABORTED
            message = "conflicted with concurrent changes; nothing was changed, try again"
        else:
            incident = uuid.uuid4().hex[:12]
            _LOG.error("internal error in %s (incident %s)", self.method, incident, exc_info=exc)
            code, message = grpc.StatusCode.INTERNAL, f"internal error (incident {incident})"
        return code, message

    def audited(self, caller: Caller, code: grpc.StatusCode, message: str) -> Refusal | None:
        refused = code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        if self.interceptor.audit is None or not (refused or self.access.changes_state):
            return None
        return Refusal(caller, self.method, self.access, code, message)

    def log(self, started: float, code: grpc.StatusCode) -> None:
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.ended(code.name, None if self.streaming else seconds)
        _LOG.debug(
            "rpc",
            extra={"method": self.method, "code": code.name, "ms": round(seconds * 1000, 2)},
        )

    def _finished(self, context: Any) -> grpc.StatusCode:
        """OK, or CANCELLED for a stream its client cancelled or left (its
        handler may then return normally, as a console stream's does)."""
        if self.streaming:
            cancelled = getattr(context, "cancelled", None)
            if callable(cancelled) and cancelled():
                return grpc.StatusCode.CANCELLED
            active = getattr(context, "is_active", None)
            if callable(active) and not active():
                return grpc.StatusCode.CANCELLED
        return grpc.StatusCode.OK

    @contextlib.contextmanager
    def timed(self) -> Iterator[float]:
        """The call's start; a stream is gauged while open, and a call the
        client cancelled (or whose stream it left) is counted as CANCELLED."""
        started = time.perf_counter()
        if self.streaming and self.metrics is not None:
            self.metrics.streams.inc()
        try:
            yield started
        except (asyncio.CancelledError, GeneratorExit):
            self.log(started, grpc.StatusCode.CANCELLED)
            raise
        finally:
            if self.streaming and self.metrics is not None:
                self.metrics.streams.dec()

    def wrap(self, behavior: Callable[..., Any], kind: str) -> Callable[..., Any]:
        self.streaming = kind != "unary_unary"
        streaming_response = kind.endswith("_stream")
        if inspect.isasyncgenfunction(behavior):
            return self._async_stream(behavior)
        # A coroutine answers once, or streams with context.write(): either
        # way one awaited call.
        if inspect.iscoroutinefunction(behavior):
            return self._async_unary(behavior)
        if streaming_response:
            return self._sync_stream(behavior)
        return self._sync_unary(behavior)

    def admit(self, caller: Caller, request: Any) -> None:
        """Let an identified caller in: the method's access level, then the
        request limits every RPC shares."""
        self.authorize(caller)
        check_request(request)

    def _settle(
        self, exc: Exception, caller: Caller | None, context: Any, started: float
    ) -> tuple[tuple[grpc.StatusCode, str], Refusal | None]:
        """The status to abort with and the refusal to audit; re-raises what
        gRPC handles itself. No caller: the token did not identify one, and
        the refusal names the peer."""
        if caller is None:
            caller = Caller(peer=str(context.peer() or ""))
        failure = self.failure(exc, caller)
        self.log(started, failure[0] if failure else _aborted_code(context))
        if failure is None:
            raise exc
        return failure, self.audited(caller, *failure)

    def _refuse(
        self, exc: Exception, caller: Caller | None, context: Any, started: float
    ) -> NoReturn:
        failure, refusal = self._settle(exc, caller, context, started)
        if refusal is not None:
            self._report(refusal)
        context.abort(*failure)
        raise AssertionError("context.abort returned")  # it raises

    async def _refuse_async(
        self, exc: Exception, caller: Caller | None, context: Any, started: float
    ) -> NoReturn:
        failure, refusal = self._settle(exc, caller, context, started)
        if refusal is not None:
            await asyncio.to_thread(self._report, refusal)
        await context.abort(*failure)
        raise AssertionError("context.abort returned")  # it raises

    def _retrying(self, exc: Exception, attempt: int) -> None:
        """Re-raise unless `exc` is a concurrency rollback worth another attempt."""
        if attempt + 1 == RETRIES or not retryable(exc):
            raise exc
        _LOG.info("%s: retrying after %s", self.method, type(exc.orig).__name__)  # type: ignore[attr-defined]

    # Each handler: identify the caller (None until the token names one),
    # admit it, run the servicer as that caller; any exception becomes the
    # status `_settle` gives it.

    def _async_unary(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def handler(request: Any, context: Any) -> Any:
            caller = None
            with self.timed() as started:
                try:
                    caller = self.identify(context)
                    self.admit(caller, request)
                    with acting_as(caller):
                        for attempt in range(RETRIES):
                            try:
                                response = await behavior(request, context)
                                break
                            except Exception as exc:
                                self._retrying(exc, attempt)
                except Exception as exc:
                    await self._refuse_async(exc, caller, context, started)
                self.log(started, self._finished(context))
            return response

        return handler

    def _sync_unary(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def handler(request: Any, context: Any) -> Any:
            caller = None
            with self.timed() as started:
                try:
                    caller = self.identify(context)
                    self.admit(caller, request)
                    # Set here, in the thread that runs the servicer: a context
                    # variable set on the event loop would not reach the worker pool.
                    with acting_as(caller):
                        for attempt in range(RETRIES):
                            try:
                                response = behavior(request, context)
                                break
                            except Exception as exc:
                                self._retrying(exc, attempt)
                except Exception as exc:
                    self._refuse(exc, caller, context, started)
                self.log(started, self._finished(context))
            return response

        return handler

    def _async_stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def handler(request: Any, context: Any) -> Any:
            caller = None
            with self.timed() as started:
                try:
                    caller = self.identify(context)
                    self.admit(caller, request)
                    with acting_as(caller):
                        async for item in behavior(request, context):
                            yield item
                except Exception as exc:
                    await self._refuse_async(exc, caller, context, started)
                self.log(started, self._finished(context))

        return handler

    def _sync_stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def handler(request: Any, context: Any) -> Any:
            caller = None
            with self.timed() as started:
                try:
                    caller = self.identify(context)
                    self.admit(caller, request)
                    with acting_as(caller):
                        yield from behavior(request, context)
                except Exception as exc:
                    self._refuse(exc, caller, context, started)
                self.log(started, self._finished(context))

        return handler

    def _report(self, refusal: Refusal) -> None:
        assert self.interceptor.audit is not None
        try:
            self.interceptor.audit(refusal)
        except Exception:  # the audit never turns a refusal into another error
            _LOG.exception("could not record the refusal of %s", self.method)


# --- the server ----------------------------------------------------------------


@dataclass(frozen=True)
class Connections:
    """How long the server keeps a client connection (MUSTER_KEEPALIVE_SECONDS,
    MUSTER_MAX_CONNECTION_AGE_SECONDS, MUSTER_MAX_CONNECTION_AGE_GRACE_SECONDS):
    idle connections are pinged, and every connection is asked to reconnect
    once it is `max_age_seconds` old, so long-lived streams (agents, consoles)
    spread over replicas started after them."""

    keepalive_seconds: float
    max_age_seconds: float
    max_age_grace_seconds: float

    @classmethod
    def of(cls, settings: Settings | None = None) -> Connections:
        """The limits `settings` give (their defaults without them)."""
        settings = settings or Settings()
        return cls(
            settings.keepalive_seconds,
            settings.max_connection_age_seconds,
            settings.max_connection_age_grace_seconds,
        )

    def options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", round(self.keepalive_seconds * 1000)),
            ("grpc.max_connection_age_ms", round(self.max_age_seconds * 1000)),
            ("grpc.max_connection_age_grace_ms", round(self.max_age_grace_seconds * 1000)),
        ]


class DispatcherServer:
    """A gRPC server hosting one or more components."""

    def __init__(
        self,
        components: Sequence[Component],
        worker_threads: int = 16,
        interceptors: Iterable[grpc.aio.ServerInterceptor[Any, Any]] = (),
        security: Security | None = None,
        tls: ServerTLS | None = None,
        rpc_metrics: bool = True,
        connections: Connections | None = None,
    ) -> None:
        if not components:
            raise ValueError("a server needs at least one component")
        self.components = list(components)
        security = security or next((c.security for c in components if c.security), None)
        if security is None:
            # Closed by default: a server never runs without its guard.
            raise ValueError("a server needs a Security (token signer) to admit callers")
        self.security = security
        self.tls = tls
        self.worker_threads = worker_threads
        self._pool = ThreadPoolExecutor(max_workers=worker_threads, thread_name_prefix="rpc")
        self.server = grpc.aio.server(
            migration_thread_pool=self._pool,
            interceptors=[
                *interceptors,
                ErrorMappingInterceptor(security.guard, security.audit, rpc_metrics),
            ],
            options=[
                # Larger messages are refused with RESOURCE_EXHAUSTED before
                # any servicer sees them (docs/security.md).
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                *(connections or Connections.of()).options(),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                # Agents and consoles ping to notice a dead server; accept it.
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [n for c in self.components for n in c.service_names]
        for component in self.components:
            component.register(self.server)
        reflection.enable_server_reflection(
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self.service_names = names
        self.port = 0
        self._health_server: grpc.aio.Server | None = None
        self.metrics: Endpoint | None = None

    async def start(self, listen: str, health_listen: str = "", metrics_listen: str = "") -> int:
        """Listen on `listen`; with `health_listen`, also answer the health
        check alone in plaintext there (MUSTER_HEALTH_LISTEN); with
        `metrics_listen`, serve Prometheus metrics over HTTP there
        (MUSTER_METRICS_LISTEN, docs/metrics.md)."""
        if self.tls is None:
            port = self.server.add_insecure_port(listen)
        else:
            port = self.server.add_secure_port(listen, self.tls.credentials())
        if not port:
            raise OSError(f"cannot listen on {listen}")
        host = listen.rsplit(":", 1)[0]
        if host in ("0.0.0.0", "[::]", ""):
            host = "127.0.0.1"
        # The health port before the metrics endpoint and the background work
        # open theirs: a port this process is handed for them (port 0) can
        # then never be the one configured for health.
        if health_listen:
            self._health_server = await self._serve_health(health_listen)
        if metrics_listen:
            self.metrics = Endpoint(metrics_listen, [m for c in self.components for m in c.metrics])
            _LOG.info("metrics at %s", self.metrics.url)
        for component in self.components:
            for told in component.on_listening:
                told(f"{host}:{port}")
            for item in component.background:
                item.start()
        await self.server.start()
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.port = port
        return port

    async def _serve_health(self, listen: str) -> grpc.aio.Server:
        """A plaintext listener with only the health service, sharing the
        statuses of the main one: for probes that cannot use TLS (Kubernetes
        `grpc:` probes). Health is public and carries no data."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if not server.add_insecure_port(listen):
            raise OSError(f"cannot listen on {listen} (MUSTER_HEALTH_LISTEN)")
        await server.start()
        return server

    async def stop(self, grace: float) -> None:
        """Stop taking calls, let in-flight ones finish within `grace` seconds."""
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        if self._health_server is not None:
            await self._health_server.stop(None)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)
        for component in reversed(self.components):
            for item in reversed(component.background):
                try:
                    item.stop()
                except Exception:
                    _LOG.exception("stopping %s background work failed", component.name)
        self._pool.shutdown(wait=True, cancel_futures=False)


# Young-generation collections per allocation count (Python's default: 700).
GC_THRESHOLD = 20_000


def settle_heap() -> None:
    """Keep the garbage collector's full passes short in a long-running server.

    A full pass walks every object the process holds; in a nodes replica
    with 2,000 agent streams it took 50 to 150 ms, during which no stream,
    delivery or result moved (a dispatch latency probe in eight took 200 ms
    instead of 45). Everything alive once the server has started (modules,
    schemas, generated protobuf classes: most of the heap) lives as long as
    the process: it is moved out of the collector's sight (gc.freeze), and
    collections run less often. Cyclic garbage is still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


async def serve_until_signalled(
    make_server: Callable[[], DispatcherServer],
    listen: str,
    grace: float,
    on_ready: Callable[[int], None],
    health_listen: str = "",
    on_stopping: Callable[[], None] | None = None,
    metrics_listen: str = "",
) -> None:
    """Build the server on this event loop, start it, report readiness, and
    stop cleanly on SIGINT or SIGTERM (`on_stopping` runs first, in a thread,
    while the server still serves)."""
    import signal

    server = make_server()  # grpc.aio servers bind to the loop they are made on
    # asyncio.to_thread (database work of the async nodes service) runs on the
    # loop's default executor: as wide as the synchronous servicers' pool.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=server.worker_threads, thread_name_prefix="io")
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await server.start(listen, health_listen, metrics_listen)
    settle_heap()
    on_ready(port)
    await stop.wait()
    if on_stopping is not None:
        await asyncio.to_thread(on_stopping)
    _LOG.info("shutting down (grace %.1fs)", grace)
    await server.stop(grace)
