"""The MDispatcherAPI facade: every seed function, Muster's return convention."""

from __future__ import annotations

import inspect
import re
import socket
from pathlib import Path
from typing import Any

import MClientAPI
import MDispatcherAPI
import muster
import pytest

from muster_gateway import errors
from muster_gateway.connection import reset_connection
from muster_gateway.errors import MUSTERERR

DOC = Path(__file__).resolve().parents[2] / "docs" / "api-compatibility.md"
ROW = re.compile(r"^\|\s*(\w+)\s*\|\s*MDispatcherAPI\.(\w+)\(([^)]*)\)")

# Plausible arguments for every function (ids that do not exist: the server
# answers, the facade translates).
SAMPLE_ARGS: dict[str, tuple[Any, ...]] = {
    "jobGet": (999,),
    "jobReparent": (999, -1),
    "jobSubmit": (MClientAPI.MJob(), "td"),
    "jobEdit": (MClientAPI.MJob(),),
    "jobAddFolder": (-1, "td", "shots"),
    "jobReinit": (999,),
    "jobDelete": (999,),
    "jobUpdateStatus": (999,),
    "jobUpdate": (999,),
    "chunkGetList": (999,),
    "chunkGet": (999, 1),
    "chunkSetStatus": (999, 1, 1),
    "chunkGetHistory": (999,),
    "nodeSetProcessPriority": (7, 1),
    "nodePurgeTemplatesExclusion": (7, 1),
    "nodePurgeJobsExclusions": (7, 1),
    "nodeSetRealtimeLog": (7, True),
    "nodeSendSystemEvent": (7, 1),
    "nodeRunPythonCode": (7, "print(1)"),
    "nodeSetNotes": (7, "n"),
    "nodeGetByName": ("node-7",),
    "sendMessageToNode": (7, 1, "hello", False),
    "clientGetByUsername": ("td",),
    "sendMessageToConsole": (7, 1, "hello", False),
    "clientNGetByUsername": ("td",),
    "sendMessageToNotificator": (7, 1, "hello", False),
    "dbClearStatisticsBounds": (0, 10),
    "dbClearHistoryBounds": (0, 10),
    "dbImportQueueSQL": ("",),
    "dbExportQueueSQL": (MClientAPI.MStringRef(),),
    "backupJob": (999, 1),
    "backupJobAndDelete": (999, 1),
    "backupRestoreJob": (999, 1, 0),
    "backupGetBoundaries": (MClientAPI.MBackupQueryBoundaries(),),
    "backupQuery": (MClientAPI.MBackupQuery(),),
    "systemSetConfiguration": (MClientAPI.MDispatcherConfiguration(), False),
    "systemSetLDAPConfiguration": (MClientAPI.MLDAPConfiguration(), False),
    "systemGetActivityLog": ("nope",),
    "systemRemoveActivityLog": ("nope",),
    "systemGetActionLog": ("nope",),
    "systemRemoveActionLog": ("nope",),
    "logAddInternalMessage": ("m",),
    "logAddMessage": ("m",),
    "userGet": ("nobody",),
    "userAdd": (MClientAPI.MUser(),),
    "userRemove": ("nobody",),
    "userConfigure": (MClientAPI.MUser(),),
    "groupGet": ("none",),
    "groupAdd": (MClientAPI.MGroup(),),
    "groupRemove": ("none",),
    "groupConfigure": (MClientAPI.MGroup(),),
    "poolGet": ("none",),
    "poolConfigure": (MClientAPI.MPool(),),
    "poolAdd": (MClientAPI.MPool(),),
    "poolRemove": ("none",),
    "repositoriesGet": ("none",),
    "repositoriesConfigure": (MClientAPI.MRepository(),),
    "repositoriesAdd": (MClientAPI.MRepository(),),
    "repositoriesRemove": ("none",),
}
ONE_ID = (
    "nodeKillProcess",
    "nodeKillProcessAndPause",
    "nodeKillProcessAndRestart",
    "nodeKillAndPauseNodesWorkingOnJob",
    "nodeKillAndRedoNodesWorkingOnJob",
    "nodeKillAndGoOnNodesWorkingOnJob",
    "nodePause",
    "nodeResume",
    "nodeForceUpdate",
    "nodeSoftRestart",
    "nodeRemoveRegistration",
    "nodeGet",
    "clientGet",
    "clientForceDisconnection",
    "clientNGet",
    "clientNForceDisconnection",
)


def _args(function: str) -> tuple[Any, ...]:
    if function in ONE_ID:
        return (7,)
    return SAMPLE_ARGS.get(function, ())


def _doc_rows() -> list[tuple[str, list[str]]]:
    rows = []
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            params = [p.strip() for p in match[3].split(",") if p.strip()]
            rows.append((match[2], params))
    return rows


def _err_of(result: Any) -> MUSTERERR:
    err = result[0] if isinstance(result, tuple) else result
    assert isinstance(err, MUSTERERR), f"first value is {type(err).__name__}"
    return err


