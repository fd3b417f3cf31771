"""The systemd unit and environment file of an installed agent.

`muster-agent --print-systemd-unit` prints deploy/systemd/muster-agent.service
(shipped in the render-node wheel as muster_agent/systemd/) with `ExecStart`
naming the agent this command belongs to, so that the unit starts the agent of
this installation whatever its virtual environment's path.
`--print-systemd-env` prints the environment file to edit (agent.env.example).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
UNIT = "muster-agent.service"
ENV_EXAMPLE = "agent.env.example"


def _source(name: str) -> Path:
    """The packaged file, or the repository's in a development checkout."""
    packaged = _HERE / "systemd" / name
    return packaged if packaged.exists() else _HERE.parent / "deploy" / "systemd" / name


def exec_start(argv0: str | None = None, executable: str | None = None) -> str:
    """How systemd starts this installation's agent: its `muster-agent` script
    when that is what runs, otherwise this interpreter with `-m muster_agent`."""
    script = Path(argv0 if argv0 is not None else sys.argv[0])
    if script.name == "muster-agent":
        return str(script.absolute())
    return f"{Path(executable or sys.executable).absolute()} -m muster_agent"


def unit_text(argv0: str | None = None, executable: str | None = None) -> str:
    text = _source(UNIT).read_text()
    command = exec_start(argv0, executable)
    return re.sub(r"^ExecStart=.*$", lambda _: f"ExecStart={command}", text, count=1, flags=re.M)


def env_text() -> str:
    return _source(ENV_EXAMPLE).read_text()
