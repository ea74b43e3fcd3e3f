"""The operator's page in a real headless Chromium (Debian's chromium and chromium-driver, driven
by Selenium) against the real Procfile processes: log in, see a delivered, a retrying and a dead
task with their reasons, replay a dead letter once the target recovers and see it delivered,
discard another; a wrong password is 401 and a POST without the CSRF token is refused; no
secret in any page. The run takes screenshots under .pytest-tmp/ (the tracked tree stays as it
was); `make screenshots` (UI_SCREENSHOTS_DIR=docs) retakes the README's docs/ui-overview.png and
docs/ui-task.png.

The browser comes from the system: when it is missing, the test installs it with apt-get (as
root) or skips, saying why.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from relay.dev import ROOT
from tests.conftest import TOKEN
from tests.support import Procfile, Receiver, Reply, log_entries

USER, PASSWORD = "ops", "dashboard-PASSWORD-secret"
HOOK_SECRET = "WEBHOOKsecretPATH123"
DOCS = ROOT / "docs"
# Where this run's screenshots go: docs/ only when asked (make screenshots).
SHOTS = ROOT / os.environ.get("UI_SCREENSHOTS_DIR", ".pytest-tmp/screenshots")


def chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages when missing (as root)."""
    found = (shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver"))
    if all(found):
        return found  # type: ignore[return-value]
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium/chromedriver on PATH, and not root to apt-get install chromium chromium-driver")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT, "timeout": 900}
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, **quiet)
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], env=env, check=False, **quiet
    )
    found = (shutil.which("chromium"), shutil.which("chromedriver"))
    if done.returncode or not all(found):
        pytest.skip("apt-get could not install chromium and chromium-driver")
    return found  # type: ignore[return-value]


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator:
    binary, driver_path = chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,900", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver, password: str = PASSWORD) -> None:
    """HTTP basic auth, sent with every request the browser makes."""
    credentials = base64.b64encode(f"{USER}:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credentials}"}})


def callback(processes: Procfile, task_id: str) -> None:
    payload = {"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": task_id,
               "data": [{"status": "complete", "title": f"Song {task_id}", "text": "[Verse]\nla la"}]}}  # fmt: skip
    response = requests.post(
        f"{processes.base_url}/callbacks/suno/lyrics", params={"token": TOKEN}, json=payload, timeout=10
    )
    assert response.json()["status"] == "received"


