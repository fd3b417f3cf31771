"""`python -m bench.soak --minutes 3 [--seed N]`: run the chaos soak, print
its timeline and the checker's table; exit 1 when an invariant fails."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
from pathlib import Path

from bench.soak.farm import ROOT
from bench.soak.run import FAULT_KINDS, check_again, soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0, help="feeding and faults (3)")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (printed; random)")
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--lost-timeout", type=float, default=6.0, help="node lost timeout (6 s)")
    parser.add_argument(
        "--drain",
        type=float,
        default=180.0,
        help="after the faults, fail when no job finished for this long, seconds (180)",
    )
    parser.add_argument(
        "--folder", default=str(ROOT / ".data" / "soak"), help="work folder (emptied first)"
    )
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help="comma-separated fault kinds to draw from (all: %(default)s)",
    )
    parser.add_argument(
        "--gap", type=float, nargs=2, default=(4.0, 14.0), help="seconds between faults (4 14)"
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="run no soak: check the last one left in --folder again",
    )
    args = parser.parse_args(argv)
    external = os.environ.get("MUSTER_DATABASE_URL", "").strip()
    if args.check_only:
        again = check_again(Path(args.folder).absolute(), external)
        print(again.table(), flush=True)
        return 0 if again.ok else 1
    kinds = tuple(k for k in args.faults.split(",") if k)
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown or not kinds:
        parser.error(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    print(f"soak: seed {seed}, {args.minutes:g} minutes (rerun: --seed {seed})", flush=True)
    folder = os.path.abspath(args.folder)
    shutil.rmtree(os.path.join(folder, "frames"), ignore_errors=True)
    shutil.rmtree(os.path.join(folder, "logs"), ignore_errors=True)
    shutil.rmtree(os.path.join(folder, "agents"), ignore_errors=True)
    outcome = soak(
        Path(folder),
        args.minutes,
        seed,
        external_url=external,
        agents=args.agents,
        instances=args.instances,
        lost_timeout=args.lost_timeout,
        drain_seconds=args.drain,
        fault_gap=(args.gap[0], args.gap[1]),
        faults=kinds,
    )
    print(outcome.table(), flush=True)
    print(f"soak: seed {seed}", flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
