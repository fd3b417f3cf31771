"""Hostile requests built from the protobuf descriptors, and the calls that
send them to a real server.

Every field of every request message gets a strategy from its descriptor:
strings that are empty, huge, unicode, control characters, NUL bytes, path
traversals and SQL; the extreme values of every integer type; NaN and
infinities; enum numbers the proto does not define; repeated and map fields;
nested messages (a few levels deep) and well-known types with out-of-range
values. Nothing here knows a particular RPC: a new RPC is fuzzed as soon as
its service is in FUZZ_PLAN.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from muster_proto.admin.v1 import admin_pb2
from muster_proto.agent.v1 import agent_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import chunk_runs_pb2, jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2
from muster_services.core.database import Database
from muster_services.core.errors import InvalidArgument
from muster_services.core.requests import check_request
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.security.audit import audit
from tests.support import admin_channel, agent_auth, health_status, reflected_services

# Every service a dispatcher serves, and the test module that fuzzes it. The
# modules check that the server's reflection lists exactly these services.
FUZZ_PLAN: dict[str, str] = {
    "farm.jobs.v1.JobsService": "test_fuzz_jobs",
    "farm.jobs.v1.ChunkRunsService": "test_fuzz_jobs",
    "farm.nodes.v1.NodesService": "test_fuzz_nodes",
    "farm.nodes.v1.ClientsService": "test_fuzz_nodes",
    "farm.agent.v1.AgentService": "test_fuzz_nodes",
    "farm.admin.v1.AdminService": "test_fuzz_admin",
}

# Services only the dispatcher's own services call (issue 6): fuzzed with a
# service identity, so the requests reach the service rather than stop at
# PERMISSION_DENIED. Every other service is fuzzed as an administrator.
SERVICE_CALLED = {"farm.jobs.v1.ChunkRunsService"}

# Served next to them, not part of the dispatcher's API.
INFRASTRUCTURE = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}

SERVICES: dict[str, ServiceDescriptor] = {
    **jobs_pb2.DESCRIPTOR.services_by_name,
    **chunk_runs_pb2.DESCRIPTOR.services_by_name,
    **nodes_pb2.DESCRIPTOR.services_by_name,
    **agent_pb2.DESCRIPTOR.services_by_name,
    **admin_pb2.DESCRIPTOR.services_by_name,
}
SERVICES = {s.full_name: s for s in SERVICES.values()}

# RPCs not fuzzed, each with the reason. Only calls that would end the run
# belong here; everything else, engine stop and queue import included, is
# fuzzed. (None today: RestartDispatcher only publishes a reload event.)
EXCLUDED: dict[str, str] = {}

# The node the agent stream's token speaks for.
FUZZ_AGENT_HOST = "fuzz-agent-0"
# A call that has not answered after this long counts as hung.
CALL_TIMEOUT_SECONDS = 15.0
# Examples per RPC (each one real call).
EXAMPLES_PER_RPC = int(os.environ.get("MUSTER_FUZZ_EXAMPLES", "30"))

# Answers that are never acceptable: a fault the service did not map.
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


def fuzz_seed() -> int:
    """The run's seed: MUSTER_FUZZ_SEED when set (to replay a run), else random."""
    value = os.environ.get("MUSTER_FUZZ_SEED", "").strip()
    return int(value) if value else random.SystemRandom().randrange(2**32)


# --- strategies from descriptors ----------------------------------------------------

HOSTILE_STRINGS = [
    "",
    " ",
    "\t\n\r",
    "\x00",
    "a\x00b",
    "../../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "/etc/shadow",
    "C:\\Windows\\System32\\config\\SAM",
    "shot010/../../x",
    "'; DROP TABLE jobs; --",
    "1 OR 1=1",
    "%s%s%n%x",
    "{0.__class__}",
    "\u202e\u200b\ufeff",
    "\U0001f600" * 3,
    "é" * 10,
    "-1",
    "1",
    "9" * 40,
    "NaN",
    "2026-12-02T00:00:00Z",
    "10.0.0.0/8",
    "*",
]
OVERSIZED_LENGTHS = [256, 4_097, 70_000, 1_100_000]


