"""The API docs page works offline: Swagger UI's assets come from the gateway itself, so a
real browser with no way out to a CDN renders the operations and can call them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.observability.browser import headless_chromium, needs_chromium
from tests.support.stack import Stack, unique_name

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def api(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The API and the projector (which creates the topic and makes the job readable)."""
    asyncio.run(ensure_topics(stack_settings))
    running = Stack(stack_settings, tmp_path_factory.mktemp("api"))
    running.start("projector", "api")
    try:
        yield running
    finally:
        running.stop()


def test_docs_page_references_no_other_host(api: Stack) -> None:
    page = httpx.get(api.base_url + "/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "https://" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert httpx.get(f"{api.base_url}/docs-assets/{asset}").status_code == 200
    assert "/docs-assets/redoc.standalone.js" in httpx.get(api.base_url + "/redoc").text


def test_docs_page_renders_and_try_it_out_creates_a_job(api: Stack, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    name = unique_name("docs")
    driver: Any
    with headless_chromium() as driver:
        driver.get(api.base_url + "/docs")
        wait = WebDriverWait(driver, 30)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
        paths = {
            (
                block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
                block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text,
            )
            for block in driver.find_elements(By.CSS_SELECTOR, ".opblock")
        }
        assert {("POST", "/buckets"), ("GET", "/buckets/jobs/{job_id}"), ("GET", "/health")} <= (
            {(m, p.replace("\u200b", "")) for m, p in paths}
        )

        post = next(
            block
            for block in driver.find_elements(By.CSS_SELECTOR, ".opblock-post")
            if block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text.replace(
                "\u200b", ""
            )
            == "/buckets"
        )
        post.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        wait.until(lambda _: post.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
        post.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
        body = wait.until(lambda _: post.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
        body.clear()
        body.send_keys(json.dumps({"bucket_name": name}))
        post.find_element(By.CSS_SELECTOR, "button.execute").click()
        status = wait.until(
            lambda _: post.find_element(
                By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"
            )
        )
        wait.until(lambda _: status.text.strip())
        shown = post.find_element(By.CSS_SELECTOR, ".live-responses-table .response").text
        driver.save_screenshot(str(tmp_path / "docs.png"))
    assert status_code_of(shown) == 202, shown
    job = json.loads(shown[shown.index("{") : shown.rindex("}") + 1])
    assert job["bucket_name"] == name and job["status"] == "queued"
    # The job the page created is real: the log took it and the read model has it.
    found = httpx.get(f"{api.base_url}/buckets/jobs/{job['job_id']}", timeout=10)
    assert found.status_code == 200, found.text
    assert found.json()["bucket_name"] == name


def status_code_of(shown: str) -> int:
    return int(shown.split()[0])
