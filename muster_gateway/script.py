"""`muster-script FILE [ARGS...]`: run a console script in the dispatcher context.

Muster's first execution context is "a console script that targets the
dispatcher": inside it `muster.runningContext()` is "dispatcher" and
`import MDispatcherAPI` reaches the dispatcher with the usual connection
settings (MUSTER_DISPATCHER, the client file `make run` writes, MUSTER_USER).
The script runs as `__main__` with `sys.argv` = [FILE, ARGS...], its folder
first on `sys.path`, exactly as `python FILE ARGS...` would run it. The exit
code is the script's (`sys.exit(n)`), 1 when it raises, 2 for a bad command line.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from pathlib import Path

from muster_gateway.context import CONTEXT_VARIABLE

USAGE = "usage: muster-script FILE [ARGS...]  (runs FILE in the dispatcher context)"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not args else sys.stdout)
        return 2 if not args else 0
    script = Path(args[0])
    if not script.is_file():
        print(f"muster-script: {script}: no such file", file=sys.stderr)
        return 2
    os.environ[CONTEXT_VARIABLE] = "dispatcher"
    sys.argv = [str(script), *args[1:]]
    sys.path.insert(0, str(script.resolve().parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def run() -> None:
    """The console entry point."""
    sys.exit(main())
