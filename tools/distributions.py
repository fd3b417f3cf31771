"""What each of the three wheels packs (docs/install.md), read from their
pyproject files; used by the build hook (tools/hatch_build.py) and the tests.

One repository, three wheels: the server (pyproject.toml), the client
(packaging/client) and the render node (packaging/render-node). Each names what it
packs in its hook table (`[tool.hatch.build.targets.wheel.hooks.custom]`):

  packages  package folders of the repository, packed with every file but
            caches and lint configuration
  exclude   folders under those packages left out
  modules   single files and where they go in the wheel (Muster's top-level
            modules, the systemd unit)
  generate  true: generate the protobuf modules (gen/muster_proto) and pack them
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_NAMES = {"__pycache__", "ruff.toml", ".mypy_cache", ".pytest_cache"}
# The distributions by their project folder.
PROJECTS = {
    "farm-dispatcher-client": ROOT / "packaging" / "client",
    "farm-dispatcher-render-node": ROOT / "packaging" / "render-node",
    "farm-dispatcher": ROOT,
}


def pyproject(project: Path) -> dict[str, Any]:
    with (project / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def hook_table(project: Path) -> dict[str, Any]:
    """The build hook's table of a project (what its wheel packs)."""
    table: dict[str, Any] = pyproject(project)["tool"]["hatch"]["build"]["targets"]["wheel"][
        "hooks"
    ]["custom"]
    return table


def package_files(package: Path, exclude: set[Path], root: Path = ROOT) -> list[Path]:
    """Every file of a package folder a wheel ships (no caches, no lint settings)."""
    found = []
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.suffix == ".pyc":
            continue
        if SKIPPED_NAMES & set(relative.parts) or any(e in relative.parents for e in exclude):
            continue
        found.append(path)
    return found


def wheel_files(config: dict[str, Any], root: Path = ROOT) -> dict[str, str]:
    """{source path: path in the wheel} for a hook table (generated modules excluded)."""
    exclude = {Path(e) for e in config.get("exclude", [])}
    files: dict[str, str] = {}
    for package in config.get("packages", []):
        for path in package_files(root / package, exclude, root):
            files[str(path)] = path.relative_to(root).as_posix()
    for source, target in config.get("modules", {}).items():
        files[str(root / source)] = target
    return files


def sources(config: dict[str, Any]) -> set[str]:
    """The repository's top-level paths a wheel is built from (besides protos/ and tools/)."""
    found = {package.split("/")[0] for package in config.get("packages", [])}
    found |= {source.split("/")[0] for source in config.get("modules", {})}
    return found
