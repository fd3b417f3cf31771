"""The protobuf contract covers Muster's MDispatcherAPI, and docs/api-compatibility.md says how.

Every Muster function (the seed's list, copied below by section) must be served by exactly one
RPC, which names it in its `(farm.common.v1.muster_functions)` option, and the compatibility
table must list each function once (chunkGetHistory twice, one row per form) against that RPC.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FileDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)

import muster_proto
from muster_proto.common.v1 import options_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPAT_DOC = REPO_ROOT / "docs" / "api-compatibility.md"

# The MDispatcherAPI functions, by the seed's sections (100 names).
MUSTER_FUNCTIONS_BY_SECTION: dict[str, tuple[str, ...]] = {
    "Jobs": (
        "jobGetList",
        "jobGet",
        "jobReparent",
        "jobSubmit",
        "jobEdit",
        "jobAddFolder",
        "jobReinit",
        "jobDelete",
        "jobUpdateStatus",
        "jobUpdate",
    ),
    "Chunks": ("chunkGetList", "chunkGet", "chunkSetStatus", "chunkGetHistory"),
    "Nodes": (
        "nodeKillProcess",
        "nodeKillProcessAndPause",
        "nodeKillProcessAndRestart",
        "nodeKillAndPauseNodesWorkingOnJob",
        "nodeKillAndRedoNodesWorkingOnJob",
        "nodeKillAndGoOnNodesWorkingOnJob",
        "nodePause",
        "nodeResume",
        "nodeForceUpdate",
        "nodeSetProcessPriority",
        "nodeSoftRestart",
        "nodePurgeTemplatesExclusion",
        "nodePurgeJobsExclusions",
        "nodeSetRealtimeLog",
        "nodeSendSystemEvent",
        "nodeRunPythonCode",
        "nodeSetNotes",
        "nodeRemoveRegistration",
        "nodeGetList",
        "nodeGet",
        "nodeGetByName",
        "sendMessageToNode",
    ),
    "Consoles": (
        "clientGetList",
        "clientGet",
        "clientGetByUsername",
        "clientForceDisconnection",
        "sendMessageToConsole",
    ),
    "Notificators": (
        "clientNGetList",
        "clientNGet",
        "clientNGetByUsername",
        "clientNForceDisconnection",
        "sendMessageToNotificator",
    ),
    "Database": (
        "dbGetStatisticsBounds",
        "dbGetHistoryBounds",
        "dbClearStatisticsBounds",
        "dbClearHistoryBounds",
        "dbImportQueueSQL",
        "dbExportQueueSQL",
        "dbFlush",
        "dbHistoryFlush",
        "dbBackupFlush",
    ),
    "Backup database": (
        "backupJob",
        "backupJobAndDelete",
        "backupRestoreJob",
        "backupGetBoundaries",
        "backupQuery",
    ),
    "System": (
        "systemQueryEngineStatus",
        "systemSwapEngineStatus",
        "systemSoftRestart",
        "systemResetStatisticsCounters",
        "systemStartNodesNetworkScan",
        "systemGetConfiguration",
        "systemSetConfiguration",
        "systemGetLDAPConfiguration",
        "systemSetLDAPConfiguration",
        "systemGetActivityLogsList",
        "systemGetActivityLog",
        "systemRemoveActivityLog",
        "systemGetActionLogsList",
        "systemGetActionLog",
        "systemRemoveActionLog",
    ),
    "Logs": ("logClear", "logAddInternalMessage", "logAddMessage"),
    "Users and groups": (
        "userGetList",
        "userGet",
        "userAdd",
        "userRemove",
        "userConfigure",
        "groupGetList",
        "groupGet",
        "groupAdd",
        "groupRemove",
        "groupConfigure",
    ),
    "Pools": (
        "poolGetList",
        "poolGet",
        "poolConfigure",
        "poolAdd",
        "poolRemove",
        "poolNotifyChanges",
    ),
    "Repositories": (
        "repositoriesGetList",
        "repositoriesGet",
        "repositoriesConfigure",
        "repositoriesAdd",
        "repositoriesNotifyChanges",
        "repositoriesRemove",
    ),
}
MUSTER_FUNCTIONS: tuple[str, ...] = tuple(
    name for names in MUSTER_FUNCTIONS_BY_SECTION.values() for name in names
)
# chunkGetHistory has two documented forms (with and without a chunk id); each gets a row.
TWO_FORM_FUNCTIONS = frozenset({"chunkGetHistory"})

# Services whose every RPC either serves Muster functions or is allow-listed below.
FACADE_SERVICES = (
    "farm.jobs.v1.JobsService",
    "farm.nodes.v1.NodesService",
    "farm.nodes.v1.ClientsService",
    "farm.admin.v1.AdminService",
)
# RPCs of the facade services that serve no Muster function.
NON_MUSTER_RPCS = frozenset(
    {
        ("farm.jobs.v1.JobsService", "ListTemplates"),
        ("farm.jobs.v1.JobsService", "GetTemplate"),
        ("farm.jobs.v1.JobsService", "ListTemplateGroups"),
        ("farm.jobs.v1.JobsService", "SetTemplateGroupLimit"),
        # Render logs read back (docs/logs.md).
        ("farm.jobs.v1.JobsService", "GetChunkLog"),
        ("farm.jobs.v1.JobsService", "FollowChunkLog"),
        ("farm.nodes.v1.ClientsService", "Connect"),
        # Per-node template preferences (client configuration items).
        ("farm.nodes.v1.NodesService", "SetNodeTemplatePreferences"),
        ("farm.nodes.v1.NodesService", "GetNodeTemplatePreferences"),
        ("farm.admin.v1.AdminService", "ListLogEntries"),
        ("farm.admin.v1.AdminService", "ListStatisticsSamples"),
        # Authentication (docs/security.md): the facade logs in by itself.
        ("farm.admin.v1.AdminService", "Login"),
    }
)
AGENT_SERVICE = "farm.agent.v1.AgentService"

TABLE_HEADER = ("Muster function", "Facade call", "Service", "RPC", "State")
STATES = frozenset({"contract", "implemented", "tested"})
_SEPARATOR_CELL = re.compile(r"^:?-{3,}:?$")


@dataclass(frozen=True)
class Row:
    """One row of the compatibility table."""

    function: str
    facade_call: str
    service: str
    rpc: str
    state: str


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("`").strip() for cell in line.strip().strip("|").split("|")]


def parse_table_rows(text: str) -> list[Row]:
    """Return the data rows of every table, failing on a table with other columns."""
    rows: list[Row] = []
    header_seen = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.lstrip().startswith("|"):
            header_seen = False
            continue
        cells = _cells(line)
        if not header_seen:
            assert tuple(cells) == TABLE_HEADER, f"line {number}: unexpected header {cells}"
            header_seen = True
            continue
        if all(_SEPARATOR_CELL.match(cell) for cell in cells):
            continue
        assert len(cells) == len(TABLE_HEADER), f"line {number}: {len(cells)} cells: {line}"
        rows.append(Row(*cells))
    return rows


def _farm_file_descriptors() -> Iterator[FileDescriptor]:
    for module_info in pkgutil.walk_packages(muster_proto.__path__, prefix="muster_proto."):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(module_info.name)
            yield cast(FileDescriptor, module.DESCRIPTOR)


def _services() -> dict[str, ServiceDescriptor]:
    return {
        service.full_name: service
        for file in _farm_file_descriptors()
        for service in file.services_by_name.values()
    }


def _muster_functions(method: MethodDescriptor) -> list[str]:
    return list(method.GetOptions().Extensions[options_pb2.muster_functions])


def _enums_of(messages: list[Descriptor]) -> Iterator[EnumDescriptor]:
    for message in messages:
        yield from message.enum_types
        yield from _enums_of(list(message.nested_types))


def _all_enums() -> Iterator[EnumDescriptor]:
    for file in _farm_file_descriptors():
        yield from file.enum_types_by_name.values()
        yield from _enums_of(list(file.message_types_by_name.values()))


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return parse_table_rows(COMPAT_DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services() -> dict[str, ServiceDescriptor]:
    return _services()


def test_seed_list_has_one_hundred_distinct_functions() -> None:
    assert len(MUSTER_FUNCTIONS) == 100
    assert len(set(MUSTER_FUNCTIONS)) == 100


def test_doc_lists_every_muster_function_once_per_documented_form(rows: list[Row]) -> None:
    expected = Counter(MUSTER_FUNCTIONS) + Counter(TWO_FORM_FUNCTIONS)
    assert Counter(row.function for row in rows) == expected
    assert len(rows) == 101


def test_doc_rows_have_a_known_state_and_a_facade_call(rows: list[Row]) -> None:
    for row in rows:
        assert row.state in STATES, row
        assert row.facade_call.startswith(f"MDispatcherAPI.{row.function}("), row


def test_both_forms_of_a_function_map_to_the_same_rpc(rows: list[Row]) -> None:
    targets: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        targets.setdefault(row.function, set()).add((row.service, row.rpc))
    assert {name: t for name, t in targets.items() if len(t) != 1} == {}


def test_every_doc_row_names_an_rpc_that_carries_its_function(
    rows: list[Row], services: dict[str, ServiceDescriptor]
) -> None:
    for row in rows:
        service = services.get(row.service)
        assert service is not None, f"{row.function}: no service {row.service}"
        method = service.methods_by_name.get(row.rpc)
        assert method is not None, f"{row.function}: {row.service} has no RPC {row.rpc}"
        assert row.function in _muster_functions(method), (
            f"{row.service}.{row.rpc} does not carry muster_functions {row.function!r}"
        )


def test_every_muster_function_is_carried_by_exactly_one_rpc(
    services: dict[str, ServiceDescriptor],
) -> None:
    carriers: dict[str, list[str]] = {}
    for service in services.values():
        for method in service.methods:
            for function in _muster_functions(method):
                carriers.setdefault(function, []).append(method.full_name)
    unknown = sorted(set(carriers) - set(MUSTER_FUNCTIONS))
    assert unknown == [], f"options name functions Muster does not have: {unknown}"
    missing = [name for name in MUSTER_FUNCTIONS if name not in carriers]
    assert missing == [], f"no RPC serves: {missing}"
    shared = {name: rpcs for name, rpcs in carriers.items() if len(rpcs) != 1}
    assert shared == {}, f"served by several RPCs (or listed twice): {shared}"


def test_facade_service_rpcs_serve_muster_functions_or_are_allow_listed(
    services: dict[str, ServiceDescriptor],
) -> None:
    for name in FACADE_SERVICES:
        assert name in services, f"missing service {name}"
        for method in services[name].methods:
            allow_listed = (name, method.name) in NON_MUSTER_RPCS
            has_option = bool(_muster_functions(method))
            assert has_option != allow_listed, (
                f"{method.full_name}: carries muster_functions={has_option}, "
                f"allow-listed as non-Muster={allow_listed}"
            )
    for name, rpc in NON_MUSTER_RPCS:
        assert rpc in services[name].methods_by_name, f"stale allow-list entry {name}.{rpc}"


def test_agent_service_is_enrollment_one_bidirectional_session_and_template_code(
    services: dict[str, ServiceDescriptor],
) -> None:
    agent = services[AGENT_SERVICE]
    assert [method.name for method in agent.methods] == ["Enroll", "Session", "GetTemplateSource"]
    source = agent.methods_by_name["GetTemplateSource"]
    assert not source.client_streaming and not source.server_streaming
    assert _muster_functions(agent.methods_by_name["Enroll"]) == []
    session = agent.methods_by_name["Session"]
    assert session.client_streaming and session.server_streaming
    assert _muster_functions(session) == []


def test_every_enum_starts_with_an_unspecified_zero_value() -> None:
    enums = list(_all_enums())
    assert enums, "no enums found: are the generated modules importable?"
    for enum in enums:
        zero = enum.values_by_number.get(0)
        assert zero is not None, f"{enum.full_name} has no zero value"
        assert zero.name.endswith("_UNSPECIFIED"), f"{enum.full_name}: zero value {zero.name}"
