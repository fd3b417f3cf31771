"""Commands on nodes, pools, users, templates, settings and queue snapshots."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from muster_cli import render
from muster_cli.app import app, call, connection, every_item, fail, new_app
from muster_cli.jobs import JsonFlag
from muster_proto.admin.v1 import admin_pb2
from muster_proto.common.v1 import common_pb2
from muster_proto.jobs.v1 import jobs_pb2
from muster_proto.nodes.v1 import nodes_pb2

node_app = new_app("One node: show, pause, resume or kill its process.")
config_app = new_app("The dispatcher's configuration.")
app.add_typer(node_app, name="node")
app.add_typer(config_app, name="config")

NodeRef = Annotated[str, typer.Argument(help="Node id or name.", show_default=False)]


def node_status(node: nodes_pb2.Node) -> str:
    text = render.enum_text(nodes_pb2.NodeStatus.DESCRIPTOR, node.status, "NODE_STATUS_")
    return text + (
        ", paused" if node.paused and node.status != nodes_pb2.NODE_STATUS_PAUSED else ""
    )


def find_node(ref: str) -> nodes_pb2.Node:
    stub = connection().nodes()
    if ref.isdigit():
        reply: Any = call(stub.GetNode, nodes_pb2.GetNodeRequest(node_id=int(ref)))
    else:
        reply = call(stub.FindNode, nodes_pb2.FindNodeRequest(name=ref))
    node: nodes_pb2.Node = reply.node
    return node


@app.command()
def nodes(
    pool: Annotated[str, typer.Option("--pool", help="Only this pool's nodes.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Every node: state, running chunk and progress, pools."""
    request = nodes_pb2.ListNodesRequest(pool=pool)
    render.listing(
        every_item(connection().nodes().ListNodes, request, "nodes"),
        as_json,
        "nodes",
        ("id", "name", "state", "job", "chunk", "progress", "pools", "platform", "last heartbeat"),
        lambda n: (
            n.id,
            n.name,
            node_status(n),
            n.job_id or "",
            n.chunk_id or "",
            render.bar(n.chunk_progress) if n.job_id else "",
            ", ".join(n.pools),
            render.enum_text(common_pb2.Platform.DESCRIPTOR, n.platform, "PLATFORM_"),
            render.when(n.last_heartbeat_time),
        ),
    )


@node_app.command("show")
def node_show(node: NodeRef, as_json: JsonFlag = False) -> None:
    """Every property of one node."""
    found = find_node(node)
    render.details(
        found,
        as_json,
        f"node {found.id}",
        lambda: [
            ("name", found.name),
            ("state", node_status(found)),
            ("job", found.job_id or ""),
            ("chunk", found.chunk_id or ""),
            ("progress", render.bar(found.chunk_progress) if found.job_id else ""),
            ("host", found.host_name),
            ("address", found.ip_address),
            (
                "platform",
                render.enum_text(common_pb2.Platform.DESCRIPTOR, found.platform, "PLATFORM_"),
            ),
            ("os", found.os_version),
            ("instance", found.instance_number),
            ("cpu cores", found.cpu_cores),
            ("memory", f"{found.memory_bytes / 2**30:.1f} GiB" if found.memory_bytes else ""),
            ("pools", ", ".join(found.pools)),
            ("agent", found.agent_version),
            ("realtime log", "on" if found.realtime_log else ""),
            ("excluded templates", ", ".join(str(t) for t in found.excluded_template_ids)),
            ("excluded jobs", ", ".join(str(j) for j in found.excluded_job_ids)),
            ("registered", render.when(found.registration_time)),
            ("last heartbeat", render.when(found.last_heartbeat_time)),
            ("notes", found.notes),
        ],
    )


@node_app.command("pause")
def node_pause(node: NodeRef) -> None:
    """Pause a node: it takes no new work; a running chunk finishes."""
    found = find_node(node)
    call(connection().nodes().PauseNode, nodes_pb2.PauseNodeRequest(node_id=found.id))
    render.out().print(f"node {found.id} ({found.name}) paused")


@node_app.command("resume")
def node_resume(node: NodeRef) -> None:
    """Resume a paused node."""
    found = find_node(node)
    call(connection().nodes().ResumeNode, nodes_pb2.ResumeNodeRequest(node_id=found.id))
    render.out().print(f"node {found.id} ({found.name}) resumed")


