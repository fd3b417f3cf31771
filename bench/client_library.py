"""The client library's own cost: `MClientAPI.ActionSendJob` through a
session against `MDispatcherAPI.jobSubmit`, the same job to the same
in-process dispatcher, interleaved in the same run; and a session's set-up
(`Connect` + `Authenticate`) against one bare `AdminService.Login`.

ActionSendJob is jobSubmit made through the session's own connection
(muster_gateway/client_library.py), so the two should cost the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from statistics import median

import grpc

from bench.common import BENCHMARKS, Row, bench_database
from bench.jobs import served
from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_services import app
from muster_services.core.auth import auth_metadata
from muster_services.core.settings import Settings
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID

SUBMITS = 100
SESSIONS = 5
ROUNDS = 5
USER, PASSWORD = "bench-submitter", "bench-password"


def _per_call_ms(calls: int, call: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e3


def run() -> list[Row]:
    with (
        bench_database("bench_client_library") as db,
        served(app.build_components(list(app.SERVICE_NAMES), db, Settings())) as server,
    ):
        os.environ.update(MUSTER_DISPATCHER=server.address, MUSTER_TOKEN=server.token)
        os.environ.pop("MUSTER_RUNNING_CONTEXT", None)
        import MClientAPI
        import MDispatcherAPI

        from muster_gateway.connection import reset_connection

        reset_connection()
        channel = grpc.insecure_channel(server.address)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        admin.CreateUser(
            admin_pb2.CreateUserRequest(
                user=admin_pb2.User(
                    name=USER, password=PASSWORD, role=admin_pb2.USER_ROLE_USER, enabled=True
                )
            ),
            metadata=auth_metadata(server.token),
            timeout=30,
        )
        host, port = server.address.rsplit(":", 1)
        session = MClientAPI.InitializeSession()
        for err in (
            MClientAPI.Connect(session, host, int(port)),
            MClientAPI.Authenticate(session, USER, PASSWORD),
        ):
            assert err.getErrorCode() == 0, err.getDescription()

        def job() -> MClientAPI.MJob:
            made = MClientAPI.MJob()
            made.setName("bench")
            made.setTemplateID(COMMAND_LINE_TEMPLATE_ID)
            made.attributeSetString("executable", "/bin/true")
            made.setIncludedPools("nowhere")  # stays queued
            return made

        def send() -> None:
            assert MClientAPI.ActionSendJob(session, job()).getErrorCode() == 0

        def submit() -> None:
            assert MDispatcherAPI.jobSubmit(job(), USER)[0].getErrorCode() == 0

        def open_session() -> None:
            fresh = MClientAPI.InitializeSession()
            assert MClientAPI.Connect(fresh, host, int(port)).getErrorCode() == 0
            assert MClientAPI.Authenticate(fresh, USER, PASSWORD).getErrorCode() == 0
            MClientAPI.Disconnect(fresh)

        login = admin_pb2.LoginRequest(user_name=USER, password=PASSWORD)
        sends, submits, sessions, logins = [], [], [], []
        for _ in range(ROUNDS):  # interleaved, so drift hits both sides alike
            submits.append(_per_call_ms(SUBMITS, submit))
            sends.append(_per_call_ms(SUBMITS, send))
            logins.append(_per_call_ms(SESSIONS, lambda: admin.Login(login, timeout=30)))
            sessions.append(_per_call_ms(SESSIONS, open_session))
        MClientAPI.Disconnect(session)
        channel.close()
        reset_connection()
    return [
        Row(
            "MClientAPI.ActionSendJob through a session",
            median(sends),
            median(submits),
            "MDispatcherAPI.jobSubmit, same job and server",
            "ms/call",
        ),
        Row(
            "MClientAPI session set-up: InitializeSession, Connect, Authenticate, Disconnect",
            median(sessions),
            median(logins),
            "one AdminService.Login on an open channel",
            "ms/session",
        ),
    ]


BENCHMARKS["client library"] = run
