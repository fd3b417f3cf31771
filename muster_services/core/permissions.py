"""Who may call what: the one access table of every RPC.

docs/security.md shows this table to operators; tests/core/test_permissions.py
checks that every RPC of every service is in it and that the document agrees.
A method missing from the table needs an administrator (closed by default).

Levels:
- PUBLIC: no token (health checks, reflection, logging in, agent enrollment).
- READ: any logged-in user or service; changes nothing.
- USER: any logged-in user; the service layer lets a user act only on what
  they own (their jobs, their own client connections); administrators act on
  everything.
- ADMIN: administrators (and the dispatcher's own service identity) only.
- SERVICE: the dispatcher's services calling each other.
- AGENT: an enrolled render-node agent, for its own node only.
"""

from __future__ import annotations

import enum


class Access(enum.Enum):
    PUBLIC = "public"
    READ = "read"
    USER = "user"
    ADMIN = "admin"
    SERVICE = "service"
    AGENT = "agent"

    @property
    def needs(self) -> str:
        return _NEEDS[self]

    @property
    def changes_state(self) -> bool:
        return self in (Access.USER, Access.ADMIN, Access.SERVICE)


_NEEDS = {
    Access.PUBLIC: "nothing",
    Access.READ: "a logged-in user",
    Access.USER: "a logged-in user",
    Access.ADMIN: "an administrator",
    Access.SERVICE: "a dispatcher service identity",
    Access.AGENT: "an enrolled agent",
}

P, R, U, A, S, G = (
    Access.PUBLIC,
    Access.READ,
    Access.USER,
    Access.ADMIN,
    Access.SERVICE,
    Access.AGENT,
)

POLICY: dict[str, dict[str, Access]] = {
    "farm.jobs.v1.JobsService": {
        "ListJobs": R,
        "GetJob": R,
        "ListChunks": R,
        "GetChunk": R,
        "ListChunkHistory": R,
        "ListTemplates": R,
        "GetTemplate": R,
        "GetBackupBoundaries": R,
        "ListBackupJobs": R,
        # A user submits as themself and changes only their own jobs.
        "SubmitJob": U,
        "CreateFolder": U,
        "UpdateJob": U,
        "MoveJob": U,
        "ReinitJob": U,
        "DeleteJob": U,
        "RecomputeJobStatus": U,
        "PublishJob": U,
        "SetChunkStatus": U,
        "BackupJob": U,
        "ArchiveJob": U,
        "RestoreJob": U,
        "ImportQueueSql": A,
        "ExportQueueSql": A,
        "FlushQueueDatabase": A,
        "FlushHistoryDatabase": A,
        "FlushBackupDatabase": A,
        "ListTemplateGroups": R,
        # Overrides a licence or delay group's limit farm-wide.
        "SetTemplateGroupLimit": A,
        # Render logs: anyone logged in unless the configuration restricts
        # them (checked again by the jobs service).
        "GetChunkLog": R,
        "FollowChunkLog": R,
    },
    "farm.jobs.v1.ChunkRunsService": {
        "FinishChunkRun": S,
        "FinishChunkRuns": S,
        "AppendChunkRunLog": S,
        "ReleaseNodeChunks": S,
        "ReportChunkProgress": S,
    },
    "farm.nodes.v1.NodesService": {
        "ListNodes": R,
        "GetNode": R,
        "FindNode": R,
        # Acts on the nodes rendering a job: its owner or an administrator.
        "KillJobProcesses": U,
        "KillNodeProcess": A,
        "PauseNode": A,
        "ResumeNode": A,
        "RefreshNode": A,
        "SetNodeProcessPriority": A,
        "RestartNodeAgent": A,
        "RemoveNodeTemplateExclusion": A,
        "RemoveNodeJobExclusion": A,
        "SetNodeRealtimeLog": A,
        "SendNodeSystemEvent": A,
        "RunNodePythonCode": A,
        "SetNodeNotes": A,
        "DeleteNode": A,
        "SendNodeMessage": A,
        "GetNodeTemplatePreferences": R,
        "SetNodeTemplatePreferences": A,
    },
    "farm.nodes.v1.ClientsService": {
        "Connect": R,
        "ListConsoles": R,
        "GetConsole": R,
        "ListNotificators": R,
        "GetNotificator": R,
        # A user may end their own connections; others' need an administrator.
        "DisconnectConsole": U,
        "DisconnectNotificator": U,
        "SendConsoleMessage": U,
        "SendNotificatorMessage": U,
    },
    "farm.agent.v1.AgentService": {
        "Enroll": P,
        "Session": G,
        "GetTemplateSource": G,
    },
    "farm.admin.v1.AdminService": {
        "Login": P,
        "ListUsers": R,
        "GetUser": R,
        "ListGroups": R,
        "GetGroup": R,
        "ListPools": R,
        "GetPool": R,
        "ListRepositories": R,
        "GetRepository": R,
        "GetEngineStatus": R,
        "GetDispatcherConfiguration": R,
        "ListActivityLogs": R,
        "GetActivityLog": R,
        # Internal messages are left out for non-administrators.
        "ListLogEntries": R,
        "GetStatisticsBounds": R,
        "ListStatisticsSamples": R,
        "GetHistoryBounds": R,
        "AddLogEntry": U,
        "CreateUser": A,
        "DeleteUser": A,
        "UpdateUser": A,
        "CreateGroup": A,
        "DeleteGroup": A,
        "UpdateGroup": A,
        "CreatePool": A,
        "UpdatePool": A,
        "DeletePool": A,
        "NotifyPoolChanges": A,
        "CreateRepository": A,
        "UpdateRepository": A,
        "DeleteRepository": A,
        "NotifyRepositoryChanges": A,
        "ToggleEngineStatus": A,
        "RestartDispatcher": A,
        "ResetStatisticsCounters": A,
        "StartNetworkScan": A,
        "UpdateDispatcherConfiguration": A,
        "GetLdapConfiguration": A,
        "UpdateLdapConfiguration": A,
        "ListActionLogs": A,
        "GetActionLog": A,
        "DeleteActivityLog": A,
        "DeleteActionLog": A,
        "ClearDispatcherLog": A,
        "AddInternalLogEntry": A,
        "ClearStatisticsSamples": A,
        "ClearHistorySamples": A,
    },
}

# Infrastructure every gRPC server carries: open to all, as load balancers,
# Kubernetes probes and grpcurl expect.
PUBLIC_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


def access_of(method: str) -> Access:
    """The access level of '/package.Service/Method' (ADMIN when unknown)."""
    service, _, name = method.strip("/").partition("/")
    if service in PUBLIC_SERVICES:
        return Access.PUBLIC
    return POLICY.get(service, {}).get(name, Access.ADMIN)
