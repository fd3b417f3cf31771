"""Template code on the node: fetched once per version, cached, run in the host.

An assignment naming a template version is built by that version's code.
The agent asks the dispatcher for the code (AgentService.GetTemplateSource)
the first time it meets a version, keeps it in memory and in its work folder
(a restarted agent does not ask again), and loads it into the instance's
template host (muster_agent/template_host.py). A template file that changes has a
new version: the next chunk fetches it, a running chunk keeps its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from muster_agent.template_host import Source, Started, TemplateHost, Verdict, platform_name
from muster_proto.agent.v1 import agent_pb2

_LOG = logging.getLogger("muster-agent")

Fetch = Callable[[int, str], Awaitable[agent_pb2.GetTemplateSourceResponse]]
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class TemplateCode:
    """Every template version this agent has met: memory, then the work
    folder, then the dispatcher. Shared by the agent's instances."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sources: dict[tuple[int, str], Source] = {}
        self._fetching: dict[tuple[int, str], asyncio.Future[Source]] = {}
        # How many times the dispatcher was asked (tests, logs).
        self.fetches = 0

    def _path(self, template_id: int, version: str) -> Path:
        name = version if _SAFE.match(version) else hashlib.sha256(version.encode()).hexdigest()
        return self.folder / f"{template_id}-{name}.json"

    async def get(self, template_id: int, version: str, fetch: Fetch | None) -> Source:
        key = (template_id, version)
        known = self._sources.get(key) or self._read(template_id, version)
        if known is not None:
            self._sources[key] = known
            return known
        if fetch is None:
            raise ConnectionError("not connected to the dispatcher: no template code")
        waiting = self._fetching.get(key)
        if waiting is None:  # one fetch however many instances ask at once
            waiting = asyncio.ensure_future(self._fetch(template_id, version, fetch))
            self._fetching[key] = waiting
            waiting.add_done_callback(lambda _: self._fetching.pop(key, None))
        return await asyncio.shield(waiting)

    async def _fetch(self, template_id: int, version: str, fetch: Fetch) -> Source:
        self.fetches += 1
        answer = await fetch(template_id, version)
        source = Source(template_id, version, answer.source, answer.file_name or f"{template_id}")
        self._sources[(template_id, version)] = source
        _LOG.info("fetched template %d version %s (%s)", template_id, version, source.file_name)
        self._write(source)
        return source

    def _read(self, template_id: int, version: str) -> Source | None:
        path = self._path(template_id, version)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("template_id") != template_id or data.get("version") != version:
                return None
            return Source(template_id, version, str(data["source"]), str(data["file_name"]))
        except (OSError, ValueError, KeyError, AttributeError):
            return None

    def _write(self, source: Source) -> None:
        path = self._path(source.template_id, source.version)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.write_text(
                json.dumps(
                    {
                        "template_id": source.template_id,
                        "version": source.version,
                        "source": source.source,
                        "file_name": source.file_name,
                    }
                ),
                encoding="utf-8",
            )
            partial.replace(path)
        except OSError as exc:  # the memory copy still serves
            _LOG.warning("cannot cache template %d on disk: %s", source.template_id, exc)


class TemplateRunner:
    """One instance's way to run template callbacks: its host process, the
    shared code cache, this node's preferences and platform."""

    def __init__(
        self,
        code: TemplateCode,
        preferences: Mapping[int, Mapping[str, str]],
        instance: int,
        timeout: float,
    ) -> None:
        self.code = code
        self.preferences = preferences
        self.instance = instance
        self.platform = platform_name()
        self.host = TemplateHost(timeout=timeout)
        # Set by the session once enrolled: asks the dispatcher for a version.
        self.fetch: Fetch | None = None

    async def begin(self, assignment: agent_pb2.Assignment) -> Started:
        """Load the assignment's template version (fetching it the first time)
        and build its command; raises TemplateFailed, or OSError/grpc errors
        when the code cannot be had."""
        template_id, version = assignment.template_id, assignment.template_version
        if not self.host.loaded(template_id, version):
            source = await self.code.get(template_id, version, self.fetch)
            await asyncio.to_thread(self.host.load, source)
        return await asyncio.to_thread(
            self.host.begin,
            assignment.fencing_token,
            template_id,
            version,
            self.platform,
            assignment.job.SerializeToString(),
            assignment.chunk.SerializeToString(),
            [
                self.preferences.get(template_id, {}),
                dict(assignment.template_preferences),
            ],
            self.instance,
            # The job's variables (the agent's own go under them at the start).
            {**dict(assignment.job.environment), **dict(assignment.environment)},
        )

    async def check(self, run: int, text: str) -> Verdict | None:
        return await asyncio.to_thread(self.host.check, run, text)

    async def end(self, run: int, log: str, exit_code: int, logs_check: int) -> Verdict:
        return await asyncio.to_thread(self.host.end, run, log, exit_code, logs_check)

    async def forget(self, run: int) -> None:
        await asyncio.to_thread(self.host.forget, run)

    async def message(self, template_id: int, message: str) -> bool:
        return await asyncio.to_thread(self.host.message, template_id, message)

    def close(self) -> None:
        self.host.close()
