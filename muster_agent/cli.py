"""`muster-agent`: the render-node agent.

    muster-agent --dispatcher 127.0.0.1:50051 --instances 2

One process, one event loop, one gRPC channel; each instance is a node of
its own with its own stream. SIGTERM, SIGHUP or Ctrl-C stops running chunks
(reported KILLED), waits briefly for the dispatcher to record them, and
exits; a second signal exits at once. Every way out of the process (a second
signal, an error in the agent itself, a soft restart's exec) first kills
what is left of the chunks' process groups; a SIGKILL cannot be caught, and
the launcher (muster_agent/launch.py) kills them then.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

from muster_agent import VERSION
from muster_agent.config import AgentConfig, ConfigError, load
from muster_agent.discovery import discovery_address, listen
from muster_agent.runner import kill_live_groups
from muster_agent.session import Instance, Session
from muster_agent.state import StateStore, WorkDirBusy, lock_work_dir
from muster_agent.system import HostFacts, host_facts, release_free_memory
from muster_agent.templates import TemplateCode
from muster_gateway.tls import open_aio_channel

_LOG = logging.getLogger("muster-agent")

# How long a stop or a soft restart waits for the dispatcher to record the
# results of the chunks it killed; they are in the state file anyway.
SETTLE_SECONDS = 5.0
FLUSH_SECONDS = 2.0
FACTS_SECONDS = 60.0
# How often an agent started by `dispatcher run` checks that its parent lives.
PARENT_CHECK_SECONDS = 1.0
# How often the agent looks whether it went idle since it last gave back the
# memory it freed (after its start, after chunks: docs/agent.md, Memory).
TRIM_SECONDS = 5.0

# Each asks for a stop (a terminal closing sends SIGHUP); a second one exits at once.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# The channel reconnects on the same schedule as the sessions (0.2 s doubling
# to 10 s), so a session retry never waits on a slower channel backoff.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 10_000),
]


def restart_argv() -> list[str]:
    """The command line this process was started with, for execv
    (`python -m muster_agent ...` and the `muster-agent` script alike)."""
    original = getattr(sys, "orig_argv", None)  # Python 3.10 and newer
    if original is None:
        return [sys.executable, "-m", "muster_agent", *sys.argv[1:]]
    return [sys.executable, *original[1:]]


class Agent:
    """Every instance of this process, and what concerns them all: stopping
    and soft restarts (they share one process)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.state = StateStore(config.work_dir, config.dispatcher)
        # Template code fetched once per version for every instance, kept on disk.
        self.templates = TemplateCode(config.work_dir / "templates")
        self.instances = [
            Instance(n, config, self.state, self, self.templates) for n in range(config.instances)
        ]
        self.stopping = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._winding_down: asyncio.Task[None] | None = None
        self._facts: HostFacts | None = None
        self._facts_time = 0.0

    def request_stop(self) -> None:
        if self._stop_requested.is_set():
            _LOG.warning("second stop signal: exiting now")
            self.stopping.set()
        self._stop_requested.set()

    async def facts(self) -> HostFacts:
        # Read in the loop's thread, at most once a minute for all instances: a
        # worker thread for this would cost more memory than the agent's own
        # state, and the only slow part (a DNS lookup of the dispatcher) is
        # cached by the resolver in practice.
        now = time.monotonic()
        if self._facts is None or now - self._facts_time > FACTS_SECONDS:
            self._facts = host_facts(self.config.name, self.config.dispatcher)
            self._facts_time = now
        return self._facts

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.request_stop)
        channel = open_aio_channel(self.config.dispatcher, CHANNEL_OPTIONS)
        discovery = await listen(
            discovery_address(os.environ),
            self.config.name,
            self.config.instances,
            self.config.dispatcher,
            VERSION,
        )
        sessions = [
            asyncio.create_task(Session(i, channel, self.facts).run(self.stopping))
            for i in self.instances
        ]
        watch = (
            asyncio.create_task(self._watch_parent(self.config.parent_pid))
            if self.config.parent_pid
            else None
        )
        trim = asyncio.create_task(self._trim_when_idle())
        try:
            stop = asyncio.create_task(self._stop_requested.wait())
            await asyncio.wait([stop, *sessions], return_when=asyncio.FIRST_COMPLETED)
            _LOG.info("stopping")
            await self._wind_down("agent stopped")
        finally:
            self.stopping.set()
            end_live_groups("stopping")
            if watch is not None:
                watch.cancel()
            trim.cancel()
            await asyncio.gather(*sessions, return_exceptions=True)
            await channel.close(None)
            if discovery is not None:
                discovery.close()
            for instance in self.instances:
                instance.templates.close()
        return 0

    async def _watch_parent(self, pid: int) -> None:
        """Stop once the process that started this agent is gone (its local
        agents must not outlive a `dispatcher run` that was killed)."""
        while os.getppid() == pid:
            await asyncio.sleep(PARENT_CHECK_SECONDS)
        _LOG.warning("the process that started this agent (pid %d) is gone: stopping", pid)
        self.request_stop()

    async def _trim_when_idle(self) -> None:
        """Once no chunk runs, the memory freed since the start or since the
        last chunk goes back to the system; then nothing until chunks ran."""
        trimmed_after = -1  # chunks started when last trimmed; -1: not yet
        while True:
            await asyncio.sleep(TRIM_SECONDS)
            started = sum(i.chunks_started for i in self.instances)
            if started == trimmed_after or any(i.run is not None for i in self.instances):
                continue
            release_free_memory()
            trimmed_after = started

    async def _wind_down(self, message: str) -> None:
        """Kill every running chunk and wait (a little) until its result is recorded."""
        if self._winding_down is None:
            self._winding_down = asyncio.ensure_future(self._kill_and_settle(message))
        waiting = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait([self._winding_down, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()

    async def _kill_and_settle(self, message: str) -> None:
        for instance in self.instances:
            instance.closing = True
        await asyncio.gather(*(i.kill_running(message) for i in self.instances))
        settled = await asyncio.gather(*(i.wait_settled(SETTLE_SECONDS) for i in self.instances))
        if not all(settled):
            _LOG.warning("some results are not confirmed yet; they are re-sent on the next start")

    # --- AgentHooks -----------------------------------------------------------------------

    async def prepare_restart(self) -> None:
        await self._wind_down("agent soft restart")

    async def restart(self) -> None:
        await asyncio.gather(*(i.flush(FLUSH_SECONDS) for i in self.instances))
        argv = restart_argv()
        for instance in self.instances:
            instance.templates.close()
        end_live_groups("soft restart")
        _LOG.warning("soft restart: exec %s", " ".join(argv))
        logging.shutdown()
        os.execv(argv[0], argv)


def end_live_groups(why: str) -> None:
    """Kill the process groups of chunks still running (none after a clean stop)."""
    killed = kill_live_groups()
    if killed:
        _LOG.warning("%s: killed %d chunk process group(s) still running", why, killed)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load(argv)
    except ConfigError as exc:
        print(f"muster-agent: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    try:
        lock = lock_work_dir(config.work_dir)
    except (WorkDirBusy, OSError) as exc:
        print(f"muster-agent: {exc}", file=sys.stderr)
        return 2
    _LOG.info(
        "muster-agent %s: %d instance(s) named %s, dispatcher %s, work folder %s",
        VERSION,
        config.instances,
        config.name,
        config.dispatcher,
        config.work_dir,
    )
    try:
        return asyncio.run(Agent(config).run())
    finally:
        # An error in the agent itself ends here too: no chunk outlives it.
        end_live_groups("exiting")
        lock.close()
