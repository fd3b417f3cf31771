"""Every MDispatcherAPI function through the facade, against a real dispatcher
with a real render-node agent and live console/notificator connections:
one call that succeeds (its results checked) and one that fails (its
MUSTERERR code and description checked), per function.

SUCCESS and FAILURE are tables keyed by the function's name; a test fails
when a facade function has no entry in either. One dispatcher and one agent
per module (per xdist worker); every case makes the jobs, users, pools... it
needs, so the cases run in any order.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import MClientAPI
import MDispatcherAPI
import pytest
from sqlalchemy import text

from muster_gateway import api as dispatcher_api
from muster_gateway import errors
from muster_gateway.connection import reset_connection
from muster_gateway.errors import MUSTERERR
from muster_proto.nodes.v1 import nodes_pb2
from muster_services.core.database import Database
from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.support import AgentProcess, InProcessServer, LiveClient

NODE = "facade-node"
MJob = MClientAPI.MJob
MNode = MClientAPI.MNode
MChunk = MClientAPI.MChunk

FUNCTIONS = sorted(
    name
    for name, value in vars(dispatcher_api).items()
    if inspect.isfunction(value)
    and not name.startswith("_")
    and value.__module__.startswith(f"{dispatcher_api.__name__}.")
    and name[0].islower()
)


def _eventually(check: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def ok(result: Any) -> Any:
    """The results after a MUSTERERR that must be kErrorNone."""
    err = result[0] if isinstance(result, tuple) else result
    assert isinstance(err, MUSTERERR), result
    assert err.getErrorCode() == errors.kErrorNone, err.getDescription()
    if not isinstance(result, tuple):
        return None
    return result[1] if len(result) == 2 else result[1:]


@dataclass
class World:
    """The dev stack one case works against, and helpers to set scenes up."""

    address: str
    channel: grpc.Channel
    db: Database
    tmp: Path
    clients: list[LiveClient] = field(default_factory=list)
    jobs: list[int] = field(default_factory=list)

    # --- jobs ----------------------------------------------------------------------------

    def job(
        self,
        name: str = "job",
        *,
        runnable: bool = False,
        command: str = "true",
        frames: int = 1,
        owner: str = "td",
    ) -> int:
        """A job of one-frame chunks. Not `runnable`: it only fits a pool no node
        has, so it stays queued; `runnable`: the facade node runs `command`."""
        job = MJob()
        job.setName(name)
        job.setTemplateID(COMMAND_LINE_TEMPLATE_ID)
        job.attributeSetString("executable", "/bin/sh")
        job.attributeSetString("arguments", f"-c '{command}'")
        job.attributeSetFloat("start_frame", 1)
        job.attributeSetFloat("end_frame", frames)
        job.setPacketSize(1)
        if not runnable:
            job.setIncludedPools("nowhere")
        job_id = ok(MDispatcherAPI.jobSubmit(job, owner))
        assert isinstance(job_id, int) and job_id > 0
        self.jobs.append(job_id)
        return job_id

    def get_job(self, job_id: int) -> Any:
        return ok(MDispatcherAPI.jobGet(job_id))

    def completed_job(self) -> int:
        job_id = self.job("done", runnable=True)
        _eventually(
            lambda: self.get_job(job_id).getStatus() == MJob.kJobStatusCompleted,
            what="the job completes on the facade node",
        )
        return job_id

    def running_job(self) -> tuple[int, int]:
        """A job whose only chunk runs (sleeping) on the facade node: (job, node)."""
        node_id = self.node()
        started = self.tmp / f"started-{len(self.jobs)}"
        job_id = self.job("sleeper", runnable=True, command=f"touch {started}; sleep 60")
        # The process itself has started (the chunk's assignment is not enough:
        # a kill must find a process to kill).
        _eventually(started.exists, what="the sleeper started on the facade node")
        assert ok(MDispatcherAPI.nodeGet(node_id)).getJobId() == job_id
        return job_id, node_id

    # --- the node ------------------------------------------------------------------------

    def node(self) -> int:
        """The facade node's id once it is online, idle and not paused."""

        def ready() -> int:
            err, node = MDispatcherAPI.nodeGetByName(NODE)
            if err.getErrorCode() != 0 or node is None:
                return 0
            if node.getPaused():
                ok(MDispatcherAPI.nodeResume(node.getId()))
                return 0
            if node.getStatus() != MNode.kNodeStatusIdle:
                return 0
            # The row may say idle while the agent reconnects (a restart):
            # a command reaches only a node whose agent holds a session.
            probe = MDispatcherAPI.nodeForceUpdate(node.getId())
            return int(node.getId()) if probe.getErrorCode() == 0 else 0

        # Generous: a restarted agent reconnects with a backoff, and a loaded
        # machine (the whole suite on two cores) is slow to kill processes.
        node_id: int = _eventually(ready, timeout=60, what="the facade node online and idle")
        return node_id

    # --- live clients --------------------------------------------------------------------

    def console(self, user: str = "alice") -> LiveClient:
        self.clients.append(LiveClient(self.channel, user))
        return self.clients[-1]

    def notificator(self, user: str = "carol") -> LiveClient:
        client = LiveClient(self.channel, user, client_kind=nodes_pb2.CLIENT_KIND_NOTIFICATOR)
        self.clients.append(client)
        return client

    # --- logs --------------------------------------------------------------------------

    def messages(self) -> list[str]:
        """The dispatcher log (what logAddMessage writes), oldest first."""
        with self.db.transaction() as session:
            query = text("SELECT message FROM log_messages ORDER BY id")
            return list(session.execute(query).scalars())

    def old_log(self, kind: str) -> str:
        """A log file of three days ago (today's cannot be removed): its name."""
        table, prefix = {
            "activity": ("activity_log", "activity"),
            "action": ("action_log", "actions"),
        }[kind]
        columns = "category, message" if kind == "activity" else "action, outcome"
        values = "'dispatch', 'old line'" if kind == "activity" else "'jobs.DeleteJob', 'succeeded'"
        with self.db.transaction() as session:
            day = session.execute(
                text(
                    f"INSERT INTO {table} (logged_at, {columns})"
                    f" VALUES (now() - interval '3 days', {values})"
                    " RETURNING (logged_at AT TIME ZONE 'UTC')::date"
                )
            ).scalar_one()
        return f"{prefix}-{day.isoformat()}.log"

    def sample(self, table: str, when: str) -> None:
        """A statistics or history sample at `when` (an SQL timestamp expression)."""
        extra = ", interval_seconds" if table == "history_samples" else ""
        value = ", 60" if extra else ""
        with self.db.transaction() as session:
            session.execute(text(f"INSERT INTO {table} (sampled_at{extra}) VALUES ({when}{value})"))

    def samples_before(self, table: str, year: int) -> int:
        with self.db.transaction() as session:
            query = text(f"SELECT count(*) FROM {table} WHERE sampled_at < make_date(:y, 1, 1)")
            return int(session.execute(query, {"y": year}).scalar_one())

    def cleanup(self) -> None:
        for client in self.clients:
            client.close()
        if not self.jobs:
            return
        mine = set(self.jobs)

        def node_free() -> bool:
            for job_id in mine:  # kill what still runs; it is not requeued
                MDispatcherAPI.nodeKillAndGoOnNodesWorkingOnJob(job_id)
            err, node = MDispatcherAPI.nodeGetByName(NODE)
            return err.getErrorCode() != 0 or node is None or node.getJobId() not in mine

        _eventually(node_free, timeout=60, what="the facade node done with this case's jobs")
        for job_id in mine:
            MDispatcherAPI.jobDelete(job_id)  # may be gone already
        self.node()  # idle before the next case


