"""The web page in headless Chromium, against the whole local stack: submit through the form, watch it train.

Skipped, with the reason, only where Debian's ``chromium`` is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from simtrain.cli import DEMO_CORPUS
from simtrain.settings import Settings
from simtrain.stack import LocalStack
from tests.e2e.chromium import Browser, Page, why_unusable

TOKEN = "web-test-token"
UNUSABLE = why_unusable()
pytestmark = pytest.mark.skipif(UNUSABLE is not None, reason=f"headless Chromium unavailable: {UNUSABLE}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("web")
    (root / "data").mkdir()
    shutil.copyfile(DEMO_CORPUS, root / "data" / "tiny.txt")
    env = {"REDIS_URL": redis_url, "SIMTRAIN_API_TOKEN": TOKEN}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings = Settings(
        key_prefix=f"simtrain-web:{os.getpid()}:", data_root=root / "data", state_dir=root / "var"
    )
    try:
        stack = LocalStack(settings, gateway_port=0).start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with Browser() as browser:
        yield browser.page()


def set_value(page: Page, selector: str, value: str) -> None:
    page.eval(f"document.querySelector({selector!r}).value = {value!r}")


def test_submit_through_the_form_and_watch_the_chart(stack: LocalStack, page: Page, tmp_path: Path) -> None:
    url = stack.gateway_url
    page.goto(f"{url}/")
    assert page.eval("document.title") == "simtrain"
    # Without the token the API refuses, and the page says what to do.
    page.wait_for("document.getElementById('notice').textContent.includes('needs an API token')")

    set_value(page, "#token", TOKEN)
    page.eval("document.querySelector('#token-form button').click()")
    page.wait_for(
        "document.querySelectorAll('#f-module option').length > 0 && document.readyState === 'complete'"
    )
    page.wait_for("document.querySelector('#jobs-body td.empty, #jobs-body tr[data-job]')")
    assert page.eval("document.getElementById('f-module').value") == "text"
    assert page.eval("document.getElementById('f-model').value") == "gpt-nano"
    presets = page.eval("[...document.querySelectorAll('#f-model option')].map(o => o.value)")
    assert {"gpt-nano", "gpt-micro", "gpt2"} <= set(presets)

    for selector, value in {
        "#f-source": "tiny.txt",
        "#f-max-iters": "60",
        "#f-eval-interval": "20",
        "#f-batch-size": "16",
        "#f-block-size": "32",
        "#f-lr": "0.005",
    }.items():
        set_value(page, selector, value)
    page.eval("document.getElementById('f-submit').click()")
    page.wait_for("document.getElementById('f-msg').textContent.startsWith('submitted')", timeout_s=15)
    job_id = page.eval("document.querySelector('#f-msg a').getAttribute('href').split('/').pop()")
    page.wait_for(f"document.querySelector('#jobs-body tr[data-job=\"{job_id}\"]')", timeout_s=15)

    job = httpx.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert job["spec"]["training"]["max_iters"] == 60
    assert job["spec"]["training"]["batch_size"] == 16
    assert job["spec"]["dataset"] == {
        "module": "text",
        "source": "tiny.txt",
        "tokenizer": "char",
        "packing": "stream",
        "options": {},
        "id": None,
    }

    page.goto(f"{url}/jobs/{job_id}")
    # The chart fills in live, over the event stream, before the job ends.
    page.wait_for("+document.getElementById('chart').dataset.points >= 2", timeout_s=120)
    page.wait_for("document.querySelector('[data-status=\"succeeded\"]')", timeout_s=180)
    page.wait_for("document.getElementById('samples')", timeout_s=30)
    drawn = page.eval(
        "(() => { const line = document.querySelector('#chart polyline.train');"
        " return {points: line ? line.points.numberOfItems : 0,"
        " marks: document.querySelectorAll('#chart circle').length,"
        " total: +document.getElementById('chart').dataset.points}; })()"
    )
    assert drawn["points"] >= 5, drawn  # a train-loss row every 10 steps
    assert drawn["marks"] >= 4, drawn  # the val points at 0, 20, 40, 60 and the last train point
    assert page.eval("document.querySelectorAll('#samples .sample').length") >= 1
    assert "loss at init" in page.eval("document.getElementById('summary').textContent")
    screenshot = page.screenshot(tmp_path / "job.png")
    assert screenshot.stat().st_size > 10_000
    assert page.js_errors() == []


def field_error(page: Page, path: str) -> str:
    return page.eval(f"document.querySelector('[data-field=\"{path}\"] > .field-error').textContent")


def test_the_form_offers_sources_packing_and_options_and_checks_like_the_api(
    stack: LocalStack, page: Page, tmp_path: Path
) -> None:
    url, auth = stack.gateway_url, {"Authorization": f"Bearer {TOKEN}"}
    uploaded = httpx.post(
        f"{url}/v1/sources", params={"filename": "notes.txt"}, content=b"a b c\n" * 400, headers=auth
    )
    assert uploaded.status_code == 201, uploaded.text
    page.goto(f"{url}/")
    page.eval(f"localStorage.setItem('simtrain-token', {TOKEN!r})")
    page.goto(f"{url}/")
    page.wait_for("document.querySelectorAll('#f-source-pick option').length > 1")

    # The uploaded files to pick from, then the free-text entry; picking one fills in the name.
    picks = page.eval("[...document.querySelectorAll('#f-source-pick option')].map(o => o.value)")
    assert picks == ["notes.txt", "tiny.txt", ""]
    assert page.eval("document.getElementById('f-source-pick').value") == "tiny.txt"
    pick = "document.getElementById('f-source-pick')"
    page.eval(f"{pick}.value = 'notes.txt'; {pick}.dispatchEvent(new Event('change'))")
    assert page.eval("document.getElementById('f-source').value") == "notes.txt"
    packings = page.eval("[...document.querySelectorAll('#f-packing option')].map(o => o.value)")
    assert packings == ["stream", "pairs"]
    # The text module's options, from GET /v1/modules, with their defaults.
    assert page.eval("document.getElementById('f-opt-val_fraction').placeholder") == "0.1"
    assert page.eval("document.getElementById('f-opt-overlong').dataset.default") == "truncate"

    # Checked before sending, as the API would: nothing is submitted, each error is at its field.
    before = httpx.get(f"{url}/v1/jobs", headers=auth).json()["jobs"]
    set_value(page, "#f-max-iters", "0")
    set_value(page, "#f-block-size", "1")
    set_value(page, "#f-lr", "0")
    page.eval("document.getElementById('f-submit').click()")
    assert field_error(page, "training.max_iters") == "must be at least 1"
    assert field_error(page, "training.block_size") == "must be at least 2"
    assert field_error(page, "training.learning_rate") == "must be above 0"
    assert field_error(page, "training.batch_size") == ""
    assert httpx.get(f"{url}/v1/jobs", headers=auth).json()["jobs"] == before

    # What only the API can tell (the data service refuses an option value) also shows at its field.
    for selector, value in {"#f-max-iters": "5", "#f-block-size": "16", "#f-lr": "0.001"}.items():
        set_value(page, selector, value)
    set_value(page, "#f-opt-val_fraction", "2")
    page.eval("document.getElementById('f-submit').click()")
    page.wait_for("document.querySelector('[data-field=\"dataset.options\"].invalid')", timeout_s=15)
    assert "val_fraction" in field_error(page, "dataset.options")
    assert field_error(page, "training.max_iters") == ""
    set_value(page, "#f-source", "missing.txt")
    set_value(page, "#f-opt-val_fraction", "")
    page.eval("document.getElementById('f-submit').click()")
    page.wait_for("document.querySelector('[data-field=\"dataset.source\"].invalid')", timeout_s=15)
    assert "missing.txt" in field_error(page, "dataset.source")

    # A good spec goes through with the packing and only the options changed from their defaults.
    set_value(page, "#f-source", "notes.txt")
    set_value(page, "#f-opt-val_fraction", "0.2")
    page.eval("document.getElementById('f-submit').click()")
    page.wait_for("document.getElementById('f-msg').textContent.startsWith('submitted')", timeout_s=15)
    job_id = page.eval("document.querySelector('#f-msg a').getAttribute('href').split('/').pop()")
    page.screenshot(tmp_path / "form.png")
    job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth).json()
    assert job["spec"]["dataset"] == {
        "module": "text",
        "source": "notes.txt",
        "tokenizer": "char",
        "packing": "stream",
        "options": {"val_fraction": "0.2"},
        "id": None,
    }
    assert job["spec"]["training"]["max_iters"] == 5 and job["spec"]["training"]["block_size"] == 16
    httpx.post(f"{url}/v1/jobs/{job_id}/cancel", headers=auth)

    # A file chosen to upload stands in for the source: it is uploaded, listed, picked and trained on.
    chosen = tmp_path / "more notes.txt"
    chosen.write_text("more notes\n" * 300, encoding="utf-8")
    document = page.send("DOM.getDocument")["root"]["nodeId"]
    node = page.send("DOM.querySelector", {"nodeId": document, "selector": "#f-file"})["nodeId"]
    page.send("DOM.setFileInputFiles", {"files": [str(chosen)], "nodeId": node})
    set_value(page, "#f-source", "")
    page.eval("document.getElementById('f-submit').click()")
    page.wait_for(f"document.querySelector('#f-msg a:not([href$=\"{job_id}\"])')", timeout_s=15)
    assert page.eval("document.getElementById('f-source-pick').value") == "more_notes.txt"
    second = page.eval("document.querySelector('#f-msg a').getAttribute('href').split('/').pop()")
    job = httpx.get(f"{url}/v1/jobs/{second}", headers=auth).json()
    assert job["spec"]["dataset"]["source"] == "more_notes.txt"
    httpx.post(f"{url}/v1/jobs/{second}/cancel", headers=auth)
    assert page.js_errors() == []
