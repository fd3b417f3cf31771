"""The dashboard's job list with 10,000 jobs and 2,000 nodes, in Debian's
headless Chromium.

Ours: a fresh load of the page (`/#/jobs`, logged in) until the first paint
(the browser's first-contentful-paint) and until the job rows are in the page
(the script's `window.firstRows`), and the same for the nodes page; medians of
several loads. Peer, in the same run: the JSON API call the page makes for its
rows (`GET /api/jobs`, `GET /api/nodes`) alone, from Python: what the rows cost
without a browser. Target: first paint under 1 s.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Callable

from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import text

from bench.common import BENCHMARKS, Row, bench_database, bench_token, dispatcher_process
from bench.jobs import LISTED_JOBS as JOBS
from bench.jobs import _seed_jobs
from muster_services.core.database import Database
from muster_web.server import WebServer
from muster_web.settings import WebSettings
from tests.muster_web.browser import browser_missing, chromium

NODES = 2_000
LOADS = 7


def _seed(db: Database) -> None:
    _seed_jobs(db)  # the jobs bench's 10,000 queued jobs
    with db.transaction() as session:
        session.execute(
            text(
                "INSERT INTO nodes (name, host_name, platform, status, session_id,"
                " last_heartbeat_at) SELECT 'node-' || g, 'node-' || g, 'linux', 'idle',"
                " 'live', now() FROM generate_series(1, :n) g"
            ),
            {"n": NODES},
        )


def _page_load(driver: WebDriver, url: str) -> tuple[float, float]:
    """(first paint, rows in the page), ms since the navigation started."""
    driver.get("about:blank")
    driver.get(url)
    WebDriverWait(driver, 30, 0.01).until(
        lambda d: d.execute_script("return window.firstRows || 0") > 0
    )
    paint = driver.execute_script(
        "const e = performance.getEntriesByName('first-contentful-paint')[0];"
        " return e ? e.startTime : 0"
    )
    return float(paint), float(driver.execute_script("return window.firstRows"))


def _api_ms(url: str, token: str) -> float:
    request = urllib.request.Request(url, headers={"cookie": f"muster_session={token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as reply:
        rows = json.loads(reply.read())
    elapsed = (time.perf_counter() - started) * 1000
    assert rows.get("jobs") or rows.get("nodes"), rows
    return elapsed


def _median(work: Callable[[], float]) -> float:
    return statistics.median(work() for _ in range(LOADS))


def run() -> list[Row]:
    reason = browser_missing()
    if reason:
        raise RuntimeError(f"the dashboard bench needs Chromium: {reason}")
    with (
        bench_database("bench_dashboard") as db,
        dispatcher_process(db, ["jobs", "nodes", "admin"]) as (address, _),
    ):
        _seed(db)
        token = bench_token(db)
        web = WebServer(WebSettings(listen="127.0.0.1:0"), address)
        web.start()
        driver = chromium()
        try:
            driver.get(web.url + "static/app.css")
            driver.add_cookie({"name": "muster_session", "value": token, "httpOnly": True})
            driver.add_cookie({"name": "muster_user", "value": "bench"})
            _page_load(driver, web.url + "#/jobs")  # warm up: caches, connections
            jobs = [_page_load(driver, web.url + "#/jobs") for _ in range(LOADS)]
            nodes = [_page_load(driver, web.url + "#/nodes") for _ in range(LOADS)]
            jobs_api = _median(lambda: _api_ms(web.url + "api/jobs?parent=-1", token))
            nodes_api = _median(lambda: _api_ms(web.url + "api/nodes", token))
        finally:
            driver.quit()
            web.stop()
    return [
        Row(
            f"job list, {JOBS:,} jobs: first paint in headless Chromium",
            statistics.median(p for p, _ in jobs),
            jobs_api,
            "GET /api/jobs alone (the page's rows, no browser)",
            "ms",
        ),
        Row(
            f"job list, {JOBS:,} jobs: first 100 rows in the page",
            statistics.median(r for _, r in jobs),
            jobs_api,
            "GET /api/jobs alone (the page's rows, no browser)",
            "ms",
        ),
        Row(
            f"node list, {NODES:,} nodes: first 100 rows in the page",
            statistics.median(r for _, r in nodes),
            nodes_api,
            "GET /api/nodes alone (the page's rows, no browser)",
            "ms",
        ),
    ]


BENCHMARKS["dashboard"] = run