_FOLLOW_UPS = {
    "continue": common_pb2.KILL_FOLLOW_UP_CONTINUE,
    "pause": common_pb2.KILL_FOLLOW_UP_PAUSE,
    "restart": common_pb2.KILL_FOLLOW_UP_RESTART,
}


@node_app.command("kill")
def node_kill(
    node: NodeRef,
    then: Annotated[
        str, typer.Option("--then", help="continue (default), pause or restart the chunk.")
    ] = "continue",
) -> None:
    """Kill a node's render process; its chunk goes back to the queue."""
    if then not in _FOLLOW_UPS:
        fail(f"--then is continue, pause or restart, not {then!r}", 2)
    found = find_node(node)
    request = nodes_pb2.KillNodeProcessRequest(node_id=found.id, follow_up=_FOLLOW_UPS[then])
    call(connection().nodes().KillNodeProcess, request)
    render.out().print(f"node {found.id} ({found.name}): process killed, then {then}")


@app.command()
def pools(as_json: JsonFlag = False) -> None:
    """The pools and their member nodes."""
    render.listing(
        every_item(connection().admin().ListPools, admin_pb2.ListPoolsRequest(), "pools"),
        as_json,
        "pools",
        ("pool", "nodes", "description"),
        lambda p: (p.name, ", ".join(p.node_names), p.description),
    )


@app.command()
def users(as_json: JsonFlag = False) -> None:
    """The farm's users."""
    render.listing(
        every_item(connection().admin().ListUsers, admin_pb2.ListUsersRequest(), "users"),
        as_json,
        "users",
        ("user", "role", "groups", "enabled", "e-mail", "directory"),
        lambda u: (
            u.name,
            render.enum_text(admin_pb2.UserRole.DESCRIPTOR, u.role, "USER_ROLE_"),
            ", ".join(u.groups),
            "yes" if u.enabled else "no",
            u.email,
            "yes" if u.directory_user else "",
        ),
    )


@app.command()
def templates(as_json: JsonFlag = False) -> None:
    """The render templates (id, name, platforms, default packet)."""
    request = jobs_pb2.ListTemplatesRequest()
    render.listing(
        sorted(every_item(connection().jobs().ListTemplates, request, "templates"), key=_id),
        as_json,
        "templates",
        ("id", "name", "platforms", "enabled", "default packet", "problem"),
        lambda t: (
            t.id,
            t.name,
            ", ".join(
                render.enum_text(common_pb2.Platform.DESCRIPTOR, p.platform, "PLATFORM_")
                for p in t.platforms
                if p.enabled
            ),
            "yes" if t.enabled else "no",
            t.default_packet_size or "",
            t.load_error.splitlines()[-1] if t.load_error else "",
        ),
    )


def _id(template: jobs_pb2.Template) -> int:
    return int(template.id)


# --- configuration --------------------------------------------------------------------------


def _configuration() -> admin_pb2.DispatcherConfiguration:
    reply: admin_pb2.GetDispatcherConfigurationResponse = call(
        connection().admin().GetDispatcherConfiguration,
        admin_pb2.GetDispatcherConfigurationRequest(),
    )
    return reply.configuration