def test_every_seed_function_exists_with_the_parameters_the_table_documents() -> None:
    rows = _doc_rows()
    assert len({name for name, _ in rows}) == 100
    assert sorted(MDispatcherAPI.FUNCTIONS) == sorted({name for name, _ in rows})
    for name, params in rows:
        signature = inspect.signature(getattr(MDispatcherAPI, name))
        # The seed spells the last parameter of the sendMessageTo* functions
        # "brodcast"; the facade keeps the seed's name, the table the word.
        names = [n.replace("brodcast", "broadcast") for n in signature.parameters]
        assert names[: len(params)] == params, f"{name}{signature} vs {params}"


@pytest.mark.parametrize("function", sorted({n for n, _ in _doc_rows()}))
def test_every_function_answers_a_musterr_and_never_raises(dispatcher: str, function: str) -> None:
    result = getattr(MDispatcherAPI, function)(*_args(function))
    err = _err_of(result)
    # Whatever the server decides, a non-zero code comes with a description
    # naming the function.
    if err.getErrorCode() != 0:
        assert err.getDescription().startswith(function + ":"), err


def test_function_not_implemented_yet_answers_not_implemented_naming_it(dispatcher: str) -> None:
    err = MDispatcherAPI.nodeRemoveRegistration(7)
    if err.getErrorCode() == errors.kErrorNotImplemented:
        assert "nodeRemoveRegistration" in err.getDescription()
    else:  # implemented since: an unknown node is NOT_FOUND
        assert err.getErrorCode() == errors.kErrorNotFound


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: MDispatcherAPI.jobGet("seven"), "id must be an integer"),
        (lambda: MDispatcherAPI.jobGet(1.5), "id must be a whole number"),
        (lambda: MDispatcherAPI.jobSubmit("not a job", "td"), "job must be an MJob"),
        (lambda: MDispatcherAPI.userGet(42), "name must be a string"),
        (lambda: MDispatcherAPI.dbExportQueueSQL("ref"), "sqlRef must be an MStringRef"),
        (lambda: MDispatcherAPI.backupGetBoundaries(None), "MBackupQueryBoundaries"),
    ],
)
def test_bad_arguments_return_an_error_without_calling(
    dispatcher: str, call: Any, message: str
) -> None:
    err = _err_of(call())
    assert err.getErrorCode() == errors.kErrorBadArguments
    assert message in err.getDescription()


def test_unreachable_dispatcher_is_a_non_zero_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MUSTER_DISPATCHER", f"127.0.0.1:{port}")
    monkeypatch.setenv("MUSTER_TIMEOUT_SECONDS", "2")
    reset_connection()
    try:
        err, jobs = MDispatcherAPI.jobGetList()
    finally:
        reset_connection()
    assert err.getErrorCode() == errors.kErrorUnavailable
    assert "unreachable" in err.getDescription()
    assert jobs == []


def test_no_address_configured_says_how_to_configure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MUSTER_DISPATCHER", raising=False)
    monkeypatch.setenv("MUSTER_CLIENT_CONFIG", str(tmp_path / "missing.json"))
    reset_connection()
    err = MDispatcherAPI.jobDelete(1)
    reset_connection()
    assert err.getErrorCode() == errors.kErrorNotConfigured
    assert "MUSTER_DISPATCHER" in err.getDescription()


@pytest.mark.parametrize("context", ["renderclient", "notificator"])
def test_dispatcher_functions_refuse_other_contexts(
    monkeypatch: pytest.MonkeyPatch, context: str
) -> None:
    monkeypatch.setenv("MUSTER_RUNNING_CONTEXT", context)
    assert muster.runningContext() == context
    err = MDispatcherAPI.jobDelete(1)
    assert err.getErrorCode() == errors.kErrorWrongContext
    assert context in err.getDescription()


def test_seed_context_selection_snippet_runs_verbatim_in_every_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snippet = (
        'if (muster.runningContext() == "console"): import MConsoleAPI\n'
        'elif (muster.runningContext() == "dispatcher"): import MDispatcherAPI\n'
        'elif (muster.runningContext() == "renderclient"): import MInstanceAPI\n'
        'elif (muster.runningContext() == "notificator"): import MNotificatorAPI\n'
    )
    for context in ("console", "dispatcher", "renderclient", "notificator"):
        monkeypatch.setenv("MUSTER_RUNNING_CONTEXT", context)
        exec(compile(snippet, "<seed>", "exec"), {"muster": muster})


def test_seed_job_list_example_runs_verbatim(
    dispatcher: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = (
        "import MDispatcherAPI\n"
        "err, jobs = MDispatcherAPI.jobGetList()\n"
        'if (err.getErrorCode() != 0): print("Function failed: " + err.getDescription())\n'
        'for job in jobs: print("Job status: " + str(job.getStatus()) + " name: "'
        " + job.getName())\n"
    )
    exec(compile(example, "<seed example>", "exec"), {})
    out = capsys.readouterr().out
    err, jobs = MDispatcherAPI.jobGetList()
    if err.getErrorCode() == 0:
        assert out.count("Job status: ") == len(jobs)
    else:
        assert out.startswith("Function failed: jobGetList: ")
