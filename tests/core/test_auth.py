"""Tokens and the guard: who a call comes from and whether it may be made."""

from __future__ import annotations

import base64
import json
import time

import pytest

from muster_services.core.auth import Guard, TokenSigner, auth_metadata, bearer_token
from muster_services.core.errors import PermissionDenied, Unauthenticated

SIGNER = TokenSigner(b"k" * 32)
GUARD = Guard(SIGNER)
PEER = "ipv4:10.0.0.5:51234"

SUBMIT = "/farm.jobs.v1.JobsService/SubmitJob"
LIST = "/farm.jobs.v1.JobsService/ListJobs"
CREATE_USER = "/farm.admin.v1.AdminService/CreateUser"
SESSION = "/farm.agent.v1.AgentService/Session"
FINISH = "/farm.jobs.v1.ChunkRunsService/FinishChunkRuns"
LOGIN = "/farm.admin.v1.AdminService/Login"
HEALTH = "/grpc.health.v1.Health/Check"


def _token(kind: str = "user", role: str = "user", ttl: float = 3600, **extra: object) -> str:
    return SIGNER.issue("alice", kind, role, ttl, **extra)[0]  # type: ignore[arg-type]


def test_a_token_round_trips_its_claims() -> None:
    token, expires_at = SIGNER.issue("alice", "user", "administrator", 60)
    claims = SIGNER.verify(token)
    assert (claims.subject, claims.kind, claims.role) == ("alice", "user", "administrator")
    assert claims.expires_at == pytest.approx(expires_at)
    assert expires_at == pytest.approx(time.time() + 60, abs=2)


def test_agent_tokens_carry_their_node_identity() -> None:
    claims = SIGNER.verify(_token("agent", "", host="render-01", instance=2))
    assert (claims.host, claims.instance) == ("render-01", 2)


def _tampered(token: str) -> str:
    prefix, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["role"] = "administrator"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{prefix}.{forged}.{signature}"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "malformed"),
        ("garbage", "malformed"),
        ("m2.a.b", "malformed"),
        ("m1.a.b.c", "malformed"),
        ("m1.é.x", "malformed"),
        (_tampered(_token()), "signature"),
        (TokenSigner(b"o" * 32).issue("alice", "user", "administrator", 60)[0], "signature"),
        (_token(ttl=-1), "expired"),
        ("m1." + "a" * 5000 + ".x", "too long"),
    ],
)
def test_forged_malformed_and_expired_tokens_are_unauthenticated(token: str, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        SIGNER.verify(token)


def test_a_verified_token_is_still_refused_once_it_expires() -> None:
    token = _token(ttl=0.3)
    SIGNER.verify(token)  # cached now
    time.sleep(0.4)
    with pytest.raises(Unauthenticated, match="expired"):
        SIGNER.verify(token)


def test_the_bearer_token_comes_from_the_authorization_metadata() -> None:
    assert bearer_token(auth_metadata("abc")) == "abc"
    assert bearer_token([("x-other", "1")]) == ""
    with pytest.raises(Unauthenticated, match="Bearer"):
        bearer_token([("authorization", "Basic dXNlcjpwYXNz")])


USER = _token("user", "user")
ADMIN = _token("user", "administrator")
SERVICE = SIGNER.issue("service:nodes", "service", "administrator", 3600)[0]
AGENT = _token("agent", "", host="h", instance=0)


@pytest.mark.parametrize(
    ("method", "token", "allowed"),
    [
        (LIST, USER, True),
        (SUBMIT, USER, True),
        (CREATE_USER, USER, False),
        (CREATE_USER, ADMIN, True),
        (CREATE_USER, SERVICE, True),
        (CREATE_USER, AGENT, False),
        (LIST, AGENT, False),
        (SESSION, AGENT, True),
        (SESSION, ADMIN, False),
        (FINISH, SERVICE, True),
        (FINISH, ADMIN, False),
        (FINISH, AGENT, False),
        ("/farm.jobs.v1.JobsService/SomethingNew", USER, False),
        ("/farm.jobs.v1.JobsService/SomethingNew", ADMIN, True),
    ],
)
def test_the_guard_applies_each_method_s_access_level(
    method: str, token: str, allowed: bool
) -> None:
    if allowed:
        caller = GUARD.admit(method, auth_metadata(token), PEER)
        assert caller.peer == PEER
    else:
        with pytest.raises(PermissionDenied, match="needs"):
            GUARD.admit(method, auth_metadata(token), PEER)


@pytest.mark.parametrize("method", [LIST, SUBMIT, CREATE_USER, SESSION, FINISH])
def test_every_non_public_method_needs_a_token(method: str) -> None:
    with pytest.raises(Unauthenticated, match="needs a token"):
        GUARD.admit(method, (), PEER)


@pytest.mark.parametrize("method", [LOGIN, HEALTH, "/farm.agent.v1.AgentService/Enroll"])
def test_public_methods_need_no_token(method: str) -> None:
    assert GUARD.admit(method, (), PEER).name == ""


def test_the_caller_a_guard_admits_is_the_token_s_subject() -> None:
    caller = GUARD.admit(SUBMIT, auth_metadata(ADMIN), PEER)
    assert (caller.name, caller.role, caller.kind) == ("alice", "administrator", "user")
    assert caller.may_act_for("bob")
    user = GUARD.admit(SUBMIT, auth_metadata(USER), PEER)
    assert user.may_act_for("alice") and not user.may_act_for("bob")
