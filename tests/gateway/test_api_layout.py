"""muster_gateway/api/: where the MDispatcherAPI functions live and what the module exposes.

Pins `MDispatcherAPI`'s public names to the seed's 100 functions (plus
`MUSTERERR` and `FUNCTIONS`), each function to the module of its seed group,
and the one calling idiom (RPCs named as stub attributes, never by string).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import MConsoleAPI
import MDispatcherAPI
import pytest

from muster_gateway import api, dispatcher_api
from tests.contract.test_api_compatibility import MUSTER_FUNCTIONS, MUSTER_FUNCTIONS_BY_SECTION

API_DIR = Path(api.__file__).resolve().parent

# The seed's sections and the module of muster_gateway/api/ that holds each.
SECTION_MODULES = {
    "Jobs": "jobs",
    "Chunks": "chunks",
    "Nodes": "nodes",
    "Consoles": "clients",
    "Notificators": "clients",
    "Database": "database",
    "Backup database": "backup",
    "System": "system",
    "Logs": "logs",
    "Users and groups": "users",
    "Pools": "pools",
    "Repositories": "repositories",
}


def _public(module: object) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def test_mdispatcherapi_exposes_the_seed_functions_and_nothing_else() -> None:
    assert _public(MDispatcherAPI) == {"MUSTERERR", "FUNCTIONS", *MUSTER_FUNCTIONS}
    assert list(MUSTER_FUNCTIONS) == MDispatcherAPI.FUNCTIONS
    assert vars(MDispatcherAPI)["__all__"] == ["MUSTERERR", "FUNCTIONS", *MUSTER_FUNCTIONS]


@pytest.mark.parametrize("module", [MConsoleAPI, dispatcher_api], ids=lambda m: m.__name__)
def test_other_homes_expose_the_same_functions(module: object) -> None:
    assert sorted(dir(module)) == sorted(dir(MDispatcherAPI))
    for name in api.__all__:
        assert getattr(module, name) is getattr(MDispatcherAPI, name), name


def test_sections_cover_every_seed_group() -> None:
    assert set(SECTION_MODULES) == set(MUSTER_FUNCTIONS_BY_SECTION)
    modules = {path.stem for path in API_DIR.glob("*.py") if not path.stem.startswith("_")}
    assert modules == set(SECTION_MODULES.values())


@pytest.mark.parametrize("section", sorted(MUSTER_FUNCTIONS_BY_SECTION))
def test_each_function_lives_in_the_module_of_its_seed_group(section: str) -> None:
    module = importlib.import_module(f"muster_gateway.api.{SECTION_MODULES[section]}")
    for name in MUSTER_FUNCTIONS_BY_SECTION[section]:
        function = getattr(MDispatcherAPI, name)
        assert function.__module__ == module.__name__, name
        assert getattr(module, name) is function


def test_no_rpc_is_picked_by_a_string() -> None:
    for path in sorted(API_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"getattr", "setattr"}, f"{path.name}:{node.lineno}"
