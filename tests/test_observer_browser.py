"""otp.observer's web view in a real browser: Debian's chromium driven by
its chromedriver through selenium (no driver download).  The page shows
the supervision tree; a child SIGKILLed by the test reappears with a new
pid and a restart count, pushed by server-sent events, without a reload.

Skipped, saying why in the summary, only where chromium, chromedriver or
selenium is missing (``apt-get install chromium chromium-driver``)."""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from helpers import recv

import otp
import otp.observer as observer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 30.0

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None

pytestmark = [
    pytest.mark.skipif(webdriver is None, reason="selenium is not installed (pip install selenium)"),
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
    ),
]


class Worker(otp.GenServer):
    def init(self, start):
        return start


def pid_id(pid: otp.Pid) -> str:
    return f"{pid.ospid}-{pid.uid:016x}-{pid.start}"


@pytest.fixture
def browser(node):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_shows_a_restart_pushed_by_events_without_reloading(node, browser):
    otp.trap_exit(True)
    sup = otp.Supervisor.start_link([Worker.child_spec(None, id="worker")], intensity=5, period=60)
    otp.supervisor.subscribe(sup)
    server = observer.serve(roots=[sup])
    old = otp.supervisor.which_children(sup)[0].pid
    row = f'li[data-child-id="worker"][data-pid="{pid_id(old)}"]'

    browser.get(server.url)
    # The tree re-renders as events come: an element found a moment ago may
    # be gone (stale); every read is a wait that looks again.
    wait = WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException])
    wait.until(lambda d: d.find_element(By.ID, "live").text == "live")  # the event stream is open
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row + '[data-restarts="0"]'))
    browser.execute_script("window.observerTestMarker = 'same page';")

    os.kill(old.ospid, signal.SIGKILL)
    new = recv(lambda m: type(m) is tuple and m[:4] == ("$supervisor", sup, "started", "worker"))[4]

    restarted = f'li[data-child-id="worker"][data-pid="{pid_id(new)}"][data-restarts="1"]'
    wait.until(lambda d: "last exit: 'killed'" in d.find_element(By.CSS_SELECTOR, restarted).text)
    assert browser.execute_script("return window.observerTestMarker;") == "same page"

    server.stop()
    otp.unlink(sup)
    otp.exit(sup, "shutdown")


def test_mabeam_panel_renders_agents_and_charts(node, browser):
    from mabeam_agents import EchoAgent

    import mabeam
    import mabeam._observe as mabeam_observe

    otp.trap_exit(True)
    app = mabeam.start()
    try:
        for agent_id in ("scout-1", "scout-2"):
            mabeam.register_agent(mabeam.AgentConfig(agent_id, EchoAgent, capabilities={"maps"}))
            mabeam.start_agent(agent_id)
        server = mabeam_observe.observe()
        browser.get(server.url)
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
        tab = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'button[data-tab="panel:MABEAM"]'))
        tab[0].click()
        agents = '[data-table="Agents"] tbody tr'
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, agents)) == 2)
        text = browser.find_element(By.CSS_SELECTOR, '[data-table="Agents"]').text
        assert "scout-1" in text and "echo, maps" in text and "running" in text
        # the panel refreshes on each round (1 Hz): a chart gets its second point and a line
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-series="agents running"] svg polyline'))
        if os.environ.get("OBSERVER_SCREENSHOT"):  # how docs/observer-mabeam.png is made
            browser.set_window_size(1400, 1000)
            browser.save_screenshot(os.environ["OBSERVER_SCREENSHOT"])
        server.stop()
    finally:
        mabeam.stop(app)