def _oversized() -> st.SearchStrategy[str]:
    return st.builds(
        lambda n, c: c * n, st.sampled_from(OVERSIZED_LENGTHS), st.sampled_from(["x", "é", "\x00"])
    )


def strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=24),
        st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp"]), max_size=8),
        _oversized(),
    )


def _integer_range(kind: int) -> tuple[int, int]:
    f = FieldDescriptor
    if kind in (f.TYPE_INT32, f.TYPE_SINT32, f.TYPE_SFIXED32):
        return -(2**31), 2**31 - 1
    if kind in (f.TYPE_UINT32, f.TYPE_FIXED32):
        return 0, 2**32 - 1
    if kind in (f.TYPE_UINT64, f.TYPE_FIXED64):
        return 0, 2**64 - 1
    return -(2**63), 2**63 - 1


def integers(kind: int) -> st.SearchStrategy[int]:
    low, high = _integer_range(kind)
    edges = [v for v in (low, low + 1, -1, 0, 1, 2, 3, 5, 1000, 1001, high - 1, high) if v >= low]
    return st.one_of(st.sampled_from(edges), st.integers(max(low, -2), 12), st.integers(low, high))


def _field_names() -> list[str]:
    names: set[str] = set()

    def walk(message: Descriptor) -> None:
        for f in message.fields:
            names.add(f.name)
        for nested in message.nested_types:
            walk(nested)

    for module in (jobs_pb2, chunk_runs_pb2, nodes_pb2, agent_pb2, admin_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            walk(message)
    return sorted(names)


FIELD_NAMES = _field_names()
MAX_DEPTH = 3


def _message_type(f: FieldDescriptor) -> Descriptor:
    kind = f.message_type
    assert kind is not None
    return kind


def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = f.type
    if kind == FieldDescriptor.TYPE_STRING:
        return strings()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert f.enum_type is not None
        numbers = [v.number for v in f.enum_type.values]
        return st.one_of(
            st.sampled_from(numbers), st.integers(-3, 64), st.integers(-(2**31), 2**31 - 1)
        )
    return integers(kind)


def _well_known(descriptor: Descriptor) -> st.SearchStrategy[dict[str, Any]] | None:
    name = descriptor.full_name
    if name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return st.fixed_dictionaries(
            {
                "seconds": st.one_of(
                    st.integers(-(2**63), 2**63 - 1),
                    st.integers(0, 2_000_000_000),
                    st.sampled_from([-62_135_596_801, 253_402_300_800]),
                ),
                "nanos": st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(0, 999_999_999)),
            }
        )
    if name == "google.protobuf.FieldMask":
        return st.fixed_dictionaries(
            {"paths": st.lists(st.one_of(st.sampled_from(FIELD_NAMES), strings()), max_size=4)}
        )
    return None


