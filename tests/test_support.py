"""The in-process server helper other tests rely on."""

from __future__ import annotations

import grpc

from muster_services.core.database import Database
from muster_services.core.settings import Settings
from muster_services.jobs import component as jobs
from tests.support import InProcessServer, health_status


def test_in_process_server_serves_and_stops(db: Database) -> None:
    with (
        InProcessServer([jobs.build(db, Settings())]) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        assert health_status(channel, "farm.jobs.v1.JobsService") == "SERVING"