@pytest.fixture(scope="module")
def node_agent(
    dispatcher_server: InProcessServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    agent = AgentProcess(dispatcher_server.address, NODE, tmp_path_factory.mktemp("facade-agent"))
    yield
    agent.kill()


@pytest.fixture
def world(
    dispatcher: str,
    dispatcher_server: InProcessServer,
    dispatcher_database: Database,
    node_agent: None,
    tmp_path: Path,
) -> Iterator[World]:
    with dispatcher_server.channel() as channel:
        scene = World(dispatcher, channel, dispatcher_database, tmp_path)
        try:
            yield scene
        finally:
            scene.cleanup()


def fails(result: Any, code: int, *words: str) -> None:
    """`result`'s MUSTERERR has `code` and a description holding `words`."""
    err = result[0] if isinstance(result, tuple) else result
    assert isinstance(err, MUSTERERR), result
    assert err.getErrorCode() == code, (err.getErrorCode(), err.getDescription())
    for word in words:
        assert word in err.getDescription(), err.getDescription()
    if isinstance(result, tuple):  # no half results next to an error
        assert all(value in (None, 0, "", []) for value in result[1:]), result


def wrong_context(function: Callable[[], Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A dispatcher function called from code the agent runs: refused, named."""
    monkeypatch.setenv("MUSTER_RUNNING_CONTEXT", "renderclient")
    fails(function(), errors.kErrorWrongContext, function.__name__, "renderclient")


# --- success: one call per function, results checked ----------------------------------


def _s_job_get_list(w: World) -> None:
    job_id = w.job("listed")
    listed = {j.getJobId(): j.getName() for j in ok(MDispatcherAPI.jobGetList())}
    assert listed[job_id] == "listed"


def _s_job_get(w: World) -> None:
    job_id = w.job("fetched", owner="bob")
    job = w.get_job(job_id)
    assert (job.getJobId(), job.getName(), job.getOwner()) == (job_id, "fetched", "bob")


def _s_job_reparent(w: World) -> None:
    folder = ok(MDispatcherAPI.jobAddFolder(-1, "td", "shots"))
    job_id = w.job()
    ok(MDispatcherAPI.jobReparent(job_id, folder))
    assert w.get_job(job_id).getParentId() == folder
    w.jobs.append(folder)


def _s_job_submit(w: World) -> None:
    job_id = w.job("submitted", frames=3)
    assert w.get_job(job_id).getStatus() == MJob.kJobStatusQueued
    assert len(ok(MDispatcherAPI.chunkGetList(job_id))) == 3


def _s_job_edit(w: World) -> None:
    dependency = w.job("dependency")
    job = w.get_job(w.job("before"))
    job.setName("after")
    job.setPriority(77)
    job.setDepends(str(dependency))
    job.setDependChunks(True)
    ok(MDispatcherAPI.jobEdit(job))
    edited = w.get_job(job.getJobId())
    assert (edited.getName(), edited.getPriority()) == ("after", 77)
    assert (edited.getDepends(), edited.getDependChunks()) == (str(dependency), True)


def _s_job_add_folder(w: World) -> None:
    folder = ok(MDispatcherAPI.jobAddFolder(-1, "td", "sequence 010"))
    w.jobs.append(folder)
    created = w.get_job(folder)
    assert (created.getName(), created.getJobType()) == ("sequence 010", MJob.kJobTypeFolder)


def _s_job_reinit(w: World) -> None:
    job_id = w.job(frames=2)
    ok(MDispatcherAPI.chunkSetStatus(job_id, 1, MChunk.kChunkStatusCompleted))
    ok(MDispatcherAPI.jobReinit(job_id))
    statuses = [c.getStatus() for c in ok(MDispatcherAPI.chunkGetList(job_id))]
    assert statuses == [MChunk.kChunkStatusQueued] * 2


def _s_job_delete(w: World) -> None:
    job_id = w.job("doomed")
    ok(MDispatcherAPI.jobDelete(job_id))
    assert MDispatcherAPI.jobGet(job_id)[0].getErrorCode() == errors.kErrorNotFound


def _s_job_update_status(w: World) -> None:
    job_id = w.job()
    ok(MDispatcherAPI.chunkSetStatus(job_id, 1, MChunk.kChunkStatusCompleted))
    ok(MDispatcherAPI.jobUpdateStatus(job_id))
    assert w.get_job(job_id).getStatus() == MJob.kJobStatusCompleted


def _s_job_update(w: World) -> None:
    job_id = w.job("published")
    console = w.console()
    ok(MDispatcherAPI.jobUpdate(job_id))
    _eventually(
        lambda: _heard(
            console,
            lambda e: e.HasField("job_changed") and e.job_changed.job.id == job_id,
        ),
        what="the job on consoles",
    )


def _heard(client: LiveClient, match: Callable[[nodes_pb2.ClientEvent], bool]) -> bool:
    """Whether an event the client received so far matches."""
    while not client.events.empty():
        if match(client.events.get_nowait()):
            return True
    return False


def _says(words: str) -> Callable[[nodes_pb2.ClientEvent], bool]:
    return lambda event: words in str(event)


def _s_chunk_get_list(w: World) -> None:
    job_id = w.job(frames=3)
    chunks = ok(MDispatcherAPI.chunkGetList(job_id))
    assert [(c.getChunkId(), c.getStartFrame()) for c in chunks] == [(1, 1), (2, 2), (3, 3)]


def _s_chunk_get(w: World) -> None:
    job_id = w.job(frames=2)
    chunk = ok(MDispatcherAPI.chunkGet(job_id, 2))
    assert (chunk.getJobId(), chunk.getChunkId(), chunk.getStartFrame()) == (job_id, 2, 2)


def _s_chunk_set_status(w: World) -> None:
    job_id = w.job()
    ok(MDispatcherAPI.chunkSetStatus(job_id, 1, MChunk.kChunkStatusHold))
    assert ok(MDispatcherAPI.chunkGet(job_id, 1)).getStatus() == MChunk.kChunkStatusHold


def _s_chunk_get_history(w: World) -> None:
    job_id = w.completed_job()
    runs = ok(MDispatcherAPI.chunkGetHistory(job_id))
    assert [(r.getChunkId(), r.getNodeName()) for r in runs] == [(1, NODE)]
    assert runs[0].getOutcome() == MClientAPI.MHistoryChunk.kChunkRunOutcomeSucceeded


def _kill_case(function: str, target: str, paused: bool) -> Callable[[World], None]:
    """Kill the sleeper through its node or its job: its run ends killed in
    the history, and the node is paused or not as the function says."""

    def case(w: World) -> None:
        job_id, node_id = w.running_job()
        ok(getattr(MDispatcherAPI, function)(node_id if target == "node" else job_id))
        runs = _eventually(
            lambda: [
                r
                for r in ok(MDispatcherAPI.chunkGetHistory(job_id))
                if r.getOutcome() != MClientAPI.MHistoryChunk.kChunkRunOutcomeRunning
            ],
            timeout=30,
            what="the killed run in the history",
        )
        assert runs[0].getOutcome() == MClientAPI.MHistoryChunk.kChunkRunOutcomeKilled
        _eventually(
            lambda: ok(MDispatcherAPI.nodeGet(node_id)).getPaused() == paused,
            what=f"node paused={paused}",
        )

    return case


def _s_node_pause(w: World) -> None:
    node_id = w.node()
    ok(MDispatcherAPI.nodePause(node_id))
    node = ok(MDispatcherAPI.nodeGet(node_id))
    assert node.getPaused() and node.getStatus() == MNode.kNodeStatusPaused


def _s_node_resume(w: World) -> None:
    node_id = w.node()
    ok(MDispatcherAPI.nodePause(node_id))
    ok(MDispatcherAPI.nodeResume(node_id))
    assert not ok(MDispatcherAPI.nodeGet(node_id)).getPaused()


def _s_node_force_update(w: World) -> None:
    node_id = w.node()
    before = ok(MDispatcherAPI.nodeGet(node_id)).getLastHeartbeatTime()
    ok(MDispatcherAPI.nodeForceUpdate(node_id))
    # The agent answers with fresh facts: a heartbeat at least as recent.
    assert ok(MDispatcherAPI.nodeGet(node_id)).getLastHeartbeatTime() >= before


def _s_node_set_process_priority(w: World) -> None:
    node_id = w.node()
    ok(MDispatcherAPI.nodeSetProcessPriority(node_id, MNode.kProcessPriorityBelowNormal))
    priority = ok(MDispatcherAPI.nodeGet(node_id)).getProcessPriority()
    assert priority == MNode.kProcessPriorityBelowNormal
    ok(MDispatcherAPI.nodeSetProcessPriority(node_id, MNode.kProcessPriorityNormal))


def _s_node_soft_restart(w: World) -> None:
    node_id = w.node()
    ok(MDispatcherAPI.nodeSoftRestart(node_id))
    assert w.node() == node_id  # the agent came back as the same node


def _s_node_purge_templates_exclusion(w: World) -> None:
    node_id = w.node()
    ok(MDispatcherAPI.nodePurgeTemplatesExclusion(node_id, COMMAND_LINE_TEMPLATE_ID))
    assert (
        COMMAND_LINE_TEMPLATE_ID not in ok(MDispatcherAPI.nodeGet(node_id)).getExcludedTemplateIds()
    )


def _s_node_purge_jobs_exclusions(w: World) -> None:
    node_id, job_id = w.node(), w.job()
    ok(MDispatcherAPI.nodePurgeJobsExclusions(node_id, job_id))
    assert job_id not in ok(MDispatcherAPI.nodeGet(node_id)).getExcludedJobIds()


def _s_node_set_realtime_log(w: World) -> None:
    node_id = w.node()
    ok(MDispatcherAPI.nodeSetRealtimeLog(node_id, True))
    assert ok(MDispatcherAPI.nodeGet(node_id)).getRealtimeLog()
    ok(MDispatcherAPI.nodeSetRealtimeLog(node_id, False))
    assert not ok(MDispatcherAPI.nodeGet(node_id)).getRealtimeLog()


def _s_node_send_system_event(w: World) -> None:
    # No node is configured to run system events: refused by the node's settings,
    # which proves the call reached the node service with a valid event; the
    # success of a configured event is tested in tests/e2e/test_node_commands.py.
    fails(
        MDispatcherAPI.nodeSendSystemEvent(w.node(), 1),
        errors.kErrorFailedPrecondition,
        "not configured on this node",
    )


def _s_node_run_python_code(w: World) -> None:
    ok(MDispatcherAPI.nodeRunPythonCode(w.node(), "print('hello from the facade')"))


def _s_node_set_notes(w: World) -> None:
    node_id = w.node()
    ok(MDispatcherAPI.nodeSetNotes(node_id, "fan is noisy"))
    assert ok(MDispatcherAPI.nodeGet(node_id)).getNotes() == "fan is noisy"


def _s_node_remove_registration(w: World) -> None:
    spare = AgentProcess(w.address, "facade-spare", w.tmp / "spare")
    try:
        node_id = _eventually(
            lambda: (n := MDispatcherAPI.nodeGetByName("facade-spare")[1]) and n.getId(),
            what="the spare node registered",
        )
        spare.kill()
        ok(MDispatcherAPI.nodeRemoveRegistration(node_id))
        assert MDispatcherAPI.nodeGet(node_id)[0].getErrorCode() == errors.kErrorNotFound
        assert node_id not in [n.getId() for n in ok(MDispatcherAPI.nodeGetList())]
    finally:
        spare.kill()


def _s_node_get_list(w: World) -> None:
    node_id = w.node()
    nodes = ok(MDispatcherAPI.nodeGetList())
    assert (node_id, NODE) in [(n.getId(), n.getName()) for n in nodes]


def _s_node_get(w: World) -> None:
    node_id = w.node()
    node = ok(MDispatcherAPI.nodeGet(node_id))
    assert (node.getId(), node.getName(), node.getStatus()) == (
        node_id,
        NODE,
        MNode.kNodeStatusIdle,
    )


def _s_node_get_by_name(w: World) -> None:
    node_id = w.node()
    assert ok(MDispatcherAPI.nodeGetByName(NODE)).getId() == node_id


def _s_send_message_to_node(w: World) -> None:
    ok(MDispatcherAPI.sendMessageToNode(w.node(), 1, "maintenance at noon", False))


def _s_client_get_list(w: World) -> None:
    alice = w.console("alice")
    listed = [(c.getId(), c.getUsername()) for c in ok(MDispatcherAPI.clientGetList())]
    assert (alice.connection_id, "alice") in listed


def _s_client_get(w: World) -> None:
    alice = w.console("alice")
    client = ok(MDispatcherAPI.clientGet(alice.connection_id))
    assert (client.getId(), client.getUsername()) == (alice.connection_id, "alice")


def _s_client_get_by_username(w: World) -> None:
    dora = w.console("dora")
    assert [c.getId() for c in ok(MDispatcherAPI.clientGetByUsername("dora"))] == [
        dora.connection_id
    ]


def _s_client_force_disconnection(w: World) -> None:
    alice = w.console("alice")
    ok(MDispatcherAPI.clientForceDisconnection(alice.connection_id))
    _eventually(
        lambda: (
            MDispatcherAPI.clientGet(alice.connection_id)[0].getErrorCode() == errors.kErrorNotFound
        ),
        what="the console gone",
    )


def _s_send_message_to_console(w: World) -> None:
    alice = w.console("alice")
    ok(MDispatcherAPI.sendMessageToConsole(alice.connection_id, 1, "render done", False))
    _eventually(lambda: _heard(alice, _says("render done")), what="the message on the console")


def _s_client_n_get_list(w: World) -> None:
    carol = w.notificator("carol")
    listed = [(c.getId(), c.getUsername()) for c in ok(MDispatcherAPI.clientNGetList())]
    assert (carol.connection_id, "carol") in listed


def _s_client_n_get(w: World) -> None:
    carol = w.notificator("carol")
    client = ok(MDispatcherAPI.clientNGet(carol.connection_id))
    assert (client.getId(), client.getUsername()) == (carol.connection_id, "carol")


def _s_client_n_get_by_username(w: World) -> None:
    erin = w.notificator("erin")
    assert [c.getId() for c in ok(MDispatcherAPI.clientNGetByUsername("erin"))] == [
        erin.connection_id
    ]


def _s_client_n_force_disconnection(w: World) -> None:
    carol = w.notificator("carol")
    ok(MDispatcherAPI.clientNForceDisconnection(carol.connection_id))
    _eventually(
        lambda: (
            MDispatcherAPI.clientNGet(carol.connection_id)[0].getErrorCode()
            == errors.kErrorNotFound
        ),
        what="the notificator gone",
    )


def _s_send_message_to_notificator(w: World) -> None:
    carol = w.notificator("carol")
    ok(MDispatcherAPI.sendMessageToNotificator(carol.connection_id, 1, "coffee", False))
    _eventually(lambda: _heard(carol, _says("coffee")), what="the message on the notificator")


def _bounds_case(kind: str) -> Callable[[World], None]:
    """A sample an hour ago lies within the bounds dbGet<kind>Bounds answers."""

    def case(w: World) -> None:
        w.sample(f"{kind}_samples", "now() - interval '1 hour'")
        function = getattr(MDispatcherAPI, f"dbGet{kind.capitalize()}Bounds")
        start, end, samples = ok(function())
        hour_ago = time.time() - 3600
        assert samples >= 1 and start <= hour_ago + 5 and end >= hour_ago - 5

    return case


def _clear_case(kind: str) -> Callable[[World], None]:
    """Samples of 2001 are gone after clearing 2000-2002; the others stay."""

    def case(w: World) -> None:
        w.sample(f"{kind}_samples", "make_date(2001, 6, 1)")
        w.sample(f"{kind}_samples", "now()")
        function = getattr(MDispatcherAPI, f"dbClear{kind.capitalize()}Bounds")
        ok(function(946684800, 1009843200))  # 2000-01-01 .. 2002-01-01 UTC
        assert w.samples_before(f"{kind}_samples", 2002) == 0
        getter = getattr(MDispatcherAPI, f"dbGet{kind.capitalize()}Bounds")
        assert ok(getter())[2] >= 1

    return case


def _s_db_import_queue_sql(w: World) -> None:
    job_id = w.job("exported")
    sql = MClientAPI.MStringRef()
    ok(MDispatcherAPI.dbExportQueueSQL(sql))
    ok(MDispatcherAPI.jobDelete(job_id))
    ok(MDispatcherAPI.dbImportQueueSQL(sql.getString()))
    assert w.get_job(job_id).getName() == "exported"


def _s_db_export_queue_sql(w: World) -> None:
    w.job("in the dump")
    sql = MClientAPI.MStringRef()
    ok(MDispatcherAPI.dbExportQueueSQL(sql))
    assert "INSERT" in sql.getString() and "in the dump" in sql.getString()


def _s_db_flush(w: World) -> None:
    job_id = w.job("kept")
    ok(MDispatcherAPI.dbFlush())
    assert w.get_job(job_id).getName() == "kept"  # flushing writes, it loses nothing


def _s_db_history_flush(w: World) -> None:
    ok(MDispatcherAPI.dbHistoryFlush())


def _s_db_backup_flush(w: World) -> None:
    ok(MDispatcherAPI.dbBackupFlush())


def _backed_up(job_id: int) -> list[Any]:
    query = MClientAPI.MBackupQuery()
    query.setJobId(job_id)
    found: list[Any] = ok(MDispatcherAPI.backupQuery(query))
    return found


def _s_backup_job(w: World) -> None:
    job_id = w.job("archived")
    ok(MDispatcherAPI.backupJob(job_id, MJob.kJobsBackupRestoreActionDuplicateEntry))
    assert [b.getJob().getName() for b in _backed_up(job_id)] == ["archived"]
    assert w.get_job(job_id).getName() == "archived"  # still queued


def _s_backup_job_and_delete(w: World) -> None:
    job_id = w.job("moved")
    ok(MDispatcherAPI.backupJobAndDelete(job_id, MJob.kJobsBackupRestoreActionDuplicateEntry))
    assert len(_backed_up(job_id)) == 1
    assert MDispatcherAPI.jobGet(job_id)[0].getErrorCode() == errors.kErrorNotFound


def _s_backup_restore_job(w: World) -> None:
    job_id = w.job("restored")
    ok(MDispatcherAPI.backupJobAndDelete(job_id, MJob.kJobsBackupRestoreActionDuplicateEntry))
    (backup,) = _backed_up(job_id)
    action = (
        MJob.kJobsBackupRestoreActionDuplicateEntry | MJob.kJobsBackupRestoreActionRestoreParents
    )
    ok(MDispatcherAPI.backupRestoreJob(backup.getId(), action, -1))
    names = [j.getName() for j in ok(MDispatcherAPI.jobGetList())]
    assert "restored" in names


def _s_backup_get_boundaries(w: World) -> None:
    job_id = w.job()
    ok(MDispatcherAPI.backupJob(job_id, MJob.kJobsBackupRestoreActionDuplicateEntry))
    boundaries = MClientAPI.MBackupQueryBoundaries()
    ok(MDispatcherAPI.backupGetBoundaries(boundaries))
    assert boundaries.getJobsCount() >= 1
    assert 0 < boundaries.getStartTime() <= boundaries.getEndTime()


def _s_backup_query(w: World) -> None:
    job_id = w.job("queried")
    ok(MDispatcherAPI.backupJob(job_id, MJob.kJobsBackupRestoreActionDuplicateEntry))
    query = MClientAPI.MBackupQuery()
    query.setNameContains("querie")
    assert job_id in [b.getJob().getJobId() for b in ok(MDispatcherAPI.backupQuery(query))]


def _s_system_query_engine_status(w: World) -> None:
    status = ok(MDispatcherAPI.systemQueryEngineStatus())
    assert status == MClientAPI.MDispatcherConfiguration.kEngineStatusRunning


def _s_system_swap_engine_status(w: World) -> None:
    ok(MDispatcherAPI.systemSwapEngineStatus())
    try:
        status = ok(MDispatcherAPI.systemQueryEngineStatus())
        assert status == MClientAPI.MDispatcherConfiguration.kEngineStatusPaused
    finally:
        ok(MDispatcherAPI.systemSwapEngineStatus())
    status = ok(MDispatcherAPI.systemQueryEngineStatus())
    assert status == MClientAPI.MDispatcherConfiguration.kEngineStatusRunning


def _s_system_soft_restart(w: World) -> None:
    ok(MDispatcherAPI.systemSoftRestart())
    assert ok(MDispatcherAPI.systemQueryEngineStatus()) > 0  # still answering


def _s_system_reset_statistics_counters(w: World) -> None:
    ok(MDispatcherAPI.systemResetStatisticsCounters())


def _s_system_start_nodes_network_scan(w: World) -> None:
    config = ok(MDispatcherAPI.systemGetConfiguration())
    config.setNetworkScanRanges(["127.0.0.1/32"])
    ok(MDispatcherAPI.systemSetConfiguration(config, False))
    ok(MDispatcherAPI.systemStartNodesNetworkScan())


def _s_system_get_configuration(w: World) -> None:
    config = ok(MDispatcherAPI.systemGetConfiguration())
    assert config.getMaxChunkRequeues() >= 0 and config.getHeartbeatIntervalSeconds() > 0


def _s_system_set_configuration(w: World) -> None:
    config = ok(MDispatcherAPI.systemGetConfiguration())
    config.setMaxChunkRequeues(config.getMaxChunkRequeues() + 1)
    ok(MDispatcherAPI.systemSetConfiguration(config, False))
    again = ok(MDispatcherAPI.systemGetConfiguration())
    assert again.getMaxChunkRequeues() == config.getMaxChunkRequeues()


def _s_system_get_ldap_configuration(w: World) -> None:
    assert ok(MDispatcherAPI.systemGetLDAPConfiguration()).getEnabled() is False


def _s_system_set_ldap_configuration(w: World) -> None:
    config = ok(MDispatcherAPI.systemGetLDAPConfiguration())
    config.setUserSearchBase("ou=people,dc=studio")
    ok(MDispatcherAPI.systemSetLDAPConfiguration(config, False))
    again = ok(MDispatcherAPI.systemGetLDAPConfiguration())
    assert again.getUserSearchBase() == "ou=people,dc=studio"


def _s_system_get_activity_logs_list(w: World) -> None:
    old = w.old_log("activity")
    w.completed_job()  # the dispatch is today's activity
    names = ok(MDispatcherAPI.systemGetActivityLogsList())
    assert old in names and names[0].startswith("activity-") and names[0] > old


def _s_system_get_activity_log(w: World) -> None:
    old = w.old_log("activity")
    assert "old line" in ok(MDispatcherAPI.systemGetActivityLog(old))


def _s_system_remove_activity_log(w: World) -> None:
    old = w.old_log("activity")
    ok(MDispatcherAPI.systemRemoveActivityLog(old))
    assert old not in ok(MDispatcherAPI.systemGetActivityLogsList())


def _s_system_get_action_logs_list(w: World) -> None:
    old = w.old_log("action")
    assert old in ok(MDispatcherAPI.systemGetActionLogsList())


def _s_system_get_action_log(w: World) -> None:
    old = w.old_log("action")
    assert "jobs.DeleteJob" in ok(MDispatcherAPI.systemGetActionLog(old))


def _s_system_remove_action_log(w: World) -> None:
    old = w.old_log("action")
    ok(MDispatcherAPI.systemRemoveActionLog(old))
    assert old not in ok(MDispatcherAPI.systemGetActionLogsList())


def _s_log_clear(w: World) -> None:
    ok(MDispatcherAPI.logAddMessage("before the clear"))
    ok(MDispatcherAPI.logClear())
    assert "before the clear" not in w.messages()


def _s_log_add_internal_message(w: World) -> None:
    ok(MDispatcherAPI.logAddInternalMessage("internal from the facade"))
    assert w.messages()[-1] == "internal from the facade"


def _s_log_add_message(w: World) -> None:
    ok(MDispatcherAPI.logAddMessage("hello from the facade"))
    assert w.messages()[-1] == "hello from the facade"


def _user(name: str) -> Any:
    user = MClientAPI.MUser()
    user.setName(name)
    user.setPassword("s3cret-pass")
    user.setRole(MClientAPI.MUser.kUserRoleUser)
    return user


def _s_user_get_list(w: World) -> None:
    ok(MDispatcherAPI.userAdd(_user("listed-user")))
    assert "listed-user" in [u.getName() for u in ok(MDispatcherAPI.userGetList())]


def _s_user_get(w: World) -> None:
    ok(MDispatcherAPI.userAdd(_user("got-user")))
    assert ok(MDispatcherAPI.userGet("got-user")).getName() == "got-user"


def _s_user_add(w: World) -> None:
    user = _user("added-user")
    user.setEmail("added@studio")
    ok(MDispatcherAPI.userAdd(user))
    assert ok(MDispatcherAPI.userGet("added-user")).getEmail() == "added@studio"


def _s_user_remove(w: World) -> None:
    ok(MDispatcherAPI.userAdd(_user("removed-user")))
    ok(MDispatcherAPI.userRemove("removed-user"))
    assert MDispatcherAPI.userGet("removed-user")[0].getErrorCode() == errors.kErrorNotFound


def _s_user_configure(w: World) -> None:
    ok(MDispatcherAPI.userAdd(_user("configured-user")))
    user = ok(MDispatcherAPI.userGet("configured-user"))
    user.setEmail("new@studio")
    ok(MDispatcherAPI.userConfigure(user))
    assert ok(MDispatcherAPI.userGet("configured-user")).getEmail() == "new@studio"


def _named(cls: Any, name: str, **fields: Any) -> Any:
    item = cls()
    item.setName(name)
    for key, value in fields.items():
        getattr(item, "set" + key)(value)
    return item


def _s_group_get_list(w: World) -> None:
    ok(MDispatcherAPI.groupAdd(_named(MClientAPI.MGroup, "listed-group")))
    assert "listed-group" in [g.getName() for g in ok(MDispatcherAPI.groupGetList())]


def _s_group_get(w: World) -> None:
    ok(MDispatcherAPI.groupAdd(_named(MClientAPI.MGroup, "got-group", Description="lighters")))
    assert ok(MDispatcherAPI.groupGet("got-group")).getDescription() == "lighters"


def _s_group_add(w: World) -> None:
    ok(MDispatcherAPI.groupAdd(_named(MClientAPI.MGroup, "added-group")))
    assert ok(MDispatcherAPI.groupGet("added-group")).getName() == "added-group"


def _s_group_remove(w: World) -> None:
    ok(MDispatcherAPI.groupAdd(_named(MClientAPI.MGroup, "removed-group")))
    ok(MDispatcherAPI.groupRemove("removed-group"))
    assert MDispatcherAPI.groupGet("removed-group")[0].getErrorCode() == errors.kErrorNotFound


def _s_group_configure(w: World) -> None:
    ok(MDispatcherAPI.groupAdd(_named(MClientAPI.MGroup, "configured-group")))
    group = ok(MDispatcherAPI.groupGet("configured-group"))
    group.setDescription("compositors")
    ok(MDispatcherAPI.groupConfigure(group))
    assert ok(MDispatcherAPI.groupGet("configured-group")).getDescription() == "compositors"


def _s_pool_get_list(w: World) -> None:
    ok(MDispatcherAPI.poolAdd(_named(MClientAPI.MPool, "listed-pool")))
    assert "listed-pool" in [p.getName() for p in ok(MDispatcherAPI.poolGetList())]


def _s_pool_get(w: World) -> None:
    ok(MDispatcherAPI.poolAdd(_named(MClientAPI.MPool, "got-pool", NodeNames=[NODE])))
    assert list(ok(MDispatcherAPI.poolGet("got-pool")).getNodeNames()) == [NODE]


def _s_pool_configure(w: World) -> None:
    ok(MDispatcherAPI.poolAdd(_named(MClientAPI.MPool, "configured-pool")))
    pool = ok(MDispatcherAPI.poolGet("configured-pool"))
    pool.setDescription("gpu nodes")
    ok(MDispatcherAPI.poolConfigure(pool))
    assert ok(MDispatcherAPI.poolGet("configured-pool")).getDescription() == "gpu nodes"


def _s_pool_add(w: World) -> None:
    ok(MDispatcherAPI.poolAdd(_named(MClientAPI.MPool, "added-pool")))
    assert ok(MDispatcherAPI.poolGet("added-pool")).getName() == "added-pool"


def _s_pool_remove(w: World) -> None:
    ok(MDispatcherAPI.poolAdd(_named(MClientAPI.MPool, "removed-pool")))
    ok(MDispatcherAPI.poolRemove("removed-pool"))
    assert MDispatcherAPI.poolGet("removed-pool")[0].getErrorCode() == errors.kErrorNotFound


def _s_pool_notify_changes(w: World) -> None:
    ok(MDispatcherAPI.poolNotifyChanges())


def _repository(name: str) -> Any:
    return _named(
        MClientAPI.MRepository, name, WindowsPath="P:\\proj", LinuxPath="/mnt/proj", MacosPath=""
    )


def _s_repositories_get_list(w: World) -> None:
    ok(MDispatcherAPI.repositoriesAdd(_repository("listed-repo")))
    assert "listed-repo" in [r.getName() for r in ok(MDispatcherAPI.repositoriesGetList())]


def _s_repositories_get(w: World) -> None:
    ok(MDispatcherAPI.repositoriesAdd(_repository("got-repo")))
    assert ok(MDispatcherAPI.repositoriesGet("got-repo")).getLinuxPath() == "/mnt/proj"


def _s_repositories_configure(w: World) -> None:
    ok(MDispatcherAPI.repositoriesAdd(_repository("configured-repo")))
    repository = ok(MDispatcherAPI.repositoriesGet("configured-repo"))
    repository.setLinuxPath("/net/proj")
    ok(MDispatcherAPI.repositoriesConfigure(repository))
    assert ok(MDispatcherAPI.repositoriesGet("configured-repo")).getLinuxPath() == "/net/proj"


def _s_repositories_add(w: World) -> None:
    ok(MDispatcherAPI.repositoriesAdd(_repository("added-repo")))
    assert ok(MDispatcherAPI.repositoriesGet("added-repo")).getWindowsPath() == "P:\\proj"


def _s_repositories_notify_changes(w: World) -> None:
    ok(MDispatcherAPI.repositoriesNotifyChanges())


def _s_repositories_remove(w: World) -> None:
    ok(MDispatcherAPI.repositoriesAdd(_repository("removed-repo")))
    ok(MDispatcherAPI.repositoriesRemove("removed-repo"))
    assert MDispatcherAPI.repositoriesGet("removed-repo")[0].getErrorCode() == errors.kErrorNotFound


SUCCESS: dict[str, Callable[[World], None]] = {
    "jobGetList": _s_job_get_list,
    "jobGet": _s_job_get,
    "jobReparent": _s_job_reparent,
    "jobSubmit": _s_job_submit,
    "jobEdit": _s_job_edit,
    "jobAddFolder": _s_job_add_folder,
    "jobReinit": _s_job_reinit,
    "jobDelete": _s_job_delete,
    "jobUpdateStatus": _s_job_update_status,
    "jobUpdate": _s_job_update,
    "chunkGetList": _s_chunk_get_list,
    "chunkGet": _s_chunk_get,
    "chunkSetStatus": _s_chunk_set_status,
    "chunkGetHistory": _s_chunk_get_history,
    "nodeKillProcess": _kill_case("nodeKillProcess", "node", paused=False),
    "nodeKillProcessAndPause": _kill_case("nodeKillProcessAndPause", "node", paused=True),
    "nodeKillProcessAndRestart": _kill_case("nodeKillProcessAndRestart", "node", paused=False),
    "nodeKillAndPauseNodesWorkingOnJob": _kill_case(
        "nodeKillAndPauseNodesWorkingOnJob", "job", paused=True
    ),
    "nodeKillAndRedoNodesWorkingOnJob": _kill_case(
        "nodeKillAndRedoNodesWorkingOnJob", "job", paused=False
    ),
    "nodeKillAndGoOnNodesWorkingOnJob": _kill_case(
        "nodeKillAndGoOnNodesWorkingOnJob", "job", paused=False
    ),
    "nodePause": _s_node_pause,
    "nodeResume": _s_node_resume,
    "nodeForceUpdate": _s_node_force_update,
    "nodeSetProcessPriority": _s_node_set_process_priority,
    "nodeSoftRestart": _s_node_soft_restart,
    "nodePurgeTemplatesExclusion": _s_node_purge_templates_exclusion,
    "nodePurgeJobsExclusions": _s_node_purge_jobs_exclusions,
    "nodeSetRealtimeLog": _s_node_set_realtime_log,
    "nodeSendSystemEvent": _s_node_send_system_event,
    "nodeRunPythonCode": _s_node_run_python_code,
    "nodeSetNotes": _s_node_set_notes,
    "nodeRemoveRegistration": _s_node_remove_registration,
    "nodeGetList": _s_node_get_list,
    "nodeGet": _s_node_get,
    "nodeGetByName": _s_node_get_by_name,
    "sendMessageToNode": _s_send_message_to_node,
    "clientGetList": _s_client_get_list,
    "clientGet": _s_client_get,
    "clientGetByUsername": _s_client_get_by_username,
    "clientForceDisconnection": _s_client_force_disconnection,
    "sendMessageToConsole": _s_send_message_to_console,
    "clientNGetList": _s_client_n_get_list,
    "clientNGet": _s_client_n_get,
    "clientNGetByUsername": _s_client_n_get_by_username,
    "clientNForceDisconnection": _s_client_n_force_disconnection,
    "sendMessageToNotificator": _s_send_message_to_notificator,
    "dbGetStatisticsBounds": _bounds_case("statistics"),
    "dbGetHistoryBounds": _bounds_case("history"),
    "dbClearStatisticsBounds": _clear_case("statistics"),
    "dbClearHistoryBounds": _clear_case("history"),
    "dbImportQueueSQL": _s_db_import_queue_sql,
    "dbExportQueueSQL": _s_db_export_queue_sql,
    "dbFlush": _s_db_flush,
    "dbHistoryFlush": _s_db_history_flush,
    "dbBackupFlush": _s_db_backup_flush,
    "backupJob": _s_backup_job,
    "backupJobAndDelete": _s_backup_job_and_delete,
    "backupRestoreJob": _s_backup_restore_job,
    "backupGetBoundaries": _s_backup_get_boundaries,
    "backupQuery": _s_backup_query,
    "systemQueryEngineStatus": _s_system_query_engine_status,
    "systemSwapEngineStatus": _s_system_swap_engine_status,
    "systemSoftRestart": _s_system_soft_restart,
    "systemResetStatisticsCounters": _s_system_reset_statistics_counters,
    "systemStartNodesNetworkScan": _s_system_start_nodes_network_scan,
    "systemGetConfiguration": _s_system_get_configuration,
    "systemSetConfiguration": _s_system_set_configuration,
    "systemGetLDAPConfiguration": _s_system_get_ldap_configuration,
    "systemSetLDAPConfiguration": _s_system_set_ldap_configuration,
    "systemGetActivityLogsList": _s_system_get_activity_logs_list,
    "systemGetActivityLog": _s_system_get_activity_log,
    "systemRemoveActivityLog": _s_system_remove_activity_log,
    "systemGetActionLogsList": _s_system_get_action_logs_list,
    "systemGetActionLog": _s_system_get_action_log,
    "systemRemoveActionLog": _s_system_remove_action_log,
    "logClear": _s_log_clear,
    "logAddInternalMessage": _s_log_add_internal_message,
    "logAddMessage": _s_log_add_message,
    "userGetList": _s_user_get_list,
    "userGet": _s_user_get,
    "userAdd": _s_user_add,
    "userRemove": _s_user_remove,
    "userConfigure": _s_user_configure,
    "groupGetList": _s_group_get_list,
    "groupGet": _s_group_get,
    "groupAdd": _s_group_add,
    "groupRemove": _s_group_remove,
    "groupConfigure": _s_group_configure,
    "poolGetList": _s_pool_get_list,
    "poolGet": _s_pool_get,
    "poolConfigure": _s_pool_configure,
    "poolAdd": _s_pool_add,
    "poolRemove": _s_pool_remove,
    "poolNotifyChanges": _s_pool_notify_changes,
    "repositoriesGetList": _s_repositories_get_list,
    "repositoriesGet": _s_repositories_get,
    "repositoriesConfigure": _s_repositories_configure,
    "repositoriesAdd": _s_repositories_add,
    "repositoriesNotifyChanges": _s_repositories_notify_changes,
    "repositoriesRemove": _s_repositories_remove,
}


# --- failure: one call per function, code and description checked ---------------------

NOT_FOUND = errors.kErrorNotFound
INVALID = errors.kErrorInvalidArgument
BAD = errors.kErrorBadArguments
PRECONDITION = errors.kErrorFailedPrecondition
UNKNOWN_ID = 987654321

# Each entry: (World) -> (result, expected code, words of the description).
Failure = Callable[[World], tuple[Any, int, tuple[str, ...]]]


def _gone(function: str, *args: Any, code: int = NOT_FOUND) -> Failure:
    """The call with ids that do not exist."""
    return lambda w: (getattr(MDispatcherAPI, function)(*args), code, (function, str(args[0])))


def _bad(function: str, *args: Any, word: str) -> Failure:
    """The call with an argument the function cannot use: refused before any call."""
    return lambda w: (getattr(MDispatcherAPI, function)(*args), BAD, (function, word))


def _f_job_edit(w: World) -> tuple[Any, int, tuple[str, ...]]:
    job = w.get_job(w.job())
    job.setPacketSize(-3)
    return MDispatcherAPI.jobEdit(job), INVALID, ("jobEdit", "packet_size")


def _f_job_submit(w: World) -> tuple[Any, int, tuple[str, ...]]:
    job = MJob()
    job.setName("no template")
    job.setTemplateID(UNKNOWN_ID)
    return MDispatcherAPI.jobSubmit(job, "td"), INVALID, ("unknown template", str(UNKNOWN_ID))


def _f_chunk_set_status(w: World) -> tuple[Any, int, tuple[str, ...]]:
    job_id = w.job()
    return (
        MDispatcherAPI.chunkSetStatus(job_id, 5, MChunk.kChunkStatusHold),
        NOT_FOUND,
        (
            "chunkSetStatus",
            "5",
        ),
    )


def _f_node_kill_idle(function: str) -> Failure:
    """Killing the process of a node that runs none."""

    def case(w: World) -> tuple[Any, int, tuple[str, ...]]:
        return getattr(MDispatcherAPI, function)(w.node()), PRECONDITION, ("runs no chunk",)

    return case


def _f_db_import(w: World) -> tuple[Any, int, tuple[str, ...]]:
    return MDispatcherAPI.dbImportQueueSQL("DROP TABLE jobs"), INVALID, ("expected INSERT",)


def _f_backup_restore(w: World) -> tuple[Any, int, tuple[str, ...]]:
    return MDispatcherAPI.backupRestoreJob(UNKNOWN_ID, 1, -1), NOT_FOUND, (str(UNKNOWN_ID),)


def _f_network_scan(w: World) -> tuple[Any, int, tuple[str, ...]]:
    config = ok(MDispatcherAPI.systemGetConfiguration())
    config.setNetworkScanRanges([])
    ok(MDispatcherAPI.systemSetConfiguration(config, False))
    return MDispatcherAPI.systemStartNodesNetworkScan(), PRECONDITION, ("no range to scan",)


def _f_set_configuration(w: World) -> tuple[Any, int, tuple[str, ...]]:
    config = ok(MDispatcherAPI.systemGetConfiguration())
    config.setMaxChunkRequeues(-1)
    return MDispatcherAPI.systemSetConfiguration(config, False), INVALID, ("max_chunk_requeues",)


def _f_user_add(w: World) -> tuple[Any, int, tuple[str, ...]]:
    ok(MDispatcherAPI.userAdd(_user("twice-user")))
    return MDispatcherAPI.userAdd(_user("twice-user")), errors.kErrorAlreadyExists, ("twice-user",)


def _f_group_add(w: World) -> tuple[Any, int, tuple[str, ...]]:
    ok(MDispatcherAPI.groupAdd(_named(MClientAPI.MGroup, "twice-group")))
    return (
        MDispatcherAPI.groupAdd(_named(MClientAPI.MGroup, "twice-group")),
        errors.kErrorAlreadyExists,
        ("twice-group",),
    )


def _f_pool_add(w: World) -> tuple[Any, int, tuple[str, ...]]:
    ok(MDispatcherAPI.poolAdd(_named(MClientAPI.MPool, "twice-pool")))
    return (
        MDispatcherAPI.poolAdd(_named(MClientAPI.MPool, "twice-pool")),
        errors.kErrorAlreadyExists,
        ("twice-pool",),
    )


def _f_repositories_add(w: World) -> tuple[Any, int, tuple[str, ...]]:
    ok(MDispatcherAPI.repositoriesAdd(_repository("twice-repo")))
    return (
        MDispatcherAPI.repositoriesAdd(_repository("twice-repo")),
        errors.kErrorAlreadyExists,
        ("twice-repo",),
    )


def _missing(cls: Any, function: str) -> Failure:
    """Configuring an object that does not exist."""
    return lambda w: (
        getattr(MDispatcherAPI, function)(
            _user("never-created") if cls is MClientAPI.MUser else _named(cls, "never-created")
        ),
        NOT_FOUND,
        ("never-created",),
    )


FAILURE: dict[str, Failure] = {
    "jobGet": _gone("jobGet", UNKNOWN_ID),
    "jobReparent": _gone("jobReparent", UNKNOWN_ID, -1),
    "jobSubmit": _f_job_submit,
    "jobEdit": _f_job_edit,
    "jobAddFolder": _gone("jobAddFolder", UNKNOWN_ID, "td", "orphan"),
    "jobReinit": _gone("jobReinit", UNKNOWN_ID),
    "jobDelete": _gone("jobDelete", UNKNOWN_ID),
    "jobUpdateStatus": _gone("jobUpdateStatus", UNKNOWN_ID),
    "jobUpdate": _gone("jobUpdate", UNKNOWN_ID),
    "chunkGetList": _gone("chunkGetList", UNKNOWN_ID),
    "chunkGet": _gone("chunkGet", UNKNOWN_ID, 1),
    "chunkSetStatus": _f_chunk_set_status,
    "chunkGetHistory": _gone("chunkGetHistory", UNKNOWN_ID),
    "nodeKillProcess": _f_node_kill_idle("nodeKillProcess"),
    "nodeKillProcessAndPause": _f_node_kill_idle("nodeKillProcessAndPause"),
    "nodeKillProcessAndRestart": _f_node_kill_idle("nodeKillProcessAndRestart"),
    "nodeKillAndPauseNodesWorkingOnJob": _gone("nodeKillAndPauseNodesWorkingOnJob", UNKNOWN_ID),
    "nodeKillAndRedoNodesWorkingOnJob": _gone("nodeKillAndRedoNodesWorkingOnJob", UNKNOWN_ID),
    "nodeKillAndGoOnNodesWorkingOnJob": _gone("nodeKillAndGoOnNodesWorkingOnJob", UNKNOWN_ID),
    "nodePause": _gone("nodePause", UNKNOWN_ID),
    "nodeResume": _gone("nodeResume", UNKNOWN_ID),
    "nodeForceUpdate": _gone("nodeForceUpdate", UNKNOWN_ID),
    "nodeSetProcessPriority": _gone("nodeSetProcessPriority", UNKNOWN_ID, 1),
    "nodeSoftRestart": _gone("nodeSoftRestart", UNKNOWN_ID),
    "nodePurgeTemplatesExclusion": _gone("nodePurgeTemplatesExclusion", UNKNOWN_ID, 1000),
    "nodePurgeJobsExclusions": _gone("nodePurgeJobsExclusions", UNKNOWN_ID, 1),
    "nodeSetRealtimeLog": _gone("nodeSetRealtimeLog", UNKNOWN_ID, True),
    "nodeSendSystemEvent": _gone("nodeSendSystemEvent", UNKNOWN_ID, 1),
    "nodeRunPythonCode": _gone("nodeRunPythonCode", UNKNOWN_ID, "print(1)"),
    "nodeSetNotes": _gone("nodeSetNotes", UNKNOWN_ID, "notes"),
    "nodeRemoveRegistration": _gone("nodeRemoveRegistration", UNKNOWN_ID),
    "nodeGet": _gone("nodeGet", UNKNOWN_ID),
    "nodeGetByName": _gone("nodeGetByName", "no-such-node"),
    "sendMessageToNode": _gone("sendMessageToNode", UNKNOWN_ID, 1, "hello", False),
    "clientGet": _gone("clientGet", UNKNOWN_ID),
    "clientGetByUsername": _bad("clientGetByUsername", 42, word="username"),
    "clientForceDisconnection": _gone("clientForceDisconnection", UNKNOWN_ID),
    "sendMessageToConsole": _gone("sendMessageToConsole", UNKNOWN_ID, 1, "hello", False),
    "clientNGet": _gone("clientNGet", UNKNOWN_ID),
    "clientNGetByUsername": _bad("clientNGetByUsername", 42, word="username"),
    "clientNForceDisconnection": _gone("clientNForceDisconnection", UNKNOWN_ID),
    "sendMessageToNotificator": _gone("sendMessageToNotificator", UNKNOWN_ID, 1, "hi", False),
    "dbClearStatisticsBounds": _bad("dbClearStatisticsBounds", "yesterday", 10, word="start"),
    "dbClearHistoryBounds": _bad("dbClearHistoryBounds", 0, "tomorrow", word="end"),
    "dbImportQueueSQL": _f_db_import,
    "dbExportQueueSQL": _bad("dbExportQueueSQL", "not a reference", word="MStringRef"),
    "backupJob": _gone("backupJob", UNKNOWN_ID, 1),
    "backupJobAndDelete": _gone("backupJobAndDelete", UNKNOWN_ID, 1),
    "backupRestoreJob": _f_backup_restore,
    "backupGetBoundaries": _bad("backupGetBoundaries", None, word="MBackupQueryBoundaries"),
    "backupQuery": _bad("backupQuery", "owner=td", word="MBackupQuery"),
    "systemStartNodesNetworkScan": _f_network_scan,
    "systemSetConfiguration": _f_set_configuration,
    "systemSetLDAPConfiguration": _bad("systemSetLDAPConfiguration", {}, word="MLDAPConfiguration"),
    "systemGetActivityLog": _gone("systemGetActivityLog", "no-such.log"),
    "systemRemoveActivityLog": _gone("systemRemoveActivityLog", "no-such.log"),
    "systemGetActionLog": _gone("systemGetActionLog", "no-such.log"),
    "systemRemoveActionLog": _gone("systemRemoveActionLog", "no-such.log"),
    "logAddInternalMessage": _bad("logAddInternalMessage", 5, word="message"),
    "logAddMessage": _bad("logAddMessage", 5, word="message"),
    "userGet": _gone("userGet", "no-such-user"),
    "userAdd": _f_user_add,
    "userRemove": _gone("userRemove", "no-such-user"),
    "userConfigure": _missing(MClientAPI.MUser, "userConfigure"),
    "groupGet": _gone("groupGet", "no-such-group"),
    "groupAdd": _f_group_add,
    "groupRemove": _gone("groupRemove", "no-such-group"),
    "groupConfigure": _missing(MClientAPI.MGroup, "groupConfigure"),
    "poolGet": _gone("poolGet", "no-such-pool"),
    "poolConfigure": _missing(MClientAPI.MPool, "poolConfigure"),
    "poolAdd": _f_pool_add,
    "poolRemove": _gone("poolRemove", "no-such-pool"),
    "repositoriesGet": _gone("repositoriesGet", "no-such-repo"),
    "repositoriesConfigure": _missing(MClientAPI.MRepository, "repositoriesConfigure"),
    "repositoriesAdd": _f_repositories_add,
    "repositoriesRemove": _gone("repositoriesRemove", "no-such-repo"),
}
# Functions that take no argument cannot be given a wrong one, and every id
# they touch exists: they fail when called where they cannot work.
NO_ARGUMENT = sorted(
    name
    for name in FUNCTIONS
    if not inspect.signature(getattr(MDispatcherAPI, name)).parameters and name not in FAILURE
)


def test_every_facade_function_has_a_success_and_a_failure_case() -> None:
    assert len(FUNCTIONS) == 100
    assert sorted(SUCCESS) == FUNCTIONS
    assert sorted(set(FAILURE) | set(NO_ARGUMENT)) == FUNCTIONS
    assert not set(FAILURE) & set(NO_ARGUMENT)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_success(function: str, world: World) -> None:
    SUCCESS[function](world)


@pytest.mark.parametrize("function", sorted(FAILURE))
def test_failure(function: str, world: World) -> None:
    result, code, words = FAILURE[function](world)
    fails(result, code, *words)


@pytest.mark.parametrize("function", NO_ARGUMENT)
def test_failure_outside_the_dispatcher_context(
    function: str, dispatcher: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong_context(getattr(MDispatcherAPI, function), monkeypatch)


@pytest.fixture(autouse=True)
def _fresh_connection() -> Iterator[None]:
    reset_connection()
    yield
    reset_connection()
