"""Run the registered benchmarks, print their figures, write docs/benchmarks.md.

`python -m bench` runs them all; `python -m bench render` only those whose
name contains one of the words given, and rewrites only their sections of
docs/benchmarks.md. Each benchmark returns rows of (what, our figure, peer
figure measured in the same run, unit). Figures are medians of repeated runs:
machines are noisy.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.common import BENCHMARKS, POSTGRES_URL, Row
from muster_services.core.database import libpq_url

ROOT = Path(__file__).resolve().parent.parent


def _table(rows: list[Row]) -> str:
    head = (
        "| benchmark | ours | peer | peer figure | ratio ours/peer | unit |\n"
        "|---|---|---|---|---|---|"
    )
    body = [
        f"| {r.what} | {r.ours:,.1f} | {r.peer_name} | "
        f"{'-' if r.peer is None else f'{r.peer:,.1f}'} | {r.ratio} | {r.unit} |"
        for r in rows
    ]
    return "\n".join([head, *body])


HEADER = (
    "# Benchmarks\n\n"
    "Written by `make bench` (bench/__main__.py; `python -m bench NAME` reruns one section). "
    "Figures are medians of repeated runs on the machine named in each section; each row's "
    "peer figure was measured in the same run. They run on the embedded PostgreSQL unless "
    "`BENCH_POSTGRES_URL` and `BENCH_POSTGRES_DATA` name a server of the machine (a role that "
    "may create databases, and the server's data folder); a section measured so says which "
    'server in its "Last run" line.\n'
)


def _server_version() -> str:
    with psycopg.connect(libpq_url(POSTGRES_URL)) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def _sections(text: str) -> dict[str, str]:
    """The sections of docs/benchmarks.md by benchmark name (body after the heading)."""
    found: dict[str, str] = {}
    for part in text.split("\n## ")[1:]:
        name, _, body = part.partition("\n")
        found[name.strip()] = body.strip("\n")
    return found


def main(argv: list[str]) -> int:
    # Every module of bench/ registers its benchmarks when imported.
    for module in sorted(p.stem for p in Path(__file__).parent.glob("*.py")):
        if module not in ("__init__", "__main__", "common"):
            importlib.import_module(f"bench.{module}")
    wanted = [w.lower() for w in argv]
    chosen = [n for n in BENCHMARKS if not wanted or any(w in n.lower() for w in wanted)]
    if not chosen:
        print(f"no benchmark named like {argv}; there are {list(BENCHMARKS)}")
        return 2
    out = ROOT / "docs" / "benchmarks.md"
    sections = _sections(out.read_text()) if out.exists() else {}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    if POSTGRES_URL:
        machine += f", {_server_version()} (BENCH_POSTGRES_URL), not the embedded PostgreSQL"
    for name in chosen:
        started = time.perf_counter()
        print(f"running {name} ...", flush=True)
        rows = BENCHMARKS[name]()
        print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        table = _table(rows)
        print(table)
        # The section's own table is its last one: the notes before it (their
        # own tables too) are kept, all but the "Last run" line.
        body = sections.get(name, "")
        head, table_start, _ = body.rpartition("\n\n|")
        notes = (head if table_start else body).split("\n\n")
        kept = "\n\n".join(n for n in notes[1:] if n)
        sections[name] = "\n\n".join(
            part for part in (f"Last run: {when} on {machine}.", kept, table) if part
        )
    # Sections keep their place in the file; a first run's section goes last.
    body = "".join(f"\n## {n}\n\n{text}\n" for n, text in sections.items())
    out.write_text(HEADER + body)
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
