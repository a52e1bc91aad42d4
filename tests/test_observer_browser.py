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
    wait = WebDriverWait(browser, WAIT)
    wait.until(lambda d: d.find_element(By.ID, "live").text == "live")  # the event stream is open
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    assert browser.find_element(By.CSS_SELECTOR, row).get_attribute("data-restarts") == "0"
    browser.execute_script("window.observerTestMarker = 'same page';")

    os.kill(old.ospid, signal.SIGKILL)
    new = recv(lambda m: type(m) is tuple and m[:4] == ("$supervisor", sup, "started", "worker"))[4]

    restarted = f'li[data-child-id="worker"][data-pid="{pid_id(new)}"][data-restarts="1"]'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, restarted))
    assert "last exit: 'killed'" in browser.find_element(By.CSS_SELECTOR, restarted).text
    assert browser.execute_script("return window.observerTestMarker;") == "same page"

    server.stop()
    otp.unlink(sup)
    otp.exit(sup, "shutdown")
