"""Prometheus metrics: the one place every metric of the dispatcher is defined.

Every metric is listed in docs/metrics.md (name, type, labels, meaning); keep
the two in step (tests/core/test_metrics.py checks it).

Two kinds of metrics live here:

* counters, histograms and gauges the code moves as things happen (RPCs,
  dispatches, chunk run ends, scheduler ticks, event-bus lag, hook and
  template callbacks): process-wide, in `REGISTRY`; the places that move them
  call the small functions below, one line each;
* gauges read from the database (queue depth, nodes by state): a `Snapshot`
  a component hands the server, read with grouped statements every
  `SNAPSHOT_SECONDS` in the background whatever the scrape rate; a scrape
  serves the last reading and never waits for the database.

Labels are bounded sets (RPC methods of the protos, statuses, hook names,
consumer names), never job ids or node names.

`Endpoint` serves both on `MUSTER_METRICS_LISTEN` (prometheus-client's own
threaded HTTP server, outside the gRPC event loop).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from muster_services.core.background import Periodic

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from muster_services.core.database import Database

_LOG = logging.getLogger(__name__)

# No `*_created` sample beside every counter and histogram series: a third of
# the exposition, which Prometheus does not use.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Everything the code moves as it happens (process-wide).
REGISTRY = CollectorRegistry(auto_describe=False)
prometheus_client.ProcessCollector(registry=REGISTRY)

# Latency buckets for request/response RPCs and scheduler ticks (seconds).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

RPC_HANDLED = Counter(
    "muster_rpc_handled",
    "RPCs that ended, streams included, by service, method and gRPC status code",
    ["service", "method", "code"],
    registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "muster_rpc_duration_seconds",
    "Time to answer a request/response RPC, by service, method and gRPC status code",
    ["service", "method", "code"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RPC_STREAMS = Gauge(
    "muster_rpc_streams_open",
    "Streaming RPCs open now (agent sessions, console and notificator connections,"
    " followed logs), by service and method",
    ["service", "method"],
    registry=REGISTRY,
)
DISPATCHES = Counter(
    "muster_chunks_dispatched",
    "Chunks the scheduler assigned to nodes",
    registry=REGISTRY,
)
RUN_ENDS = Counter(
    "muster_chunk_runs_ended",
    "Chunk runs that ended, by the chunk's new status (completed, failed, queued: requeued, ...)",
    ["status"],
    registry=REGISTRY,
)
TICK_SECONDS = Histogram(
    "muster_scheduler_tick_seconds",
    "Duration of the leading scheduler's ticks (one pass over the farm)",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BUS_LAG = Gauge(
    "muster_event_bus_lag_seconds",
    "Age of the newest event a consumer handled, when it handled it, by consumer",
    ["consumer"],
    registry=REGISTRY,
)
CALLBACK_SECONDS = Histogram(
    "muster_callback_duration_seconds",
    "Duration of dispatcher hook and template callback calls, by callback name",
    ["callback"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
CALLBACK_FAILURES = Counter(
    "muster_callback_failures",
    "Dispatcher hook and template callback calls that failed or overran, by callback name",
    ["callback"],
    registry=REGISTRY,
)


# --- the calls the instrumented code makes ----------------------------------------


def dispatched(count: int) -> None:
    """The scheduler committed `count` assignments."""
    if count:
        DISPATCHES.inc(count)


def runs_ended(statuses: Iterable[str]) -> None:
    """Chunk runs ended; each chunk's new status."""
    for status in statuses:
        RUN_ENDS.labels(status).inc()