def _flatten(message: Message, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every field, nested messages expanded."""
    pairs: list[tuple[str, Any]] = []
    for field in message.DESCRIPTOR.fields:
        key, value = prefix + field.name, getattr(message, field.name)
        if field.message_type is not None and not _repeated(field):
            pairs.extend(_flatten(value, key + "."))
        elif _repeated(field):
            pairs.append((key, ",".join(str(v) for v in value)))
        elif field.enum_type is not None:
            pairs.append((key, _enum_names(field)[value]))
        else:
            pairs.append((key, str(value).lower() if isinstance(value, bool) else value))
    return pairs


def _enum_names(field: Any) -> dict[int, str]:
    """Number -> short name of an enum field's values (INSTANCE_IDENTITY_IP -> ip)."""
    prefix = field.enum_type.values_by_number[0].name.removesuffix("UNSPECIFIED")
    return {v.number: v.name.removeprefix(prefix).lower() for v in field.enum_type.values}


def _repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _parse(field: Any, text: str) -> Any:
    if _repeated(field):
        return [part.strip() for part in text.split(",") if part.strip()]
    if field.enum_type is not None:
        names = _enum_names(field)
        for number, name in names.items():
            if number and name == text.strip().lower():
                return number
        fail(f"{field.name}: one of {', '.join(n for k, n in names.items() if k)}", 2)
    if field.type == FieldDescriptor.TYPE_BOOL:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            fail(f"{field.name}: true or false, not {text!r}", 2)
        return lowered in ("true", "yes", "on", "1")
    if field.type == FieldDescriptor.TYPE_STRING:
        return text
    try:
        return int(text)
    except ValueError:
        fail(f"{field.name}: a whole number, not {text!r}", 2)


@config_app.command("get")
def config_get(
    key: Annotated[
        str, typer.Argument(help="One setting (dotted for email.*); all if absent.")
    ] = "",
    as_json: JsonFlag = False,
) -> None:
    """Show the dispatcher's configuration, or one setting of it."""
    pairs = _flatten(_configuration())
    if key:
        pairs = [(k, v) for k, v in pairs if k == key]
        if not pairs:
            fail(f"no setting {key!r} (see `muster config get`)")
    if as_json:
        render.print_json(dict(pairs))
        return
    render.table("dispatcher configuration", ("setting", "value"), pairs)


@config_app.command("set")
def config_set(
    key: Annotated[str, typer.Argument(help="The setting, e.g. max_chunk_requeues.")],
    value: Annotated[str, typer.Argument(help="Its new value (lists: a,b).")],
    persist: Annotated[
        bool, typer.Option("--persist/--until-restart", help="Store it for good (the default).")
    ] = True,
) -> None:
    """Change one setting of the dispatcher's configuration (administrators)."""
    configuration = admin_pb2.DispatcherConfiguration()
    target: Message = configuration
    *path, leaf = key.split(".")
    for part in path:
        field = target.DESCRIPTOR.fields_by_name.get(part)
        if field is None or field.message_type is None:
            fail(f"no setting {key!r} (see `muster config get`)")
        target = getattr(target, part)
    field = target.DESCRIPTOR.fields_by_name.get(leaf)
    if field is None or (field.message_type is not None):
        fail(f"no setting {key!r} (see `muster config get`)")
    parsed = _parse(field, value)
    if _repeated(field):
        getattr(target, leaf).extend(parsed)
    else:
        setattr(target, leaf, parsed)
    reply: admin_pb2.UpdateDispatcherConfigurationResponse = call(
        connection().admin().UpdateDispatcherConfiguration,
        admin_pb2.UpdateDispatcherConfigurationRequest(
            configuration=configuration, update_mask=FieldMask(paths=[key]), persist=persist
        ),
    )
    now = dict(_flatten(reply.configuration))[key]
    render.out().print(f"{key} = {now}")


# --- queue snapshots ------------------------------------------------------------------------


@app.command("export")
def export_queue(
    file: Annotated[Path, typer.Argument(help="Where to write the SQL snapshot; - for stdout.")],
) -> None:
    """Snapshot the queue (jobs, folders, chunks) as SQL (administrators)."""
    with render.out().status("exporting the queue...", spinner="dots"):
        reply: jobs_pb2.ExportQueueSqlResponse = call(
            connection().jobs().ExportQueueSql, jobs_pb2.ExportQueueSqlRequest(), timeout=600
        )
    if str(file) == "-":
        sys.stdout.write(reply.sql)
        return
    file.write_text(reply.sql)
    render.out().print(f"queue exported to {file} ({len(reply.sql.encode())} bytes)")


@app.command("import")
def import_queue(
    file: Annotated[Path, typer.Argument(help="A snapshot `muster export` wrote.")],
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Do not ask.")] = False,
) -> None:
    """Replace the whole queue with a snapshot (administrators; nothing may be running)."""
    sql = file.read_text()
    if not yes:
        typer.confirm("replace the whole queue with this snapshot?", abort=True, err=True)
    with render.out().status("importing the queue...", spinner="dots"):
        reply: jobs_pb2.ImportQueueSqlResponse = call(
            connection().jobs().ImportQueueSql, jobs_pb2.ImportQueueSqlRequest(sql=sql), timeout=600
        )
    render.out().print(f"queue imported: {reply.jobs_count} jobs and folders")
