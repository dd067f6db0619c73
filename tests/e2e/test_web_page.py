"""The web page in headless Chromium: submit through the form and watch it train, against the whole local
stack, on clean data and on data too short to serve; then job pages for stored reports of each verdict.

Skipped, with the reason, only where Debian's ``chromium`` is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import GatewaySettings
from simtrain.cli import DEMO_CORPUS
from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from simtrain.stack import LocalStack
from tests.e2e.chromium import Browser, Page, why_unusable
from tests.integration.gateway_support import serve

TOKEN = "web-test-token"
UNUSABLE = why_unusable()
pytestmark = pytest.mark.skipif(UNUSABLE is not None, reason=f"headless Chromium unavailable: {UNUSABLE}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("web")
    (root / "data").mkdir()
    shutil.copyfile(DEMO_CORPUS, root / "data" / "tiny.txt")
    (root / "data" / "short.txt").write_text("far too short\n")  # less than one block: nothing to train on
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

    # The verdict leads, as the report has it; the settings the form sent are on the page.
    report = httpx.get(f"{url}/v1/jobs/{job_id}/report", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    page.wait_for(f"{VERDICT} === {report['verdict']!r}")
    assert report["verdict"] in ("fit", "fit with warnings", "not fit")
    for level in ("fail", "warn"):
        flagged = [c["name"] for c in report["checks"] if c["verdict"] == level]
        assert [name for name, _ in page.eval(FLAGGED.format(level))] == flagged
    params = page.eval(PARAMS)
    assert (params["learning_rate"], params["batch_size"], params["block_size"]) == ("0.005", "16", "32")
    assert (params["max_iters"], params["model"], params["dataset"]) == (
        "60",
        "gpt-nano",
        "text module, source tiny.txt",
    )
    assert (params["tokenizer"], params["packing"], params["options"]) == ("char", "stream", "none")
    assert "Checkpoint" in page.eval(BUTTONS)  # the run saved one
    # Ask the model: the generate server of the stack answers from the checkpoint.
    page.wait_for("!document.getElementById('ask-button').disabled")
    set_value(page, "#ask-prompt", "At noon, Ada")
    set_value(page, "#ask [name=max_new_tokens]", "30")
    set_value(page, "#ask [name=n]", "2")
    page.eval("document.getElementById('ask-button').click()")
    page.wait_for("document.querySelectorAll('#ask-answers .answer').length === 2", timeout_s=60)
    assert page.eval("document.getElementById('ask-status').textContent").startswith(
        "answered by the checkpoint at step 60"
    )
    first = page.eval("document.querySelector('#ask-answers .answer').textContent")
    assert first.startswith("At noon, Ada") and len(first) >= len("At noon, Ada") + 30
    # A prompt the model's tokenizer cannot encode: the reason shows under the prompt.
    set_value(page, "#ask-prompt", "Ada €")
    page.eval("document.getElementById('ask-button').click()")
    page.wait_for("document.querySelector('[data-error-for=prompt]').textContent", timeout_s=60)
    assert "'€'" in page.eval("document.querySelector('[data-error-for=prompt]').textContent")
    # The chart's axes are titled, and its legend sits above the plot, off the curves.
    assert page.eval("document.getElementById('y-title').textContent") == "loss (nats/token)"
    assert page.eval("document.getElementById('x-title').textContent") == "step"
    assert page.eval("document.getElementById('chart-legend').getBoundingClientRect().bottom") <= page.eval(
        "document.getElementById('chart').getBoundingClientRect().top"
    )
    screenshot = page.screenshot(tmp_path / "job.png")
    assert screenshot.stat().st_size > 10_000

    page.goto(f"{url}/")
    cell = f"document.querySelector('#jobs-body tr[data-job=\"{job_id}\"] .verdict-cell')"
    page.wait_for(cell)
    assert page.eval(f"{cell}.textContent") == report["verdict"]
    assert page.js_errors() == []


# -- what the job page shows: the verdict first ------------------------------------------------------

VERDICT = "document.querySelector('#verdict .verdict-badge').dataset.verdict"
FLAGGED = (
    "[...document.querySelectorAll('#{}-checks a.check-link')]"
    ".map(a => [a.dataset.check, a.getAttribute('href')])"
)
PARAMS = (
    "Object.fromEntries([...document.querySelectorAll('#params tr')]"
    ".map(r => [r.dataset.param, r.querySelector('td').textContent]))"
)
BUTTONS = "[...document.querySelectorAll('.job-head button')].map(b => b.textContent)"
GREEN = "rgb(31, 138, 76)"  # --ok: kept for the verdict fit


def open_job(page: Page, url: str, job_id: str) -> None:
    page.goto(f"{url}/")
    page.eval(f"localStorage.setItem('simtrain-token', {TOKEN!r})")
    page.goto(f"{url}/jobs/{job_id}")


def test_data_too_short_to_serve_shows_not_fit_and_the_error(stack: LocalStack, page: Page) -> None:
    url, auth = stack.gateway_url, {"Authorization": f"Bearer {TOKEN}"}
    spec = {
        "dataset": {"module": "text", "source": "short.txt"},
        "training": {"max_iters": 20, "batch_size": 4, "block_size": 32, "eval_interval": 10},
    }
    submitted = httpx.post(f"{url}/v1/jobs", json=spec, headers=auth)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    open_job(page, url, job_id)
    page.wait_for("document.querySelector('.job-head [data-status=\"failed\"]')", timeout_s=120)
    page.wait_for(f"{VERDICT} === 'not fit'", timeout_s=30)
    report = httpx.get(f"{url}/v1/jobs/{job_id}/report", headers=auth).json()
    assert report["verdict"] == "not fit"
    failing = [c["name"] for c in report["checks"] if c["verdict"] == "fail"]
    page.wait_for(f"{FLAGGED.format('fail')}.length > 0")
    assert page.eval(FLAGGED.format("fail")) == [
        [name, f"/v1/jobs/{job_id}/report.html#check-{name}"] for name in failing
    ]
    assert page.eval("document.getElementById('verdict-summary').textContent") == report["summary"]

    error = httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth).json()["error"]
    assert error and page.eval("document.getElementById('job-error-text').textContent") == (
        f"This job failed: {error}"
    )
    assert "Checkpoint" not in page.eval(BUTTONS) and "Delete" in page.eval(BUTTONS)
    body = page.eval("document.body.innerText")
    assert "no metrics: the job failed before it logged a step" in body and "waiting" not in body
    assert page.eval(PARAMS)["block_size"] == "32" and page.eval(PARAMS)["dataset"] == (
        "text module, source short.txt"
    )

    # Each failing check's link lands on its row of the full report, which shows the hyperparameters too.
    html = httpx.get(f"{url}/v1/jobs/{job_id}/report.html", headers=auth).text
    for name in failing:
        assert f"<tr id='check-{name}'>" in html
    assert "<td>source</td><td>short.txt</td>" in html and "<td>block size</td><td>32</td>" in html
    assert page.js_errors() == []


@pytest.fixture
def gateway(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[str]:
    """A gateway with no trainer: the jobs' outcomes and reports are written here, as a worker would."""
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_service_addr="127.0.0.1:1", state_dir=tmp_path
    )
    with serve(create_app(settings, GatewaySettings(api_token=TOKEN))) as client:
        yield str(client.base_url).rstrip("/")


