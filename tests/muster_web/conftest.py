"""A dev stack (`dispatcher run` with one local agent) and its dashboard,
shared by the tests of a module."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from muster_services.core.database import drop_database, ensure_database, with_database
from tests.conftest import new_database_name
from tests.e2e.conftest import free_port
from tests.support import DispatcherProcess

DASHBOARD = re.compile(r"dashboard at (?P<url>http://\S+)")


class Stack:
    def __init__(self, process: DispatcherProcess) -> None:
        self.process = process
        found = [m for m in map(DASHBOARD.search, process.output) if m]
        assert found, "no dashboard address printed:\n" + "\n".join(process.output[-30:])
        self.url = found[0]["url"]
        self.user, self.password = process.credentials()


@pytest.fixture(scope="module")
def stack(
    postgres_admin_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    name = new_database_name()
    ensure_database(postgres_admin_url, name, template=template_database)
    url = with_database(postgres_admin_url, name).render_as_string(hide_password=False)
    data_dir = Path(tmp_path_factory.mktemp("web-stack"))
    data_dir.chmod(0o755)
    process = DispatcherProcess(
        ["run", "--agents", "1"],
        {
            "MUSTER_DATABASE_URL": url,
            "MUSTER_DATA_DIR": str(data_dir),
            "MUSTER_WEB_LISTEN": "127.0.0.1:0",
            "MUSTER_EVENT_POLL_SECONDS": "1",
            "MUSTER_NODE_LOST_TIMEOUT_SECONDS": "10",
            "MUSTER_DISCOVERY_PORT": str(free_port(socket.SOCK_DGRAM)),
        },
    )
    try:
        yield Stack(process)
    finally:
        process.stop()
        drop_database(postgres_admin_url, name)