@contextlib.contextmanager
def scheduler_tick() -> Iterator[None]:
    """Times one scheduler tick (a tick that raised is timed too)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        TICK_SECONDS.observe(time.perf_counter() - started)


class _Published(Protocol):
    @property
    def created_at(self) -> datetime: ...


def consumed(consumer: str, events: Sequence[_Published]) -> None:
    """A bus consumer handled these events (oldest first)."""
    if events:
        BUS_LAG.labels(consumer).set(max(0.0, time.time() - events[-1].created_at.timestamp()))


class Callbacks:
    """Calls into user code (hooks, template callbacks): timed by name, an
    exception counted as a failure."""

    def __init__(self, seconds: Histogram, failures: Counter) -> None:
        self.seconds = seconds
        self.failures = failures

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.failures.labels(name).inc()
            raise
        finally:
            self.seconds.labels(name).observe(time.perf_counter() - started)


# The dispatcher's hooks and the templates' dispatcher callbacks (muster_services/jobs/hooks.py).
HOOKS = Callbacks(CALLBACK_SECONDS, CALLBACK_FAILURES)


# --- RPCs (the server's interceptor, muster_services/core/server.py) ----------------------


class MethodMetrics:
    """One RPC method's series, resolved once (a labels() lookup per call
    would take a lock and build a key)."""

    def __init__(self, full_method: str) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        self.labels = (service or "unknown", method)
        self._by_code: dict[str, tuple[Any, Any]] = {}
        self.streams = RPC_STREAMS.labels(*self.labels)

    def ended(self, code: str, seconds: float | None) -> None:
        """The call ended with `code`; `seconds` is its latency (None: a stream)."""
        series = self._by_code.get(code)
        if series is None:
            series = (
                RPC_HANDLED.labels(*self.labels, code),
                RPC_SECONDS.labels(*self.labels, code),
            )
            self._by_code[code] = series
        series[0].inc()
        if seconds is not None:
            series[1].observe(seconds)


_METHODS: dict[str, MethodMetrics] = {}
_METHODS_LOCK = threading.Lock()


def rpc_method(full_method: str) -> MethodMetrics:
    """The series of `/package.Service/Method` (made on its first call)."""
    found = _METHODS.get(full_method)
    if found is None:
        with _METHODS_LOCK:
            found = _METHODS.setdefault(full_method, MethodMetrics(full_method))
    return found


# --- gauges read from the database --------------------------------------------------

# How often the endpoint reads the database gauges again, in the background: a
# scrape only serves the last reading (at most this old) and never waits for a query.
SNAPSHOT_SECONDS = 2.0


class Snapshot(Collector):
    """Gauges computed by `read` (a grouped statement or two), served from the
    last `refresh()`; the endpoint refreshes every SNAPSHOT_SECONDS. Only a
    scrape before the first refresh reads at once.

    A failed read (the database unreachable) is logged and serves nothing for
    these gauges rather than stale values; the process's own metrics still go out.
    """

    def __init__(self, read: Callable[[], list[Metric]]) -> None:
        self.read = read
        self._lock = threading.Lock()
        self._families: list[Metric] | None = None

    def refresh(self) -> None:
        try:
            families = self.read()
        except Exception as exc:
            _LOG.warning("metrics: could not read the database gauges: %s", exc)
            families = []
        with self._lock:
            self._families = families

    def collect(self) -> Iterable[Metric]:
        if self._families is None:
            self.refresh()
        with self._lock:
            return list(self._families or ())


# A grouped read of a domain's table (the domain's store owns the SQL).
RowsReader = Callable[["Connection"], Sequence[Any]]


def _rows(db: Database, read_rows: RowsReader) -> Sequence[Any]:
    with db.read() as connection:
        return read_rows(connection)


# The chunk counters of the jobs (muster_services/jobs/tables.py), as labels.
CHUNK_COUNTERS = ("queued", "running", "completed", "failed")


def queue_depth(db: Database, read_rows: RowsReader) -> Snapshot:
    """The jobs still to render by status, and their chunks by status, from
    rows of (status, jobs, chunks_total, chunks_queued, chunks_running,
    chunks_completed, chunks_failed), one per job status (muster_services/jobs/store.py)."""

    def read() -> list[Metric]:
        jobs = GaugeMetricFamily(
            "muster_jobs",
            "Jobs still to render (queued, waiting_dependencies, running) by status",
            labels=["status"],
        )
        chunks = GaugeMetricFamily(
            "muster_chunks", "Chunks of the jobs still to render by status", labels=["status"]
        )
        totals = dict.fromkeys((*CHUNK_COUNTERS, "other"), 0)
        for status, count, total, *counts in _rows(db, read_rows):
            jobs.add_metric([str(status)], float(count))
            counts = [int(c or 0) for c in counts]
            for name, value in zip(CHUNK_COUNTERS, counts, strict=True):
                totals[name] += value
            totals["other"] += int(total or 0) - sum(counts)
        for name, value in totals.items():
            chunks.add_metric([name], float(value))
        return [jobs, chunks]

    return Snapshot(read)


def nodes_by_state(db: Database, read_rows: RowsReader) -> Snapshot:
    """Render nodes by state, from rows of (status, paused, count)
    (muster_services/nodes/store.py)."""

    def read() -> list[Metric]:
        family = GaugeMetricFamily(
            "muster_nodes",
            "Render nodes by state (offline, idle, rendering, paused) and whether paused",
            labels=["state", "paused"],
        )
        for status, paused, count in _rows(db, read_rows):
            family.add_metric([str(status), "true" if paused else "false"], float(count))
        return [family]

    return Snapshot(read)


# --- the endpoint -------------------------------------------------------------------


class _Exposition(Collector):
    """The process-wide metrics and one server's database snapshots."""

    def __init__(self, snapshots: Sequence[Snapshot]) -> None:
        self.snapshots = list(snapshots)

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        for snapshot in self.snapshots:
            yield from snapshot.collect()


def exposition(snapshots: Sequence[Snapshot] = ()) -> CollectorRegistry:
    """A registry serving the process's metrics and these snapshots."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Exposition(snapshots))
    return registry


class Endpoint:
    """`/metrics` over HTTP on `listen` (host:port; port 0 picks a free one),
    with the database snapshots refreshed every SNAPSHOT_SECONDS in a thread."""

    def __init__(self, listen: str, snapshots: Sequence[Snapshot] = ()) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        try:
            self._httpd, self._thread = prometheus_client.start_http_server(
                int(port), host, exposition(snapshots)
            )
        except (OSError, ValueError) as exc:
            raise OSError(
                f"cannot serve metrics on {listen} (MUSTER_METRICS_LISTEN, --metrics-listen): {exc}"
            ) from None
        self.port = int(self._httpd.server_port)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.url = f"http://{shown}:{self.port}/metrics"

        def refresh() -> None:
            for snapshot in snapshots:
                snapshot.refresh()

        self._refresher = Periodic("metrics-snapshots", SNAPSHOT_SECONDS, refresh)
        if snapshots:
            self._refresher.start()

    def close(self) -> None:
        self._refresher.stop()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