CHECKS = [
    {
        "name": "targets_aligned",
        "title": "targets aligned",
        "verdict": "fail",
        "reason": "y is not x shifted",
    },
    {"name": "duplicates", "title": "duplicates", "verdict": "warn", "reason": "65% repeat"},
    {"name": "finite", "title": "finite loss", "verdict": "pass", "reason": "every loss is finite"},
]
SPEC = {
    "dataset": {"module": "sort", "source": "sort", "packing": "pairs", "options": {"num_examples": 2000}},
    "model": {"model_type": "gpt-micro"},
    "training": {"max_iters": 40, "batch_size": 8, "block_size": 16, "learning_rate": 0.002},
}


def stored_job(url: str, job_queue: JobQueue, status: JobStatus, report: dict | None, error: str = "") -> str:
    job_id = httpx.post(f"{url}/v1/jobs", json=SPEC, headers={"Authorization": f"Bearer {TOKEN}"}).json()[
        "id"
    ]
    if report is not None:
        job_queue.set_report(
            job_id, {"job_id": job_id, "final": {"train_loss": 1.2, "val_loss": 1.3}} | report
        )
    job_queue.finish(job_id, status, error or None)
    return job_id


def test_a_succeeded_job_on_data_not_fit_leads_with_not_fit_and_never_looks_green(
    gateway: str, page: Page, job_queue: JobQueue, tmp_path: Path
) -> None:
    summary = "targets aligned fails: y is not x shifted"
    job_id = stored_job(gateway, job_queue, JobStatus.succeeded, {"verdict": "not fit", "summary": summary})
    job_queue.set_report(job_id, job_queue.report(job_id) | {"checks": CHECKS})
    open_job(page, gateway, job_id)
    page.wait_for(f"{FLAGGED.format('fail')}.length > 0")
    assert page.eval(VERDICT) == "not fit"
    assert page.eval("document.getElementById('verdict-summary').textContent") == summary
    report_page = f"/v1/jobs/{job_id}/report.html"
    assert page.eval(FLAGGED.format("fail")) == [["targets_aligned", f"{report_page}#check-targets_aligned"]]
    assert page.eval(FLAGGED.format("warn")) == [["duplicates", f"{report_page}#check-duplicates"]]
    assert "finite loss" not in page.eval("document.getElementById('verdict').textContent")
    # The verdict comes before the run state, and nothing on the page is green.
    assert page.eval("document.getElementById('verdict').getBoundingClientRect().top") < page.eval(
        "document.getElementById('stats').getBoundingClientRect().top"
    )
    assert page.eval("document.querySelector('.job-head [data-status]').dataset.status") == "succeeded"
    colours = page.eval(
        "[...document.querySelectorAll('.job-head *, #verdict *')].flatMap(e =>"
        " [getComputedStyle(e).color, getComputedStyle(e).backgroundColor])"
    )
    assert GREEN not in colours
    assert page.eval(PARAMS) == {
        "model": "gpt-micro",
        "learning_rate": "0.002",
        "batch_size": "8",
        "block_size": "16",
        "max_iters": "40",
        "eval_interval": "100 steps",
        "dataset": "sort module, source sort",
        "tokenizer": "char",
        "packing": "pairs",
        "options": "num_examples=2000",
    }
    assert "Checkpoint" not in page.eval(BUTTONS)  # none was saved

    # A check's link opens the full report (fetched with the token) at that check's row.
    page.eval("window.tab = {location: null, close() {}}; window.open = () => window.tab")
    page.eval("document.querySelector('#fail-checks a.check-link').click()")
    opened = page.wait_for("String(window.tab.location || '')")
    assert opened.startswith("blob:") and opened.endswith("#check-targets_aligned")
    html = page.eval(f"fetch({opened.split('#')[0]!r}).then(r => r.text())")
    assert "<tr id='check-targets_aligned'>" in html and "<td>model preset</td><td>gpt-micro</td>" in html

    # Once a checkpoint is saved, the page offers it.
    checkpoint = tmp_path / "jobs" / job_id / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    page.goto(f"{gateway}/jobs/{job_id}")
    page.wait_for(f"{BUTTONS}.includes('Checkpoint')")
    assert page.js_errors() == []


