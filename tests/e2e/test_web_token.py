"""With SIMTRAIN_API_TOKEN, in headless Chromium: pages that a plain link or Swagger UI opened without it.

A link cannot send the Authorization header, so the job page fetches the full report page with the token
and opens it as a blob; the API docs fetch the OpenAPI document with the token the web page saved.
Skipped, with the reason, only where Debian's ``chromium`` is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import GatewaySettings
from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.e2e.chromium import Browser, Page, why_unusable
from tests.integration.gateway_support import serve

TOKEN = "web-token-for-links"
UNUSABLE = why_unusable()
pytestmark = pytest.mark.skipif(UNUSABLE is not None, reason=f"headless Chromium unavailable: {UNUSABLE}")


@pytest.fixture
def gateway(redis_url: str, key_prefix: str, tmp_path: Path, job_queue: JobQueue) -> Iterator[str]:
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_service_addr="127.0.0.1:1", state_dir=tmp_path
    )
    with serve(create_app(settings, GatewaySettings(api_token=TOKEN))) as client:
        yield str(client.base_url).rstrip("/")


@pytest.fixture
def page() -> Iterator[Page]:
    with Browser() as browser:
        yield browser.page()


def finished_job(base: str, job_queue: JobQueue) -> str:
    spec = {"dataset": {"module": "text", "source": "tiny.txt"}, "training": {"max_iters": 10}}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    job_id = httpx.post(f"{base}/v1/jobs", json=spec, headers=auth).json()["id"]
    job_queue.set_report(job_id, {"final": {"train_loss": 1.25, "val_loss": 1.5}, "checks": []})
    job_queue.finish(job_id, JobStatus.succeeded)
    return job_id


def test_the_full_report_link_sends_the_token(gateway: str, page: Page, job_queue: JobQueue) -> None:
    job_id = finished_job(gateway, job_queue)
    page.goto(f"{gateway}/")
    page.eval(f"localStorage.setItem('simtrain-token', {TOKEN!r})")
    page.goto(f"{gateway}/jobs/{job_id}")
    page.wait_for("document.getElementById('report-page')")
    # Stand in for the new tab, then follow the link as a click would.
    page.eval("window.tab = {location: null, close() {}}; window.open = () => window.tab")
    page.eval("document.getElementById('report-page').click()")
    url = page.wait_for("String(window.tab.location || '')")
    assert url.startswith("blob:")
    html = page.eval(f"fetch({url!r}).then(r => r.text())")
    assert "1.25" in html and "<html" in html.lower()
    assert page.js_errors() == []


def requested_urls(page: Page) -> list[str]:
    """The URLs the page asked for since Network.enable (drains the browser's event queue)."""
    urls = []
    while True:
        try:
            event = page.browser.events.get_nowait()
        except queue.Empty:
            return urls
        if event.get("method") == "Network.requestWillBeSent" and event.get("sessionId") == page.session:
            urls.append(event["params"]["request"]["url"])


def test_the_api_docs_fetch_the_document_with_the_saved_token(gateway: str, page: Page) -> None:
    page.goto(f"{gateway}/")
    page.eval(f"localStorage.setItem('simtrain-token', {TOKEN!r})")
    page.send("Network.enable")
    page.goto(f"{gateway}/docs")
    assert page.eval("openapi().then(doc => doc.info.title)") == "simtrain gateway"
    assert page.eval("openapi().then(doc => Object.keys(doc.components.securitySchemes))") == ["bearerAuth"]
    # Swagger UI itself, served by the gateway, renders the operations: no CDN is needed.
    blocks = "[...document.querySelectorAll('.opblock-summary')]"
    shown = page.wait_for(
        f"{blocks}.map(e => e.innerText.replace(/\\s+/g, ' ')).filter(t => t.startsWith('POST /v1/jobs '))"
    )
    assert "Submit a training job" in shown[0]
    outside = [u for u in requested_urls(page) if not u.startswith((gateway, "data:", "blob:"))]
    assert outside == []


def test_redoc_renders_the_api_with_the_saved_token(gateway: str, page: Page) -> None:
    page.goto(f"{gateway}/")
    page.eval(f"localStorage.setItem('simtrain-token', {TOKEN!r})")
    page.send("Network.enable")
    page.goto(f"{gateway}/redoc")
    body = "document.body.innerText"
    text = page.wait_for(f"{body}.includes('Submit a training job') && {body}")
    assert "/v1/jobs" in text and "simtrain gateway" in text
    assert "Cannot show the API docs" not in text
    outside = [u for u in requested_urls(page) if not u.startswith((gateway, "data:", "blob:"))]
    assert outside == []
    assert page.js_errors() == []


def test_the_api_docs_without_a_token_say_why(gateway: str, page: Page) -> None:
    # Asked for a token, the person gives none.
    page.send("Page.addScriptToEvaluateOnNewDocument", {"source": "window.prompt = () => null;"})
    page.goto(f"{gateway}/redoc")
    page.wait_for("document.getElementById('redoc').textContent.includes('no API token given')")


# Swagger UI as far as docs.js sees it: keep the config it is given. Not writable, in case its CDN answers.
SWAGGER_STUB = """
Object.defineProperty(window, "SwaggerUIBundle", {value: (config) => { window.swaggerConfig = config; }});
"""


def test_try_it_out_sends_the_saved_token(gateway: str, page: Page) -> None:
    page.goto(f"{gateway}/")
    page.eval(f"localStorage.setItem('simtrain-token', {TOKEN!r})")
    page.send("Page.addScriptToEvaluateOnNewDocument", {"source": SWAGGER_STUB})
    page.goto(f"{gateway}/docs")
    assert page.wait_for("window.swaggerConfig && window.swaggerConfig.spec.info.title") == "simtrain gateway"
    intercept = "window.swaggerConfig.requestInterceptor"
    sent = page.eval(f"{intercept}({{url: '/v1/jobs', headers: {{}}}})")
    assert sent["headers"] == {"Authorization": f"Bearer {TOKEN}"}
    # The request as Swagger UI would send it gets through; a token set with Authorize is left alone.
    assert page.eval(f"fetch('/v1/jobs', {{headers: {sent['headers']!r}}}).then(r => r.status)") == 200
    other = {"Authorization": "Bearer from-authorize"}
    assert page.eval(f"{intercept}({{headers: {other!r}}})")["headers"] == other
    assert page.js_errors() == []
