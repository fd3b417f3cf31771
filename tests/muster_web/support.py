"""A browser-less client of the dashboard: its JSON API with a cookie jar,
and its server-sent events read line by line."""

from __future__ import annotations

import http.cookiejar
import json
import queue
import threading
import urllib.error
import urllib.request
from typing import Any


class WebClient:
    """One browser's session with the dashboard at `url`."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def call(
        self, method: str, path: str, body: Any = None, from_page: bool = True
    ) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body)."""
        headers = {"x-muster-web": "1"} if from_page else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with self.opener.open(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def login(self, user: str, password: str) -> tuple[int, Any]:
        return self.call("POST", "/api/login", {"user": user, "password": password})

    def cookie(self, name: str) -> http.cookiejar.Cookie | None:
        return next((c for c in self.cookies if c.name == name), None)

    def events(self, path: str = "/api/events") -> EventStream:
        return EventStream(self, path)


class EventStream:
    """Server-sent events of one stream, gathered by a thread."""

    def __init__(self, client: WebClient, path: str) -> None:
        request = urllib.request.Request(client.url + path)
        self.reply = client.opener.open(request, timeout=60)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        kind = "message"
        try:
            for raw in self.reply:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    self.events.put((kind, json.loads(line[5:].strip())))
                elif not line:
                    kind = "message"
        except (OSError, ValueError, AttributeError):
            pass  # closed (http.client drops its file on close, under the reader)

    def next(self, kind: str, timeout: float = 20) -> Any:
        """The data of the next event of this kind (earlier others skipped)."""
        while True:
            got, data = self.events.get(timeout=timeout)
            if got == kind:
                return data

    def close(self) -> None:
        self.reply.close()
