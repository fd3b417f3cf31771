"""A stand-in for a renderer's executable: prints the log lines a test gives
it and ends the way the test says, as a real process.

The plan comes from the environment (FAKE_RENDERER_PLAN, JSON):
{"lines": [...], "end": "\\n" (or "\\r" for redrawn status lines),
 "stderr": [...], "exit": 0, "crash": false}. "crash" ends the process with
SIGSEGV (no core file). The arguments it got are written, one JSON list,
to FAKE_RENDERER_ARGV when that is set.
"""

import json
import os
import resource
import signal
import sys


def main() -> int:
    plan = json.loads(os.environ.get("FAKE_RENDERER_PLAN", "{}"))
    record = os.environ.get("FAKE_RENDERER_ARGV")
    if record:
        with open(record, "w", encoding="utf-8") as handle:
            json.dump(sys.argv[1:], handle)
    end = plan.get("end", "\n")
    for line in plan.get("lines", []):
        sys.stdout.write(line + end)
        sys.stdout.flush()
    for line in plan.get("stderr", []):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    if plan.get("crash"):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.kill(os.getpid(), signal.SIGSEGV)
    return int(plan.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
