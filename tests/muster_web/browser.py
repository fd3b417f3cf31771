"""Debian's headless Chromium driven by Selenium through Debian's chromedriver
(no Selenium Manager download: farms and CI machines are offline)."""

from __future__ import annotations

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.debian import BROWSER_COMMANDS, BROWSER_PACKAGES, ensure_packages, find_command

CHROMEDRIVER = "/usr/bin/chromedriver"


def browser_missing() -> str:
    """'' when Chromium and chromedriver are there (installed now if need be),
    else why not."""
    return ensure_packages(BROWSER_PACKAGES, commands=BROWSER_COMMANDS)


def chromium(width: int = 1400, height: int = 900) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.binary_location = find_command("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
