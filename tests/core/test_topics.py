"""The event topics the docs list are the topics the code names.

Each domain's topics are the constants of its topics module; each topic has
exactly one row in a docs table whose first column is `topic` (docs/events.md
indexes them). Adding a constant without a row, or leaving a row whose topic
is no constant, fails here.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from muster_services.admin import topics as admin_topics
from muster_services.core import topics as core_topics
from muster_services.jobs import topics as jobs_topics
from muster_services.jobs.hooks import REACTIONS
from muster_services.nodes import topics as nodes_topics

DOCS = Path(__file__).resolve().parents[2] / "docs"
MODULES = (jobs_topics, nodes_topics, admin_topics, core_topics)
_TOPIC = re.compile(r"`([a-z_]+(?:\.[a-z_]+)+)`")


def constants(module: ModuleType) -> dict[str, str]:
    """The topic constants of a topics module (name -> topic)."""
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper() and name != "ALL" and isinstance(value, str)
    }


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def topic_rows(text: str) -> list[tuple[int, list[str]]]:
    """(line number, topics) of each row of the tables whose first column is
    `topic`: the backquoted dotted names in the row's first cell."""
    rows: list[tuple[int, list[str]]] = []
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            in_table = False
            continue
        first = _cells(line)[0]
        if not in_table:
            in_table = first == "topic"
            continue
        if set(first) <= set("-: "):
            continue  # the header's rule
        rows.append((number, _TOPIC.findall(first)))
    return rows


def documented() -> dict[str, list[str]]:
    """Each documented topic -> where its rows are ("file:line")."""
    where: dict[str, list[str]] = {}
    for path in sorted(DOCS.glob("*.md")):
        for number, found in topic_rows(path.read_text()):
            assert found, f"{path.name}:{number}: a row of a topic table names no `topic`"
            for topic in found:
                where.setdefault(topic, []).append(f"{path.name}:{number}")
    return where


def test_the_table_reader_finds_rows_and_only_in_topic_tables() -> None:
    text = "\n".join(
        [
            "| topic | payload |",
            "|---|---|",
            "| `a.b` / `a.c_d` | `x.y` in the payload is not a topic |",
            "",
            "| function | topic |",
            "|---|---|",
            "| `e.f` | `g.h` |",
            "",
            "| topic | payload |",
            "| :-- | --- |",
            "| `i.j` | |",
            "| no topic here | |",
        ]
    )
    assert topic_rows(text) == [(3, ["a.b", "a.c_d"]), (11, ["i.j"]), (12, [])]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_topic_constant_is_in_its_modules_all(module: ModuleType) -> None:
    found = constants(module)
    assert found, f"{module.__name__} names no topic"
    assert set(found.values()) == module.ALL
    assert len(set(found.values())) == len(found), f"{module.__name__} repeats a topic"


def test_no_two_domains_name_the_same_topic() -> None:
    counts = Counter(topic for module in MODULES for topic in module.ALL)
    assert [topic for topic, n in counts.items() if n > 1] == []


def test_every_topic_constant_has_exactly_one_row_in_the_docs() -> None:
    where = documented()
    missing = sorted(
        f"{module.__name__}.{name} ({topic!r})"
        for module in MODULES
        for name, topic in constants(module).items()
        if topic not in where
    )
    assert missing == [], "topics without a row in a docs table (docs/events.md lists them)"
    repeated = {topic: places for topic, places in where.items() if len(places) > 1}
    assert repeated == {}, "a topic's payload is documented in one row only"


def test_every_topic_in_the_docs_tables_is_a_constant() -> None:
    known = set().union(*(module.ALL for module in MODULES))
    stale = {topic: places for topic, places in documented().items() if topic not in known}
    assert stale == {}, "rows of topics no module defines (stale, or a missing constant)"


def test_the_index_links_every_file_with_a_topic_table() -> None:
    with_tables = {path.name for path in DOCS.glob("*.md") if topic_rows(path.read_text()) != []}
    index = (DOCS / "events.md").read_text()
    linked = set(re.findall(r"\]\(([a-z-]+\.md)#", index))
    assert with_tables and with_tables <= linked
    for module in MODULES:
        assert f"muster_services/{module.__name__.split('.')[1]}/topics.py" in index


def test_the_hooks_docs_name_the_topic_of_every_reaction() -> None:
    text = (DOCS / "hooks.md").read_text()
    documented_reactions: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = _cells(line) if line.startswith("| `on") else []
        if len(cells) == 3:
            hook = cells[0].strip("`").split("(")[0]
            (topic,) = _TOPIC.findall(cells[2])
            documented_reactions.setdefault(topic, []).append(hook)
    assert documented_reactions == {topic: list(hooks) for topic, hooks in REACTIONS.items()}
    known = set().union(*(module.ALL for module in MODULES))
    assert set(REACTIONS) <= known
