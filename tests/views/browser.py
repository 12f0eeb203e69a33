"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by selenium.

Nothing is downloaded: selenium is pointed at the system's chromedriver and browser
binary. Each browser gets an empty profile folder of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--window-size=1500,1000", "--disable-dev-shm-usage")


#: The README's screenshots. The browser tests take them on every run, but write them here
#: only with UPDATE_SCREENSHOTS=1, so that a test run leaves the checkout unchanged.
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def screenshot(browser: Any, name: str) -> Path:
    """Save the page as ``name`` (a PNG): in docs/images/ with UPDATE_SCREENSHOTS=1, else
    in the temporary folder. Returns where it went."""
    folder = DOCS_IMAGES if os.environ.get("UPDATE_SCREENSHOTS") == "1" else \
        Path(tempfile.gettempdir()) / "aoj-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(folder / name)), f"no screenshot {name}"
    return folder / name


def binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) from the system, or None when not installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium() -> Iterator[Any]:
    """A selenium WebDriver for a fresh headless Chromium; quit and profile removed after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = binaries()
    assert found, "chromium and chromedriver are needed (scripts/setup.sh installs them)"
    browser, driver_path = found
    profile = Path(tempfile.mkdtemp(prefix="aoj-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30,
             interval: float = 0.25) -> Any:
    """Poll ``probe()`` until truthy (exceptions count as not yet); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # an element not there yet, a stale one
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                         + (f" (last error: {last})" if last else ""))


def login(driver: Any, base_url: str, username: str, password: str) -> None:
    """Log in through Airflow's own login page (the simple auth manager's form)."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/")
    user = wait_for("the login form", lambda: driver.find_element(By.NAME, "username"))
    user.send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for("the logged-in UI", lambda: "/auth/login" not in driver.current_url
             and any(c["name"] == "_token" for c in driver.get_cookies()))
