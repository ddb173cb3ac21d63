"""The operator console in a real browser (headless Chromium) against the real stack, with
API keys on: log in, watch a job reach `completed` without a reload, search, retry a failed
job, redrive a parked record. Also its key handling, without a browser. The executor runs on
an anvil chain of the module's own with 2 s blocks (long enough to see a job change on the page)
and our contract; the failure a retry heals is the signing key without funds.

Screenshots go to a temporary folder; with UPDATE_SCREENSHOTS=1 into docs/ (the ones
docs/operations.md shows).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from services.api.access import CONSOLE_COOKIE
from services.api.api_keys import digest_of, new_token
from services.api.retries import retry_job_id
from shared.kafka import Appender
from tests.observability.browser import headless_chromium, needs_chromium
from tests.support.evm_stack import StackChain
from tests.support.stack import REPO, Stack, unique_name

WRITER = new_token()
READER = new_token()
STACK_SETTINGS = {
    "api_keys": f"writer:{digest_of(WRITER)}:write,reader:{digest_of(READER)}:read",
    "api_rate_limit_per_s": 1000.0,
    "api_rate_limit_burst": 1000,
    "live_poll_interval_s": 0.2,
    "retry_delay_s": 0.0,
    "chain_insufficient_funds_wait_s": 1.0,
}
STACK_CHAIN = {"block_time": 2.0}


def shots(tmp_path: Path) -> Path:
    return REPO / "docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path


def api(stack: Stack, key: str = WRITER) -> httpx.Client:
    return httpx.Client(
        base_url=stack.base_url, timeout=10, headers={"Authorization": f"Bearer {key}"}
    )


def wait_for(condition: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}")


def shown(driver: Any, element_id: str) -> str:
    """The text of the element once the page shows it (a page may still be loading)."""
    script = f"const e = document.getElementById('{element_id}'); return e && e.textContent;"
    return str(wait_for(lambda: driver.execute_script(script), what=f"#{element_id}")).strip()


def terminal(stack: Stack, job_id: str) -> dict[str, Any]:
    with api(stack) as http:

        def done() -> dict[str, Any] | None:
            job = http.get(f"/buckets/jobs/{job_id}").json()
            return job if job["status"] in ("completed", "failed") else None

        return wait_for(done, what=f"job {job_id} to end")  # type: ignore[no-any-return]


def test_the_console_needs_a_key_and_a_read_only_key_cannot_write(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=10) as http:
        assert http.get("/console").status_code == 303
        assert http.get("/console").headers["location"] == "/console/login"
        assert http.get("/console/changes").status_code == 303
        assert http.post(f"/console/jobs/{uuid.uuid4()}/retry").status_code == 401
        assert 'method="post"' in http.get("/console/login").text  # never a key in a URL
        wrong = http.post("/console/login", data={"key": "akgw_not-a-key"})
        assert wrong.status_code == 401 and CONSOLE_COOKIE not in wrong.cookies

        login = http.post("/console/login", data={"key": READER})
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].lower()
        for attribute in ("httponly", "samesite=strict", "path=/console"):
            assert attribute in cookie, cookie
        page = http.get("/console")
        assert page.status_code == 200 and "Read-only" in page.text
        same = {"Origin": stack.base_url}
        refused = http.post(f"/console/jobs/{uuid.uuid4()}/retry", headers=same)
        assert refused.status_code == 403, refused.text  # read scope
        # The cookie only works under /console: the API itself still wants the header.
        assert http.get(f"/buckets/jobs/{uuid.uuid4()}").status_code == 401

        http.cookies.clear()
        assert http.post("/console/login", data={"key": WRITER}).status_code == 303
        foreign = http.post(
            f"/console/jobs/{uuid.uuid4()}/retry", headers={"Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403 and "cross-origin" in foreign.text
        assert http.post(f"/console/jobs/{uuid.uuid4()}/retry", headers=same).status_code == 404
    with api(stack, READER) as bearer:  # a key in the header works for the console too
        assert bearer.get("/console").status_code == 200


def test_a_job_page_shows_its_history_from_the_log(stack: Stack) -> None:
    name = unique_name("history")
    with api(stack) as http:
        job_id = http.post("/buckets", json={"bucket_name": name}).json()["job_id"]
        terminal(stack, job_id)
        page = http.get(f"/console/jobs/{job_id}")
        assert page.status_code == 200, page.text
        text = page.text
        assert name in text and "BucketRequested" in text and "BucketCreated" in text, text
        assert http.get(f"/console/jobs/{uuid.uuid4()}").status_code == 404
        found = http.get("/console/search", params={"q": name})
        assert found.status_code == 200 and job_id in found.text


@needs_chromium
def test_a_job_appears_and_completes_live_search_finds_it_and_a_retry_heals_a_failure(
    stack: Stack, stack_chain: StackChain, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    out = shots(tmp_path)
    driver: Any
    with headless_chromium() as driver:
        driver.set_window_size(1200, 900)
        driver.get(stack.base_url + "/console")
        assert driver.current_url.endswith("/console/login")
        driver.find_element(By.ID, "key").send_keys(WRITER)
        driver.find_element(By.ID, "login").click()
        wait_for(lambda: driver.current_url.endswith("/console"), what="the overview")
        shown(driver, "live-state")
        wait_for(
            lambda: driver.find_element(By.ID, "live-state").text == "(live)", what="the stream"
        )
        driver.execute_script("window.notReloaded = true;")

        name = unique_name("console")
        with api(stack) as http:
            job_id = http.post("/buckets", json={"bucket_name": name}).json()["job_id"]

        def shown_status() -> str:
            script = f"const c = document.querySelector('#changes #job-{job_id} .status');"
            return str(driver.execute_script(script + "return c ? c.textContent : '';"))

        wait_for(lambda: shown_status() in ("queued", "processing"), what="the job on the page")
        wait_for(lambda: shown_status() == "completed", what="the job completed on the page")
        assert driver.execute_script("return window.notReloaded === true;")
        driver.save_screenshot(str(out / "console-overview.png"))

        search = driver.find_element(By.ID, "search")
        search.send_keys(job_id)
        search.submit()
        wait_for(lambda: f"/console/jobs/{job_id}" in driver.current_url, what="the job page")
        assert shown(driver, "bucket-name") == name
        assert shown(driver, "job-status") == "completed"
        types = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#history .event-type")]
        assert types[0] == "BucketRequested" and types[-1] == "BucketCreated", types
        assert "BucketProcessing" in types
        driver.save_screenshot(str(out / "console-job.png"))

        search = driver.find_element(By.ID, "search")
        search.send_keys(name)
        search.submit()
        wait_for(lambda: "/console/search" in driver.current_url, what="the search page")
        shown(driver, "results")
        assert driver.find_elements(By.CSS_SELECTOR, f"#results #job-{job_id}")

        # A failure that heals: the key cannot pay (funds then arrive).
        doomed = unique_name("console-funds")
        with stack_chain.unfunded(), api(stack) as http:
            failed_id = http.post("/buckets", json={"bucket_name": doomed}).json()["job_id"]
            failed = terminal(stack, failed_id)
        assert failed["status"] == "failed" and failed["error_code"] == "insufficient_funds"
        driver.get(f"{stack.base_url}/console/jobs/{failed_id}")
        shown(driver, "retry")
        driver.find_element(By.ID, "retry").click()
        retry_id = str(retry_job_id(uuid.UUID(failed_id)))
        wait_for(lambda: f"/console/jobs/{retry_id}" in driver.current_url, what="the retry")
        driver.execute_script("window.notReloaded = true;")
        assert shown(driver, "retry-of") == failed_id
        wait_for(
            lambda: shown(driver, "job-status") == "completed",
            what="the retry completed on the page",
        )
        assert driver.execute_script("return window.notReloaded === true;")
        driver.save_screenshot(str(out / "console-retry.png"))
        with api(stack) as http:
            assert http.get(f"/buckets/jobs/{failed_id}").json()["retried_by"] == retry_id


@needs_chromium
def test_a_parked_record_is_listed_and_redriven_from_the_page(stack: Stack, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    async def poison() -> None:
        appender = Appender(stack.settings)
        try:
            await appender.send(stack.settings.bucket_events_topic, b"not an event", b"poison")
        finally:
            await appender.stop()

    asyncio.run(poison())
    driver: Any
    with headless_chromium() as driver:
        driver.set_window_size(1200, 700)
        driver.get(stack.base_url + "/console/login")
        driver.find_element(By.ID, "key").send_keys(WRITER)
        driver.find_element(By.ID, "login").click()

        def listed() -> list[Any]:
            driver.get(stack.base_url + "/console/parked")
            return driver.find_elements(By.XPATH, "//td[contains(., 'not an event')]/..")

        row = wait_for(listed, what="the parked record")[0]
        driver.save_screenshot(str(shots(tmp_path) / "console-parked.png"))
        row.find_element(By.CSS_SELECTOR, "button").click()

        def redriven() -> bool:  # the page may be between the form's post and its redirect
            try:
                return "redriven to" in driver.find_element(By.ID, "parked").text
            except (NoSuchElementException, StaleElementReferenceException):
                return False

        wait_for(redriven, what="the redrive")