def test_a_fit_job_shows_fit_in_green(gateway: str, page: Page, job_queue: JobQueue) -> None:
    job_id = stored_job(
        gateway, job_queue, JobStatus.succeeded, {"verdict": "fit", "summary": "every check passes"}
    )
    open_job(page, gateway, job_id)
    page.wait_for(f"{VERDICT} === 'fit' && document.getElementById('verdict-summary').textContent")
    assert page.eval("document.getElementById('verdict-summary').textContent") == "every check passes"
    assert (
        page.eval("getComputedStyle(document.querySelector('#verdict .verdict-badge')).backgroundColor")
        == GREEN
    )
    assert page.eval("document.querySelectorAll('#fail-checks, #warn-checks').length") == 0
    assert page.js_errors() == []


def test_the_job_page_shows_the_probes_answers_over_training(
    gateway: str, page: Page, job_queue: JobQueue
) -> None:
    probes = {
        "steps": [0, 100],
        "shown_steps": [0, 100],
        "items": [
            {
                "prompt": "21=",
                "expected": "12",
                "answers": [
                    {"step": 0, "text": "<9", "exact": False, "prefix": False, "token_accuracy": 0.0},
                    {"step": 100, "text": "12", "exact": True, "prefix": True, "token_accuracy": 1.0},
                ],
            },
            {"prompt": "Zoë", "expected": None, "answers": [], "error": "cannot encode this probe: 'ë'"},
        ],
        "final": {"scored": 1, "exact": 1, "prefix": 1, "token_accuracy": 1.0},
    }
    job_id = stored_job(gateway, job_queue, JobStatus.succeeded, {"verdict": "fit", "probes": probes})
    open_job(page, gateway, job_id)
    page.wait_for("document.getElementById('probes')")
    assert page.eval("document.getElementById('probes-final').textContent") == (
        "At the last evaluation: 1 of 1 exact, 1 by prefix, 100% of expected tokens right."
    )
    heads = page.eval("[...document.querySelectorAll('#probes th')].map(t => t.textContent)")
    assert heads == ["probe", "step 0", "step 100"]
    cells = page.eval(
        "[...document.querySelectorAll('#probes tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
    )
    assert cells == [
        ['"21="→ "12"', '"<9"✗ 0%', '"12"exact 100%'],
        ['"Zoë"', "cannot encode this probe: 'ë'"],
    ]
    assert page.js_errors() == []


