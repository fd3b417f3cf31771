"""Log and file names with `../`, absolute paths and NUL bytes: every RPC
that takes a file or log name, or stores a path, refuses them with
INVALID_ARGUMENT, and nothing outside is read or written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from muster_proto.admin.v1 import admin_pb2 as pb
from muster_proto.admin.v1.admin_pb2_grpc import AdminServiceStub
from muster_services.core.database import Database
from tests.security.audit import audit

pytestmark = pytest.mark.database


def hostile_names(outside: Path) -> list[str]:
    return [
        "../activity-2026-01-01.log",
        "../../../../etc/passwd",
        "..",
        "..\\..\\windows\\win.ini",
        "/etc/passwd",
        str(outside),
        "../" * 12 + str(outside).lstrip("/"),
        "C:\\Windows\\win.ini",
        "\\\\server\\share\\x.log",
        "~root/.bashrc",
        "activity-2026-01-01.log\x00.txt",
        "\x00",
        "activity-2026-01-01.log/..",
    ]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file the dispatcher must never read nor touch."""
    secret = tmp_path / "secret.log"
    secret.write_text("not for callers\n")
    return secret


def _state(folder: Path) -> list[tuple[str, float, bytes]]:
    return sorted((p.name, p.stat().st_mtime, p.read_bytes()) for p in folder.iterdir())


@pytest.mark.parametrize(
    "rpc", ["GetActivityLog", "DeleteActivityLog", "GetActionLog", "DeleteActionLog"]
)
def test_log_names_outside_the_list_are_refused(
    channel: grpc.Channel, outside: Path, stack_db: Database, rpc: str
) -> None:
    stub = AdminServiceStub(channel)
    call: Callable[..., Any] = getattr(stub, rpc)
    request_class = getattr(pb, f"{rpc}Request")
    before = _state(outside.parent)
    for name in hostile_names(outside):
        with pytest.raises(grpc.RpcError) as error:
            call(request_class(name=name), timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.value)
        assert "not for callers" not in str(error.value.details())
    assert _state(outside.parent) == before
    assert audit(stack_db) == {}


def _repository(**paths: str) -> pb.Repository:
    values = {"name": "projects", "linux_path": "/mnt/projects", **paths}
    return pb.Repository(**values)


@pytest.mark.parametrize(
    "paths",
    [
        {"linux_path": "/mnt/projects/../../etc"},
        {"linux_path": "../projects"},
        {"linux_path": "projects"},
        {"linux_path": "/mnt/pro\x00jects"},
        {"linux_path": "/mnt/projects\n/etc"},
        {"macos_path": "/Volumes/../private/etc"},
        {"windows_path": "P:\\proj\\..\\..\\Windows"},
        {"windows_path": "..\\proj"},
        {"windows_path": "\\\\server\\share\\..\\admin$"},
        {"windows_path": "P:\\pro\x00j"},
    ],
)
def test_repository_paths_that_traverse_are_refused(
    channel: grpc.Channel, paths: dict[str, str]
) -> None:
    stub = AdminServiceStub(channel)
    before = stub.ListRepositories(pb.ListRepositoriesRequest()).repositories
    with pytest.raises(grpc.RpcError) as error:
        stub.CreateRepository(pb.CreateRepositoryRequest(repository=_repository(**paths)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value
    assert stub.ListRepositories(pb.ListRepositoriesRequest()).repositories == before
