"""The seam between the jobs and nodes services (docs/render-loop.md).

The nodes service imports from the jobs domain only muster_services.jobs.for_nodes
(what it needs from jobs, produced by jobs) and muster_services.jobs.topics (event
names); everything else comes through the contract (farm.*).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODES = ROOT / "muster_services" / "nodes"
ALLOWED = {"muster_services.jobs.for_nodes", "muster_services.jobs.topics"}


def _jobs_imports(path: Path) -> list[str]:
    """Every muster_services.jobs module a file imports.

    `from muster_services.jobs import x` counts as x.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [
                a.name for a in node.names if a.name.split(".")[:2] == ["muster_services", "jobs"]
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "muster_services.jobs":
                found += [f"muster_services.jobs.{a.name}" for a in node.names]
            elif node.module.startswith("muster_services.jobs."):
                found.append(node.module)
            elif node.module == "muster_services":
                found += [f"muster_services.{a.name}" for a in node.names if a.name == "jobs"]
    return found


MODULES = sorted(NODES.rglob("*.py"))


def test_the_nodes_service_has_modules_to_check() -> None:
    assert {p.name for p in MODULES} >= {"service.py", "servicer.py", "delivery.py", "relay.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nodes_modules_import_only_the_documented_jobs_modules(path: Path) -> None:
    wrong = [m for m in _jobs_imports(path) if m not in ALLOWED]
    assert not wrong, f"{path.relative_to(ROOT)} imports jobs internals {wrong}: use {ALLOWED}"


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import muster_services.jobs.tables\n"
        "from muster_services.jobs import store, for_nodes\n"
        "from muster_services.jobs.messages import job_message\n"
        "from muster_services import jobs\n"
        "from muster_services.jobs.topics import CHUNK_ASSIGNED\n"
        "def f():\n"
        "    from muster_services.jobs.domain import eligible\n"
    )
    found = _jobs_imports(sample)
    assert [m for m in found if m not in ALLOWED] == [
        "muster_services.jobs.tables",
        "muster_services.jobs.store",
        "muster_services.jobs.messages",
        "muster_services.jobs",
        "muster_services.jobs.domain",
    ]