def wait_until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_the_operator_page(browser, redis_url, redis_conn, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    recovered = {"yes": False}

    def hook(receiver: Receiver) -> Reply | None:
        body = receiver.current.body.decode()
        if "retry-task" in body:
            return Reply(503, "temporarily down")
        if "dead-task" in body and not recovered["yes"]:
            return Reply(422, '{"error": "bad body", "path": "/hook/' + HOOK_SECRET + '"}')
        return Reply(200, "ok")

    webhook = Receiver()
    webhook.rule = hook
    env = {
        "REDIS_URL": redis_url,
        "RELAY_CALLBACK_TOKEN": TOKEN,
        "RELAY_WEBHOOK_URL": webhook.url.replace("/hook", f"/hook/{HOOK_SECRET}") + "#rate=1000/1s",
        "RELAY_DASHBOARD_USER": USER,
        "RELAY_DASHBOARD_PASSWORD": PASSWORD,
        "RELAY_BACKOFF": "10m",
        "RELAY_ACCESS_LOG": "0",
    }
    processes = Procfile(env, tmp_path)
    try:
        processes.start("web")
        processes.start("worker")
        for task_id in ("ok-task", "retry-task", "dead-task-a", "dead-task-b"):
            callback(processes, task_id)
        wait_until(lambda: len(webhook.attempts) >= 4)
        time.sleep(0.5)
        base = processes.base_url

        # Wrong password: 401, for the page and the RQ dashboard alike; no secret in the answer.
        wrong = requests.get(f"{base}/ui", auth=(USER, "wrong"), timeout=5)
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(f"{base}/rq", auth=(USER, "wrong"), timeout=5).status_code == 401
        # A POST without the CSRF token is refused, even with the right password.
        forged = requests.post(f"{base}/ui/discard", auth=(USER, PASSWORD), data={"all": "1"}, timeout=5)
        assert forged.status_code == 403 and "CSRF" in forged.json()["error"]

        log_in(browser)
        pages = []
        browser.get(f"{base}/ui")
        assert "Overview" in browser.title
        pages.append(browser.page_source)
        overview = browser.find_element(By.TAG_NAME, "main").text
        # The target's last failure and its reason: the 422 or the 503, whichever settled last (a
        # burst's deliveries run side by side).
        assert "webhook" in overview and ("HTTP 422" in overview or "HTTP 503" in overview)
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / "ui-overview.png"))

        browser.get(f"{base}/ui/tasks")
        pages.append(browser.page_source)
        rows = {
            row.find_elements(By.TAG_NAME, "td")[0].text: row.text
            for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr")
        }
        assert "delivered" in rows["ok-task"] and "retrying" in rows["retry-task"] and "dead" in rows["dead-task-a"]
        browser.get(f"{base}/ui/tasks?state=dead")
        shown = [
            row.find_elements(By.TAG_NAME, "td")[0].text for row in browser.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        assert sorted(shown) == ["dead-task-a", "dead-task-b"]

        browser.get(f"{base}/ui/tasks/retry-task")
        pages.append(browser.page_source)
        text = browser.find_element(By.TAG_NAME, "main").text
        assert "retrying" in text and "HTTP 503" in text and "next try" in text and "received by callback" in text

        browser.get(f"{base}/ui/tasks/dead-task-a")
        pages.append(browser.page_source)
        text = browser.find_element(By.TAG_NAME, "main").text
        assert "dead" in text and "HTTP 422" in text
        browser.save_screenshot(str(SHOTS / "ui-task.png"))

        # Replay the dead letter once the target has recovered, and see it delivered.
        recovered["yes"] = True
        browser.get(f"{base}/ui/dead")
        pages.append(browser.page_source)
        browser.find_element(By.CSS_SELECTOR, 'form[action$="/ui/replay"] button[data-task="dead-task-a"]').click()
        wait_until(lambda: "Queued for delivery again." in browser.page_source)
        wait_until(lambda: any("dead-task-a" in entry.body.decode() for entry in webhook.received))
        browser.get(f"{base}/ui/tasks/dead-task-a")

        def delivered_shown() -> bool:
            browser.refresh()
            return "✓ delivered" in browser.page_source

        wait_until(delivered_shown)
        # Discard the other one.
        browser.get(f"{base}/ui/dead")
        browser.find_element(By.CSS_SELECTOR, 'form[action$="/ui/discard"] button[data-task="dead-task-b"]').click()
        wait_until(lambda: "Dead letters discarded." in browser.page_source)
        assert "dead-task-b" not in browser.find_element(By.TAG_NAME, "tbody").text

        for html in pages:
            for secret in (HOOK_SECRET, TOKEN, PASSWORD, webhook.url):
                assert secret not in html
        actions = {(entry.get("action"), entry.get("user")) for entry in log_entries(processes.logs())}
        assert {("replay", "ops"), ("discard", "ops")} <= actions
    finally:
        processes.stop()
        webhook.close()


def test_the_page_is_off_without_credentials(make_settings, redis_conn) -> None:
    from relay import create_app

    client = create_app(make_settings()).test_client()
    response = client.get("/ui")
    assert response.status_code == 404 and "RELAY_DASHBOARD_USER" in response.get_json()["error"]


def test_screenshots_are_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/ui-overview.png" in readme and "docs/ui-task.png" in readme
    operating = (ROOT / "docs" / "operating.md").read_text()
    assert "(ui-overview.png)" in operating and "(ui-task.png)" in operating
    assert all((DOCS / name).exists() for name in ("ui-overview.png", "ui-task.png"))  # committed with the code
