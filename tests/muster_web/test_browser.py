"""The dashboard end to end in Debian's headless Chromium: log in, submit a
job through the dev stack, watch it complete on the page without reloading,
open a chunk's log, pause a node. Screenshots of the main pages are kept as
test artefacts in .data/test-artifacts/screenshots/ (MUSTER_TEST_ARTIFACTS
names another folder); with MUSTER_UPDATE_SCREENSHOTS=1 they also replace the
ones in docs/images/ that the README shows."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from muster_proto.admin.v1 import admin_pb2, admin_pb2_grpc
from muster_proto.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from muster_proto.nodes.v1 import nodes_pb2, nodes_pb2_grpc
from tests.e2e.test_render import eventually, shell_job
from tests.muster_web.browser import browser_missing, chromium
from tests.muster_web.conftest import Stack

pytestmark = [pytest.mark.database, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _screenshots() -> Path:
    folder = (
        Path(os.environ.get("MUSTER_TEST_ARTIFACTS") or ROOT / ".data" / "test-artifacts")
        / "screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


IMAGES = _screenshots()


def _publish() -> None:
    """Copy the screenshots over the README's (MUSTER_UPDATE_SCREENSHOTS=1)."""
    if os.environ.get("MUSTER_UPDATE_SCREENSHOTS") == "1":
        for image in IMAGES.glob("dashboard-*.png"):
            shutil.copyfile(image, ROOT / "docs" / "images" / image.name)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def wait(
    driver: WebDriver, check: Callable[[WebDriver], Any], what: str, timeout: float = 60
) -> Any:
    def safe(d: WebDriver) -> Any:
        try:
            return check(d)
        except StaleElementReferenceException:
            return False  # the row was redrawn by a live update: look again

    return WebDriverWait(driver, timeout, 0.2).until(safe, f"timed out waiting for {what}")


def text_of(driver: WebDriver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def test_log_in_watch_a_job_complete_read_a_chunk_log_and_pause_a_node(
    stack: Stack, browser: WebDriver
) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with stack.process.channel() as channel:
        jobs = jobs_pb2_grpc.JobsServiceStub(channel)
        nodes = nodes_pb2_grpc.NodesServiceStub(channel)
        sample_every_five_seconds(channel)
        [node] = eventually(
            lambda: [
                n
                for n in nodes.ListNodes(nodes_pb2.ListNodesRequest()).nodes
                if n.status == nodes_pb2.NODE_STATUS_IDLE
            ],
            what="the local agent idle",
        )

        browser.get(stack.url)
        wait(browser, lambda d: d.find_element(By.ID, "login-user").is_displayed(), "login form")
        browser.find_element(By.ID, "login-user").send_keys(stack.user)
        browser.find_element(By.ID, "login-password").send_keys("wrong")
        browser.find_element(By.ID, "login-submit").click()
        wait(browser, lambda d: text_of(d, "#login-error"), "the refusal")
        browser.find_element(By.ID, "login-password").clear()
        browser.find_element(By.ID, "login-password").send_keys(stack.password)
        browser.find_element(By.ID, "login-submit").click()
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr"), "job list")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#live.on"), "live updates")
        # Set once: still there at the end means the page never reloaded.
        browser.execute_script("window.sameLoad = 'yes'")

        job = shell_job("dashboard frames", 4, 2, "sleep 0.5; echo frame $f rendered")
        job_id = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(job=job)).job_id
        row = f'#jobs tr[data-id="{job_id}"]'
        wait(browser, lambda d: "completed" in text_of(d, f"{row} td.status"), "completed", 90)
        assert "100%" in text_of(browser, f"{row} td.progress")
        assert browser.execute_script("return window.sameLoad") == "yes"
        browser.save_screenshot(str(IMAGES / "dashboard-jobs.png"))

        browser.find_element(By.CSS_SELECTOR, f"{row} td.name a").click()
        wait(browser, lambda d: "completed" in text_of(d, "#job-status"), "job page")
        wait(
            browser,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chunks tbody tr")) == 2,
            "chunks",
        )
        browser.find_element(By.CSS_SELECTOR, '#chunks tr[data-id="1"] .chunk-log').click()
        wait(browser, lambda d: "succeeded" in text_of(d, "#chunk-history tbody"), "history")
        assert node.name in text_of(browser, "#chunk-history tbody")
        browser.save_screenshot(str(IMAGES / "dashboard-job.png"))

        browser.find_element(By.CSS_SELECTOR, 'nav a[data-page="nodes"]').click()
        node_row = f'#nodes tr[data-id="{node.id}"]'
        wait(browser, lambda d: node.name in text_of(d, node_row), "nodes page")
        browser.find_element(By.CSS_SELECTOR, f"{node_row} .node-pause").click()
        wait(browser, lambda d: "paused" in text_of(d, f"{node_row} td.status"), "node paused")
        assert nodes.GetNode(nodes_pb2.GetNodeRequest(node_id=node.id)).node.paused
        browser.save_screenshot(str(IMAGES / "dashboard-nodes.png"))

        admin = admin_pb2_grpc.AdminServiceStub(channel)
        eventually(
            lambda: (
                len(admin.ListStatisticsSamples(admin_pb2.ListStatisticsSamplesRequest()).samples)
                >= 3
            ),
            what="three statistics samples",
        )
        browser.find_element(By.CSS_SELECTOR, 'nav a[data-page="stats"]').click()
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#stats svg polyline"), "charts")
        browser.save_screenshot(str(IMAGES / "dashboard-stats.png"))
        assert browser.execute_script("return window.sameLoad") == "yes"

        # The chunk's render log (JobsService.GetChunkLog): its lines, numbered.
        browser.get(f"{stack.url}#/job/{job_id}")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#chunks tbody tr"), "chunks")
        browser.find_element(By.CSS_SELECTOR, '#chunks tr[data-id="1"] .chunk-log').click()
        wait(browser, lambda d: "frame 2 rendered" in text_of(d, "#log"), "the chunk's log")
        assert "frame 1 rendered" in text_of(browser, "#log")
        browser.save_screenshot(str(IMAGES / "dashboard-job.png"))
        _publish()


def sample_every_five_seconds(channel: grpc.Channel) -> None:
    """Statistics samples every 5 s (the least allowed), so the charts have points."""
    request = admin_pb2.UpdateDispatcherConfigurationRequest(
        configuration=admin_pb2.DispatcherConfiguration(statistics_sample_interval_seconds=5)
    )
    request.update_mask.paths.append("statistics_sample_interval_seconds")
    admin_pb2_grpc.AdminServiceStub(channel).UpdateDispatcherConfiguration(request)
