"""The facade logs in by itself: environment, client file, renewal, refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import MDispatcherAPI
import pytest

from muster_gateway import errors
from muster_gateway.connection import reset_connection
from muster_services.admin.accounts import AccountsService
from muster_services.admin.domain import UserSpec
from muster_services.core.database import Database
from tests.admin.conftest import cheap_hasher
from tests.support import InProcessServer


@pytest.fixture
def console(
    dispatcher_server: InProcessServer,
    dispatcher_database: Database,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Path]:
    """A console script's environment: the address only, no token."""
    AccountsService(dispatcher_database, cheap_hasher()).create_user(
        UserSpec(name=f"td-{tmp_path.name}", role="user", password="td-password-1")
    )
    monkeypatch.setenv("MUSTER_DISPATCHER", dispatcher_server.address)
    for variable in ("MUSTER_TOKEN", "MUSTER_USER", "MUSTER_PASSWORD", "MUSTER_RUNNING_CONTEXT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MUSTER_CLIENT_CONFIG", str(tmp_path / "client.json"))
    reset_connection()
    yield tmp_path
    reset_connection()


def test_without_credentials_calls_are_refused_with_a_readable_error(console: Path) -> None:
    err, jobs = MDispatcherAPI.jobGetList()
    assert err.getErrorCode() == errors.kErrorUnauthenticated
    assert "log in" in err.getDescription()
    assert jobs == []


def test_user_and_password_from_the_environment_log_in(
    console: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSTER_USER", f"td-{console.name}")
    monkeypatch.setenv("MUSTER_PASSWORD", "td-password-1")
    err, _ = MDispatcherAPI.jobGetList()
    assert err.getErrorCode() == errors.kErrorNone, err.getDescription()


def test_the_client_file_s_login_is_used_and_a_wrong_password_is_an_error(
    console: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_file = console / "client.json"
    client_file.write_text(json.dumps({"user": f"td-{console.name}", "password": "nope"}))
    err, _ = MDispatcherAPI.jobGetList()
    assert err.getErrorCode() == errors.kErrorUnauthenticated
    assert "login failed" in err.getDescription()
    client_file.write_text(json.dumps({"user": f"td-{console.name}", "password": "td-password-1"}))
    reset_connection()
    err, _ = MDispatcherAPI.jobGetList()
    assert err.getErrorCode() == errors.kErrorNone, err.getDescription()


def test_a_plain_user_gets_permission_denied_for_administration(
    console: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUSTER_USER", f"td-{console.name}")
    monkeypatch.setenv("MUSTER_PASSWORD", "td-password-1")
    from MClientAPI import MPool

    pool = MPool()
    pool.setName("gpu-only")
    err = MDispatcherAPI.poolAdd(pool)
    assert err.getErrorCode() == errors.kErrorPermissionDenied
    assert "administrator" in err.getDescription()


def test_an_expired_token_is_renewed_by_logging_in_again(
    console: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from muster_gateway.connection import connection

    monkeypatch.setenv("MUSTER_USER", f"td-{console.name}")
    monkeypatch.setenv("MUSTER_PASSWORD", "td-password-1")
    assert MDispatcherAPI.jobGetList()[0].getErrorCode() == errors.kErrorNone
    conn = connection()
    conn._token = "m1.forged.token"  # as if the farm's key had changed
    assert MDispatcherAPI.jobGetList()[0].getErrorCode() == errors.kErrorNone
    assert conn._token != "m1.forged.token"
