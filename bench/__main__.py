"""Run the registered benchmarks, print their figures, write docs/benchmarks.md.

Each benchmark returns rows of (what, our figure, peer figure measured in the
same run, unit). Figures are medians of repeated runs: machines are noisy.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import BENCHMARKS, Row

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


def main() -> int:
    # Every module of bench/ registers its benchmarks when imported.
    for module in sorted(p.stem for p in Path(__file__).parent.glob("*.py")):
        if module not in ("__init__", "__main__", "common"):
            importlib.import_module(f"bench.{module}")

    # `python -m bench facade jobs`: only the benchmarks whose name has one of the words.
    wanted = [w.lower() for w in sys.argv[1:]]
    rows: list[Row] = []
    for name, bench in BENCHMARKS.items():
        if wanted and not any(w in name.lower() for w in wanted):
            continue
        started = time.perf_counter()
        print(f"running {name} ...", flush=True)
        rows.extend(bench())
        print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    if not rows:
        text = "No benchmarks are registered yet; later issues add them to bench/.\n"
    else:
        text = _table(rows) + "\n"
    print(text)
    if wanted:
        print("a selection ran: docs/benchmarks.md is written by a full `make bench` only")
        return 0
    out = ROOT / "docs" / "benchmarks.md"
    out.write_text(
        "# Benchmarks\n\n"
        "Written by `make bench` (bench/__main__.py). Figures are medians of repeated runs on "
        "the machine named below; each row's peer figure was measured in the same run.\n\n"
        f"Last run: {when} on {machine}.\n\n" + text
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