def test_a_failed_job_shows_its_error_and_no_checkpoint(
    gateway: str, page: Page, job_queue: JobQueue
) -> None:
    error = "RuntimeError: CUDA out of memory while allocating 2.00 GiB"
    job_id = stored_job(gateway, job_queue, JobStatus.failed, None, error)
    open_job(page, gateway, job_id)
    page.wait_for("document.getElementById('job-error-text')")
    assert page.eval("document.getElementById('job-error-text').textContent") == f"This job failed: {error}"
    page.wait_for("document.getElementById('chart-empty')")
    assert page.eval(VERDICT) == "no verdict"
    assert page.eval("document.getElementById('verdict').textContent") == (
        "no verdictThe job failed before it wrote a fit report."
    )
    body = page.eval("document.body.innerText")
    assert "The job failed before it wrote a fit report." in body
    assert "no metrics: the job failed before it logged a step" in body and "waiting" not in body
    assert page.eval(BUTTONS) == ["Delete"]
    assert page.js_errors() == []


def test_the_jobs_table_has_a_verdict_column(gateway: str, page: Page, job_queue: JobQueue) -> None:
    not_fit = stored_job(gateway, job_queue, JobStatus.succeeded, {"verdict": "not fit", "checks": CHECKS})
    fit = stored_job(gateway, job_queue, JobStatus.succeeded, {"verdict": "fit"})
    failed = stored_job(gateway, job_queue, JobStatus.failed, None, "boom")
    queued = httpx.post(f"{gateway}/v1/jobs", json=SPEC, headers={"Authorization": f"Bearer {TOKEN}"}).json()[
        "id"
    ]
    page.goto(f"{gateway}/")
    page.eval(f"localStorage.setItem('simtrain-token', {TOKEN!r})")
    page.goto(f"{gateway}/")
    page.wait_for("document.querySelectorAll('#jobs-body tr[data-job]').length === 4")
    head = page.eval("[...document.querySelectorAll('#jobs thead th')].map(th => th.textContent)")
    assert head[:3] == ["job", "verdict", "status"]
    shown = page.eval(
        "Object.fromEntries([...document.querySelectorAll('#jobs-body tr[data-job]')].map(r =>"
        " [r.dataset.job, r.querySelector('.verdict-cell').textContent]))"
    )
    assert shown == {not_fit: "not fit", fit: "fit", failed: "no verdict", queued: "pending"}
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
    assert picks == ["notes.txt", "short.txt", "tiny.txt", ""]  # the stack's two files and the upload
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

    # A probe the API refuses (an empty prompt) shows at the probes box.
    set_value(page, "#f-source", "notes.txt")
    set_value(page, "#f-probes", "=>42")
    page.eval("document.getElementById('f-submit').click()")
    page.wait_for("document.querySelector('[data-field=\"probes\"].invalid')", timeout_s=15)
    assert "at least 1 character" in field_error(page, "probes")

    # A good spec goes through with the packing, only the options changed from their defaults, the probes.
    set_value(page, "#f-probes", "a b =>c\n\nb c")
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
    assert job["spec"]["probes"] == [
        {"prompt": "a b ", "expected": "c", "max_new_tokens": None},
        {"prompt": "b c", "expected": None, "max_new_tokens": None},
    ]
    httpx.post(f"{url}/v1/jobs/{job_id}/cancel", headers=auth)
    set_value(page, "#f-probes", "")

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


