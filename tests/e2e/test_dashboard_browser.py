"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, via selenium).

scripts/chromium installs both; without them these tests are skipped, saying so. Every test
saves a screenshot of the page it checked under build/screenshots/ (FLAME_SCREENSHOTS picks
another directory) for people to look at.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flame
from flame.testing import LocalCluster

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = os.environ.get("FLAME_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("FLAME_CHROMEDRIVER") or shutil.which("chromedriver")
SCREENSHOTS = Path(os.environ.get("FLAME_SCREENSHOTS") or Path(__file__).parents[2] / "build" / "screenshots")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromedriver are not installed (run scripts/chromium install)"
)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(executors=2, cluster={"dashboard": {"enabled": True, "port": 0}}) as local:
        yield local


@pytest.fixture(scope="module")
def url(cluster: LocalCluster) -> str:
    return str(cluster.run(lambda sm: sm.dashboard_url))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(browser: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, max(800, min(int(height) + 40, 1500)))
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    browser.set_window_size(1280, 1100)


def text(browser: Any, css: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def test_overview_lists_the_node_and_the_flmping_application(cluster: LocalCluster, url: str, browser: Any) -> None:
    node = cluster.run(lambda sm: next(iter(sm.controller.nodes)))
    browser.get(url)
    assert node in text(browser, "#nodes")
    assert "Ready" in text(browser, "#nodes")
    assert "flmping" in text(browser, "#applications")
    wait_until(lambda: "on" in browser.find_element(By.ID, "live").get_attribute("class"))  # events arrive
    screenshot(browser, "overview")


def test_a_running_session_s_progress_changes_without_a_reload(cluster: LocalCluster, url: str, browser: Any) -> None:
    with flame.connect(cluster.endpoint) as conn:
        session = conn.create_session("flmping")
        futures = [session.run(b'{"duration_ms": 4}') for _ in range(2000)]
        browser.get(f"{url}sessions/{session.id}")
        browser.execute_script("window.notReloaded = true")

        def succeed() -> int:
            return int(text(browser, '[data-live="session.counts.succeed"]'))

        first = wait_until(lambda: succeed() > 0 and succeed() < 2000 and succeed())
        second = wait_until(lambda: succeed() > first and succeed())
        label = text(browser, "[data-bar] .label")
        assert label.endswith("/2000") and int(label.split("/")[0]) >= second
        width = browser.execute_script("return document.querySelector('[data-bar] .seg.succeed').style.width")
        assert 0 < float(width.rstrip("%")) <= 100
        points = 'return Number(document.body.getAttribute("data-points"))'
        wait_until(lambda: browser.execute_script(points) >= 3 or succeed() == 2000)  # a chart worth a look
        screenshot(browser, "session-running")
        for future in futures:
            future.result(60)
        wait_until(lambda: succeed() == 2000)
        assert browser.execute_script("return window.notReloaded") is True
        screenshot(browser, "session")


def test_a_failed_task_shows_its_message_on_the_session_page(cluster: LocalCluster, url: str, browser: Any) -> None:
    with flame.connect(cluster.endpoint) as conn:
        session = conn.create_session("flmping")
        browser.get(f"{url}sessions/{session.id}")
        future = session.run(b'{"duration_ms": "soon"}')
        with pytest.raises(flame.TaskFailed):
            future.result(30)
        wait_until(lambda: "duration_ms must be a whole number" in text(browser, "#failures"))
        assert int(text(browser, '[data-live="session.counts.failed"]')) == 1
        screenshot(browser, "session-failure")
        browser.get(browser.execute_script("return document.querySelector(\"#failures a[href*='/tasks/']\").href"))
        events = text(browser, "#events")
        assert "task created" in events
        assert "running on executor" in events
        assert "duration_ms must be a whole number" in events
        screenshot(browser, "task")


def test_the_other_pages_render(cluster: LocalCluster, url: str, browser: Any) -> None:
    for name in ("applications", "executors", "nodes", "sessions"):
        browser.get(url + name)
        assert browser.find_element(By.TAG_NAME, "h1").text == name.capitalize()
        assert "Traceback" not in browser.page_source
        screenshot(browser, name)
    browser.get(url)  # with the sessions above behind it: charts and failures filled
    wait_until(lambda: browser.execute_script("return document.body.getAttribute('data-updated')"))
    assert "duration_ms must be a whole number" in text(browser, "#failures")
    screenshot(browser, "overview-later")
    browser.get(url + "sessions/no-such-session")
    assert "does not exist" in text(browser, ".error")
    screenshot(browser, "not-found")
