"""Property-based fuzzing of every RPC of the nodes services (see fuzz.py):
never UNKNOWN or INTERNAL, nothing hangs, every service still serves, and
the queue is consistent afterwards."""

from __future__ import annotations

import grpc
import pytest

from muster_services.core.database import Database
from tests.security.fuzz import fuzz_module
from tests.support import InProcessServer

pytestmark = pytest.mark.database


def test_every_rpc_answers_hostile_requests_with_a_precise_status(
    stack: InProcessServer, channel: grpc.Channel, stack_db: Database
) -> None:
    fuzz_module(stack.address, channel, stack_db, __name__.rsplit(".", 1)[-1])
