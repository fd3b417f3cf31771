"""The dashboard's JSON API and live events against a real dev stack: every
call is made with the browser user's own token, refusals come back with the
services' own message, and bad requests change nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.e2e.test_render import eventually, shell_job
from tests.muster_web.conftest import Stack
from tests.muster_web.support import WebClient

pytestmark = pytest.mark.database


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with stack.process.channel() as ch:
        yield ch


@pytest.fixture(scope="module")
def admin(stack: Stack) -> WebClient:
    client = WebClient(stack.url)
    status, body = client.login(stack.user, stack.password)
    assert status == 200, body
    return client


@pytest.fixture(scope="module")
def node_id(channel: grpc.Channel) -> int:
    nodes = nodes_pb2_grpc.NodesServiceStub(channel)
    listed = eventually(
        lambda: list(nodes.ListNodes(nodes_pb2.ListNodesRequest()).nodes), what="the local agent"
    )
    return int(listed[0].id)


def submit(channel: grpc.Channel, name: str, parent: int = -1, paused: bool = True) -> int:
    """A job of four one-frame chunks echoing their frame (alice's)."""
    job = shell_job(name, 4, 1, "echo frame $f", paused=paused)
    job.parent_id = parent
    reply = jobs_pb2_grpc.JobsServiceStub(channel).SubmitJob(jobs_pb2.SubmitJobRequest(job=job))
    return int(reply.job_id)


def get_job(channel: grpc.Channel, job_id: int) -> jobs_pb2.Job:
    return jobs_pb2_grpc.JobsServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job


def node_paused(channel: grpc.Channel, node_id: int) -> bool:
    stub = nodes_pb2_grpc.NodesServiceStub(channel)
    return bool(stub.GetNode(nodes_pb2.GetNodeRequest(node_id=node_id)).node.paused)


def test_login_sets_an_http_only_strict_cookie_and_a_wrong_password_gets_none(
    stack: Stack,
) -> None:
    client = WebClient(stack.url)
    status, body = client.login(stack.user, "wrong password")
    assert status == 401 and body["error"], body
    assert client.cookie("muster_session") is None
    assert client.call("GET", "/api/jobs") == (401, {"error": "not logged in"})

    status, body = client.login(stack.user, stack.password)
    assert (status, body) == (200, {"user": stack.user, "role": "administrator"})
    cookie = client.cookie("muster_session")
    assert cookie is not None and cookie.value
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "strict"
    assert not cookie.secure  # MUSTER_WEB_COOKIE_SECURE is off on loopback
    assert client.get("/api/jobs")["jobs"] is not None

    assert client.call("POST", "/api/logout")[0] == 200
    assert client.call("GET", "/api/jobs")[0] == 401


def test_changes_without_the_page_header_are_refused_and_change_nothing(
    admin: WebClient, channel: grpc.Channel, node_id: int
) -> None:
    job_id = submit(channel, "untouched")
    for path in (f"/api/nodes/{node_id}/pause", f"/api/jobs/{job_id}/delete"):
        status, body = admin.call("POST", path, from_page=False)
        assert status == 403 and "x-muster-web" in body["error"], body
    assert not node_paused(channel, node_id)
    assert get_job(channel, job_id).name == "untouched"
    status, _ = WebClient(admin.url).call(
        "POST", "/api/login", {"user": "admin", "password": "x"}, from_page=False
    )
    assert status == 403


def test_job_actions_act_with_the_users_token(admin: WebClient, channel: grpc.Channel) -> None:
    job_id = submit(channel, "acted on", paused=False)
    assert admin.call("POST", f"/api/jobs/{job_id}/pause") == (
        200,
        {"done": "pause", "job_id": job_id},
    )
    assert get_job(channel, job_id).paused
    assert admin.get(f"/api/jobs/{job_id}")["paused"] is True
    assert admin.call("POST", f"/api/jobs/{job_id}/resume")[0] == 200
    assert not get_job(channel, job_id).paused
    assert admin.call("POST", f"/api/jobs/{job_id}/reinit")[0] == 200
    status, body = admin.call("POST", f"/api/jobs/{job_id}/explode")
    assert status == 404 and "pause, resume, reinit, delete" in body["error"]
    assert admin.call("POST", f"/api/jobs/{job_id}/delete")[0] == 200
    status, body = admin.call("GET", f"/api/jobs/{job_id}")
    assert status == 404 and str(job_id) in body["error"]
    status, body = admin.call("POST", "/api/jobs/999999/pause")
    assert status == 404 and "999999" in body["error"]


def test_a_user_is_refused_what_the_services_refuse_them(
    stack: Stack, admin: WebClient, channel: grpc.Channel, node_id: int
) -> None:
    admin_pb2_grpc.AdminServiceStub(channel).CreateUser(
        admin_pb2.CreateUserRequest(
            user=admin_pb2.User(
                name="bob",
                password="bob-password-1",
                role=admin_pb2.USER_ROLE_USER,
                enabled=True,
            )
        )
    )
    bob = WebClient(stack.url)
    assert bob.login("bob", "bob-password-1") == (200, {"user": "bob", "role": "user"})
    # Reading is open to every user; pausing a node needs an administrator.
    assert any(n["id"] == node_id for n in bob.get("/api/nodes")["nodes"])
    status, body = bob.call("POST", f"/api/nodes/{node_id}/pause")
    assert status == 403 and "administrator" in body["error"], body
    assert not node_paused(channel, node_id)
    # Another user's job: the service refuses bob.
    job_id = submit(channel, "admins own")
    status, body = bob.call("POST", f"/api/jobs/{job_id}/delete")
    assert status == 403, body
    assert get_job(channel, job_id).name == "admins own"


def test_the_job_list_pages_through_a_folder(admin: WebClient, channel: grpc.Channel) -> None:
    folder = jobs_pb2_grpc.JobsServiceStub(channel).CreateFolder(
        jobs_pb2.CreateFolderRequest(parent_id=-1, name="paged")
    )
    ids = {submit(channel, f"paged {i}", parent=folder.folder_id) for i in range(5)}
    seen: list[int] = []
    token, pages = "", 0
    while True:
        page = admin.get(f"/api/jobs?parent={folder.folder_id}&page_size=2&page_token={token}")
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        token = page["next_page_token"]
        if not token:
            break
    assert sorted(seen) == sorted(ids) and pages == 3
    root = admin.get("/api/jobs?page_size=1000")["jobs"]
    assert folder.folder_id in {j["id"] for j in root if j["folder"]}
    assert not ids & {j["id"] for j in root}
    status, body = admin.call("GET", "/api/jobs?page_size=0")
    assert status == 422 and body["error"].startswith("query.page_size: "), body
    status, body = admin.call("GET", f"/api/jobs?parent={folder.folder_id}&page_token=garbage")
    assert status == 400 and "page_token" in body["error"]


def test_one_upstream_stream_feeds_every_browser(
    stack: Stack, admin: WebClient, channel: grpc.Channel, node_id: int
) -> None:
    other = WebClient(stack.url)
    other.login(stack.user, stack.password)
    forged = WebClient(stack.url)
    forged.opener.addheaders.append(("cookie", "muster_session=forged"))
    status, body = forged.call("GET", "/api/events")
    assert status == 401 and body["error"], body  # never lent to the shared connection
    streams = [admin.events(), other.events(), admin.events()]
    try:
        for stream in streams:
            stream.next("hello")
        # Three browsers, one console connection.
        eventually(lambda: admin_consoles(channel), what="the dashboard's console connection")
        time.sleep(0.5)
        assert len(admin_consoles(channel)) == 1
        assert admin.call("POST", f"/api/nodes/{node_id}/pause")[0] == 200
        for stream in streams:
            change = wait_change(stream, lambda c: c["kind"] == "node" and c["node"]["paused"])
            assert change["node"]["id"] == node_id
        assert admin.call("POST", f"/api/nodes/{node_id}/resume")[0] == 200
        for stream in streams:
            wait_change(stream, lambda c: c["kind"] == "node" and not c["node"]["paused"])
        assert len(admin_consoles(channel)) == 1
    finally:
        for stream in streams:
            stream.close()


def admin_consoles(channel: grpc.Channel) -> list[nodes_pb2.ConsoleClient]:
    stub = nodes_pb2_grpc.ClientsServiceStub(channel)
    return list(stub.ListConsoles(nodes_pb2.ListConsolesRequest()).consoles)


def wait_change(stream: Any, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for change in stream.next("changes"):
            if match(change):
                return dict(change)
    raise AssertionError("no such change")


def test_statistics_samples_come_from_the_admin_service(admin: WebClient) -> None:
    samples = eventually(lambda: admin.get("/api/statistics?hours=1")["samples"], what="a sample")
    assert {"time", "nodes_total", "jobs_queued", "chunks_running"} <= samples[0].keys()
    assert samples[0]["time"] > time.time() - 3600
    assert admin.call("GET", "/api/statistics?hours=0")[0] == 422


def test_the_page_and_its_assets_are_served_by_the_dashboard(stack: Stack) -> None:
    client = WebClient(stack.url)
    for path, kind in (
        ("/", "text/html"),
        ("/static/app.js", "javascript"),
        ("/static/app.css", "css"),
    ):
        request = client.opener.open(stack.url.rstrip("/") + path, timeout=10)
        assert request.status == 200 and kind in request.headers["content-type"]
        text = request.read().decode()
        assert "http://" not in text.replace(stack.url, "") and "https://" not in text


def test_a_running_chunks_log_is_followed_then_read_back(
    admin: WebClient, channel: grpc.Channel
) -> None:
    """JobsService.FollowChunkLog and GetChunkLog through the dashboard (the
    render-log RPCs: issue #16's render logs)."""
    job = shell_job("followed", 1, 1, "echo tick one; sleep 2; echo tick two")
    job_id = (
        jobs_pb2_grpc.JobsServiceStub(channel).SubmitJob(jobs_pb2.SubmitJobRequest(job=job)).job_id
    )
    stream = admin.events(f"/api/jobs/{job_id}/chunks/1/log/follow?tail=100")
    try:
        texts: list[str] = []
        while True:
            message = stream.next("lines", timeout=60)
            texts += [line["text"] for line in message["lines"]]
            if message["ended"]:
                break
        assert message["run"]["outcome"] == "succeeded"
        assert texts.index("tick one") < texts.index("tick two")
    finally:
        stream.close()
    log = admin.get(f"/api/jobs/{job_id}/chunks/1/log?tail=1000")
    assert [line["text"] for line in log["lines"]] == texts
    assert log["run"]["run_number"] == 1 and log["last_line"] == len(texts)
    status, body = admin.call("GET", f"/api/jobs/{job_id}/chunks/7/log")
    assert status == 404 and body["error"], body
