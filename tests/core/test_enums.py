"""The shared contract's enum maps (muster_services/core/enums.py) spell the text
values the tables store."""

from __future__ import annotations

import pytest

from muster_proto.common.v1 import common_pb2
from muster_services.core import enums
from muster_services.core.errors import InvalidArgument
from muster_services.jobs import tables as jobs_tables
from muster_services.nodes import tables as nodes_tables


@pytest.mark.parametrize(
    ("mapping", "stored"),
    [
        (enums.PLATFORM, nodes_tables.PLATFORMS),
        (enums.PROCESS_PRIORITY, nodes_tables.PROCESS_PRIORITIES),
        (enums.KILL_FOLLOW_UP, jobs_tables.KILL_FOLLOW_UPS),
        (enums.RUN_OUTCOME, jobs_tables.RUN_OUTCOMES),
    ],
)
def test_every_value_of_a_shared_enum_is_a_value_its_table_stores(
    mapping: enums.EnumMap, stored: tuple[str, ...]
) -> None:
    assert set(mapping.to_text.values()) == set(stored)


def test_the_log_streams_and_system_events_map_both_ways() -> None:
    # The chunk log stores "unspecified" for a line without a stream: not a map value.
    assert set(enums.LOG_STREAM.to_text.values()) == set(jobs_tables.LOG_STREAMS) - {"unspecified"}
    assert enums.SYSTEM_EVENT.text(common_pb2.SYSTEM_EVENT_WAKE_UP, "event") == "wake_up"
    assert enums.SYSTEM_EVENT.number("logoff") == common_pb2.SYSTEM_EVENT_LOGOFF
    assert enums.RUN_OUTCOME.number("succeeded_with_warnings") == (
        common_pb2.CHUNK_RUN_OUTCOME_SUCCEEDED_WITH_WARNINGS
    )
    assert enums.PLATFORM.number("") == common_pb2.PLATFORM_UNSPECIFIED


def test_an_unspecified_value_is_refused_unless_there_is_a_default() -> None:
    assert enums.KILL_FOLLOW_UP.text(0, "follow_up", "continue") == "continue"
    with pytest.raises(InvalidArgument, match="follow_up: must be set"):
        enums.KILL_FOLLOW_UP.text(0, "follow_up")