ROWS = "[...document.querySelectorAll('#jobs-body tr[data-job]')].map(r => r.dataset.job)"


def test_names_and_tags_show_in_the_table_and_a_tag_filters_it(
    gateway: str, page: Page, job_queue: JobQueue
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    tagged = httpx.post(
        f"{gateway}/v1/jobs", json=SPEC | {"name": "sort baseline", "tags": ["sort", "v1"]}, headers=auth
    ).json()["id"]
    plain = httpx.post(f"{gateway}/v1/jobs", json=SPEC, headers=auth).json()["id"]
    page.goto(f"{gateway}/")
    page.eval(f"localStorage.setItem('simtrain-token', {TOKEN!r})")
    page.goto(f"{gateway}/")
    page.wait_for(f"{ROWS}.length === 2")
    head = page.eval("[...document.querySelectorAll('#jobs thead th')].map(th => th.textContent)")
    assert head[:5] == ["job", "verdict", "status", "name", "tags"]
    row = f"document.querySelector('tr[data-job=\"{tagged}\"]')"
    assert page.eval(f"{row}.querySelector('.name-cell').textContent") == "sort baseline"
    assert page.eval(f"[...{row}.querySelectorAll('.tag')].map(t => t.textContent)") == ["sort", "v1"]

    # A tag clicked in the table filters by it; typed tags must all be there; a bad one says why.
    page.eval(f"{row}.querySelector('.tag[data-tag=\"v1\"]').click()")
    page.wait_for(f"{ROWS}.join() === '{tagged}'")
    assert page.eval("document.getElementById('tag-filter').value") == "v1"
    page.eval(
        "const f = document.getElementById('tag-filter'); f.value = 'v1, other';"
        " f.dispatchEvent(new Event('change'))"
    )
    page.wait_for("document.querySelector('#jobs-body td.empty')")
    assert (
        page.eval("document.querySelector('#jobs-body td.empty').textContent")
        == "No job matches the filters."
    )
    page.goto(f"{gateway}/?tag=v1")  # the job page's tag chips link here
    page.wait_for(f"{ROWS}.length === 1")
    assert page.eval(ROWS) == [tagged] and plain not in page.eval(ROWS)

    # The form takes a name and tags, checks them as the API does, and sends them.
    set_value(page, "#f-tags", "a " + "x" * 65)
    page.eval("document.getElementById('f-submit').click()")
    assert "at most 64 characters" in field_error(page, "tags")
    set_value(page, "#f-name", "from the form")
    set_value(page, "#f-tags", "web, form  test")
    set_value(page, "#f-max-iters", "5")
    page.eval("document.getElementById('f-submit').click()")
    page.wait_for("document.querySelector('#f-msg.ok a')")
    made = page.eval("document.querySelector('#f-msg.ok a').getAttribute('href')").split("/")[-1]
    spec = job_queue.get(made).spec
    assert spec.name == "from the form" and spec.tags == ["web", "form", "test"]
    assert page.js_errors() == []


def test_the_job_page_forks_from_the_checkpoint_and_shows_where_a_fork_came_from(
    gateway: str, page: Page, job_queue: JobQueue, tmp_path: Path
) -> None:
    source = stored_job(gateway, job_queue, JobStatus.succeeded, {"verdict": "fit"})
    open_job(page, gateway, source)
    page.wait_for("document.getElementById('fork-submit')")
    assert page.eval("document.getElementById('fork-from-checkpoint').disabled") is True
    assert page.eval("document.getElementById('lineage').hidden") is True
    command = "document.getElementById('fork-command').textContent"
    assert page.eval(command) == f"simtrain fork {source[:8]} --max-iters 40 --lr 0.002"

    checkpoint = tmp_path / "jobs" / source / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    page.goto(f"{gateway}/jobs/{source}")
    page.wait_for("!document.getElementById('fork-from-checkpoint').disabled")
    page.eval(
        "document.getElementById('fork-max-iters').value = '500';"
        "document.getElementById('fork-lr').value = '0.0001';"
        "document.getElementById('fork-from-checkpoint').checked = true;"
        "document.getElementById('fork').dispatchEvent(new Event('input'))"
    )
    assert page.eval(command) == f"simtrain fork {source[:8]} --from-checkpoint --max-iters 500 --lr 0.0001"
    page.eval("document.getElementById('fork-submit').click()")
    page.wait_for(f"location.pathname !== '/jobs/{source}' && document.getElementById('forked-from')")
    fork_id = page.eval("location.pathname").split("/")[-1]
    spec = job_queue.get(fork_id).spec
    assert spec.init_from == source and spec.training.max_iters == 500 and spec.training.learning_rate == 1e-4
    assert page.eval("document.getElementById('lineage').textContent") == (
        f"forked from {source[:12]} (starting from its checkpoint)"
    )
    assert page.eval("document.getElementById('forked-from').getAttribute('href')") == f"/jobs/{source}"

    # A refusal shows in the card: a fork of a job with no checkpoint cannot start from one.
    page.eval(
        "document.getElementById('fork-from-checkpoint').disabled = false;"
        "document.getElementById('fork-from-checkpoint').checked = true;"
        "document.getElementById('fork-submit').click()"
    )
    page.wait_for("document.querySelector('#fork-msg.error')")
    assert "has no checkpoint to start from" in page.eval("document.getElementById('fork-msg').textContent")
    assert page.js_errors() == []


def test_a_retrieval_jobs_probes_show_the_context_they_were_asked_after(
    gateway: str, page: Page, job_queue: JobQueue
) -> None:
    passage = "bafigo has the code 4821. " * 5  # longer than the 80 characters a cell shows
    answer = {"step": 50, "text": "4821", "exact": True, "prefix": True, "token_accuracy": 1.0}
    item = {"prompt": "code of bafigo? ", "expected": "4821", "answers": [answer], "context": passage}
    note = "asked without the retrieved context the dataset's rows have: no Retrieve at the data service"
    probes = {"steps": [50], "shown_steps": [50], "items": [item], "final": None}
    with_context = stored_job(gateway, job_queue, JobStatus.succeeded, {"verdict": "fit", "probes": probes})
    open_job(page, gateway, with_context)
    page.wait_for("document.querySelector('#probes .probe-context')")
    shown = page.eval("document.querySelector('#probes .probe-context').textContent")
    assert shown.startswith('after context "bafigo has the code 4821.') and shown.endswith('…"')
    assert page.eval("document.querySelector('#probes .probe-context').title") == passage
    assert page.eval("document.getElementById('probes-note')") is None

    item.pop("context")
    without = stored_job(
        gateway, job_queue, JobStatus.succeeded, {"verdict": "fit", "probes": probes | {"note": note}}
    )
    open_job(page, gateway, without)
    page.wait_for("document.getElementById('probes-note')")
    assert page.eval("document.getElementById('probes-note').textContent") == f"Probes {note}."
    assert page.eval("document.querySelector('#probes .probe-context')") is None
    assert page.js_errors() == []