def _value(f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return _message_fields(_message_type(f), depth + 1)
    return _scalar(f)


def _message_fields(descriptor: Descriptor, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    known = _well_known(descriptor)
    if known is not None:
        return known
    if depth > MAX_DEPTH:
        return st.just({})
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE and _message_type(f).GetOptions().map_entry:
            key = _message_type(f).fields_by_name["key"]
            value = _message_type(f).fields_by_name["value"]
            value_strategy = _value(value, depth)
            if value_strategy is None:
                continue
            optional[f.name] = st.dictionaries(_scalar(key), value_strategy, max_size=4)
            continue
        one = _value(f, depth)
        if one is None:
            continue
        if f.is_repeated:
            optional[f.name] = st.lists(one, max_size=5)
        else:
            optional[f.name] = one
    return st.fixed_dictionaries({}, optional=optional)


def _fill(message: Message, values: dict[str, Any]) -> None:
    descriptor = message.DESCRIPTOR
    for name, value in values.items():
        f: FieldDescriptor = descriptor.fields_by_name[name]  # type: ignore[assignment]
        target = getattr(message, name)
        if f.type == FieldDescriptor.TYPE_MESSAGE and _message_type(f).GetOptions().map_entry:
            value_field = _message_type(f).fields_by_name["value"]
            for k, v in value.items():
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(target[k], v)
                else:
                    target[k] = v
        elif f.is_repeated:
            for item in value:
                if f.type == FieldDescriptor.TYPE_MESSAGE:
                    _fill(target.add(), item)
                else:
                    target.append(item)
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            target.SetInParent()
            _fill(target, value)
        else:
            setattr(message, name, value)


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def requests(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """Hostile messages of one request type."""
    cls = message_class(descriptor)

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        _fill(message, values)
        return message

    return _message_fields(descriptor, 0).map(build)


# --- calling -------------------------------------------------------------------------


@dataclass
class Outcome:
    method: str
    code: grpc.StatusCode
    details: str
    hung: bool = False

    @property
    def acceptable(self) -> bool:
        """OK, or a precise status with a message; never a fault or a hang."""
        if self.hung or self.code in FORBIDDEN:
            return False
        return self.code == grpc.StatusCode.OK or bool(self.details)

    def describe(self) -> str:
        what = "no answer (hung)" if self.hung else self.code.name
        return f"{self.method}: {what} {self.details[:300]!r}"


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _serializers(method: MethodDescriptor) -> dict[str, Callable[..., Any]]:
    return {
        "request_serializer": message_class(method.input_type).SerializeToString,
        "response_deserializer": message_class(method.output_type).FromString,
    }


def _outcome(method: MethodDescriptor, error: grpc.RpcError | None, hung: bool = False) -> Outcome:
    if error is None:
        return Outcome(method.full_name, grpc.StatusCode.OK, "")
    code = error.code()
    details = str(error.details() or "")
    # Our own deadline expired: the service never answered.
    hung = hung or (code == grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded")
    return Outcome(method.full_name, code, details, hung)


def call(channel: grpc.Channel, method: MethodDescriptor, request: Message) -> Outcome:
    """One call of any RPC. Streams are opened, read briefly, then cancelled."""
    path, kinds = _path(method), _serializers(method)
    try:
        if not method.client_streaming and not method.server_streaming:
            channel.unary_unary(path, **kinds)(request, timeout=CALL_TIMEOUT_SECONDS)
            return _outcome(method, None)
        done = threading.Event()
        try:
            if method.client_streaming:
                # The agent stream speaks for one enrolled node (issue 6).
                stream = channel.stream_stream(path, **kinds)(
                    _first_then_wait(request, done),
                    timeout=CALL_TIMEOUT_SECONDS,
                    metadata=agent_auth(FUZZ_AGENT_HOST),
                )
            else:
                stream = channel.unary_stream(path, **kinds)(request, timeout=CALL_TIMEOUT_SECONDS)
            return _read_briefly(method, stream)
        finally:
            done.set()
    except grpc.RpcError as error:
        return _outcome(method, error)


def _first_then_wait(request: Message, done: threading.Event) -> Iterator[Message]:
    """A client stream whose first message is `request`; it stays open
    (as an agent's would) until the call is over."""
    yield request
    done.wait(CALL_TIMEOUT_SECONDS)


def _read_briefly(method: MethodDescriptor, stream: Any) -> Outcome:
    """The first answer of a stream (a message or its status), then cancel."""
    first: list[Any] = []
    error: list[grpc.RpcError] = []

    def read() -> None:
        try:
            first.append(next(stream))
        except StopIteration:
            pass
        except grpc.RpcError as exc:
            error.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5.0)
    stream.cancel()
    reader.join(5.0)
    if error and error[0].code() != grpc.StatusCode.CANCELLED:
        return _outcome(method, error[0])
    if not first and not error:
        # Neither a message nor a status: a stream must say at least hello or no.
        return Outcome(method.full_name, grpc.StatusCode.OK, "", hung=reader.is_alive())
    return _outcome(method, None)


# --- a run over services ---------------------------------------------------------------


@dataclass
class FuzzReport:
    seed: int
    cases: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"seed {self.seed} (MUSTER_FUZZ_SEED={self.seed} replays it): "
            f"{len(self.cases)} RPCs, {sum(self.cases.values())} cases, "
            f"{len(self.failures)} failing RPCs; statuses {dict(self.codes)}"
        )


def _run_settings(seed: int, examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A fixed number of examples, no deadline, the run's seed; failures shrink."""

    def apply(test: Callable[..., None]) -> Callable[..., None]:
        configured = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=False,
            print_blob=True,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )(test)
        return hypothesis_seed(seed)(configured)

    return apply


def fuzz_method(
    channel: grpc.Channel, method: MethodDescriptor, report: FuzzReport, examples: int
) -> None:
    """Run `examples` hostile calls of one RPC; record the first failure
    (shrunk by hypothesis to a small request) in the report."""

    @_run_settings(report.seed, examples)
    @given(requests(method.input_type))
    def one(request: Message) -> None:
        outcome = call(channel, method, request)
        report.cases[method.full_name] += 1
        report.codes[outcome.code.name] += 1
        assert outcome.acceptable, f"{outcome.describe()}\nrequest: {_short(request)}"
        if not method.client_streaming and breaks_request_limits(request):
            # NUL or an over-long text anywhere: refused, whatever the RPC.
            assert outcome.code in LIMIT_CODES, f"{outcome.describe()}\nrequest: {_short(request)}"

    try:
        one()
    except AssertionError as failure:
        report.failures[method.full_name] = str(failure)


# A request breaking the request limits never gets further than these; the
# caller's rights are checked first (PERMISSION_DENIED for an agent token on
# another node's messages, for instance).
LIMIT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
}


def breaks_request_limits(request: Message) -> bool:
    try:
        check_request(request)
    except InvalidArgument:
        return True
    return False


def _short(request: Message) -> str:
    text = str(request)
    return text if len(text) < 600 else text[:600] + f"... ({len(text)} characters)"


AGENT_SESSION = "farm.agent.v1.AgentService.Session"


def _registered_session(
    channel: grpc.Channel, host: str, messages: list[Message]
) -> tuple[list[Any], grpc.RpcError | None]:
    """A session that registers `host` then sends `messages`; what it got
    back within a short while (messages, and the status if the stream ended)."""
    method = SERVICES["farm.agent.v1.AgentService"].methods_by_name["Session"]
    register = agent_pb2.SessionRequest(
        register=agent_pb2.Register(
            host_name=host,
            platform=common_pb2.PLATFORM_LINUX,
            cpu_cores=4,
            memory_bytes=8 << 30,
            agent_version="fuzz",
            ip_address="127.0.0.1",
        )
    )
    done = threading.Event()

    def outgoing() -> Iterator[Message]:
        yield register
        yield from messages
        done.wait(CALL_TIMEOUT_SECONDS)

    stream: Any = channel.stream_stream(_path(method), **_serializers(method))(
        outgoing(), timeout=CALL_TIMEOUT_SECONDS, metadata=agent_auth(host)
    )
    received: list[Any] = []
    error: list[grpc.RpcError] = []

    def read() -> None:
        try:
            for item in stream:
                received.append(item)
        except grpc.RpcError as exc:
            error.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # The registration's answer first (a slower database can take longer than
    # the pause below), then long enough for the service to act on the messages.
    deadline = time.monotonic() + 10.0
    while not received and not error and time.monotonic() < deadline:
        reader.join(0.05)
    reader.join(0.3)
    stream.cancel()
    done.set()
    reader.join(5.0)
    failure = error[0] if error and error[0].code() != grpc.StatusCode.CANCELLED else None
    return received, failure


def fuzz_agent_session(channel: grpc.Channel, report: FuzzReport, examples: int) -> None:
    """The agent protocol after a valid Register: up to three hostile messages
    (reports with random tokens, logs, acknowledgements...) on a live session.
    Every answer is a message or a precise status, and the session's node is
    then lost (its chunks requeued) as with any agent that goes away."""
    method = SERVICES["farm.agent.v1.AgentService"].methods_by_name["Session"]
    name = AGENT_SESSION + " (registered)"

    @_run_settings(report.seed, examples)
    @given(st.integers(0, 3), st.lists(requests(method.input_type), min_size=1, max_size=3))
    def one(host: int, messages: list[Message]) -> None:
        received, error = _registered_session(channel, f"fuzz-agent-{host}", messages)
        report.cases[name] += 1
        outcome = _outcome(method, error)
        report.codes[outcome.code.name] += 1
        assert received or error, f"{name}: no register_accepted nor status"
        assert outcome.acceptable, f"{outcome.describe()}\nmessages: {messages}"

    try:
        one()
    except AssertionError as failure:
        report.failures[name] = str(failure)


def methods_of(service_names: list[str]) -> list[MethodDescriptor]:
    return [m for name in service_names for m in SERVICES[name].methods]


def fuzz_services(
    address: str, service_names: list[str], seed: int, examples: int = EXAMPLES_PER_RPC
) -> FuzzReport:
    """Fuzz every RPC of the services (except EXCLUDED), each as its real caller."""
    report = FuzzReport(seed)
    with admin_channel(address) as admin, admin_channel(address, service=True) as service:
        for method in methods_of(service_names):
            if method.full_name not in EXCLUDED:
                caller = service if method.containing_service.full_name in SERVICE_CALLED else admin
                fuzz_method(caller, method, report, examples)
    return report


# --- the whole check of one test module ----------------------------------------------


def seed_queue(channel: grpc.Channel) -> None:
    """Real objects for the small ids the fuzzer favours: a folder, jobs with
    chunks (ids 1-5), so random calls act on existing rows too."""
    stub = jobs_pb2_grpc.JobsServiceStub(channel)
    stub.CreateFolder(jobs_pb2.CreateFolderRequest(parent_id=-1, owner="alice", name="shots"))
    for index in range(4):
        stub.SubmitJob(
            jobs_pb2.SubmitJobRequest(
                job=jobs_pb2.Job(
                    name=f"shot{index}",
                    owner="alice",
                    parent_id=-1,
                    template_id=COMMAND_LINE_TEMPLATE_ID,
                    start_frame=1,
                    end_frame=6,
                    by_frame=1,
                    packet_size=2,
                    priority=50,
                    attributes=[jobs_pb2.JobAttribute(name="executable", string_value="/bin/true")],
                )
            )
        )


def fuzz_module(address: str, channel: grpc.Channel, db: Database, module: str) -> FuzzReport:
    """Fuzz every RPC of the services FUZZ_PLAN gives `module`, then check
    that the run skipped nothing, every service still serves, and the
    database audit finds the queue consistent."""
    served = reflected_services(channel) - INFRASTRUCTURE
    assert served == set(FUZZ_PLAN), f"services without a fuzz plan: {served ^ set(FUZZ_PLAN)}"
    names = [name for name, owner in FUZZ_PLAN.items() if owner == module]
    seed_queue(channel)
    report = fuzz_services(address, names, fuzz_seed())
    if "farm.agent.v1.AgentService" in names:
        fuzz_agent_session(channel, report, EXAMPLES_PER_RPC)
    print(report.summary())
    expected = {m.full_name for m in methods_of(names)} - set(EXCLUDED)
    missed = sorted(name for name in expected if report.cases[name] == 0)
    assert not missed, f"RPCs not fuzzed: {missed}"
    assert not report.failures, report.summary() + "\n\n" + "\n\n".join(report.failures.values())
    for name in [*names, ""]:
        assert health_status(channel, name) == "SERVING", name
    problems = audit(db)
    assert not problems, f"{report.summary()}\ninconsistent queue: {problems}"
    return report
