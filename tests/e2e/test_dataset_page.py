"""The dataset pages in headless Chromium, against a real data service and gateway: the list, one dataset's
statistics and rows (trained, masked and padding tokens coloured apart), paging, and the job page's link.

Skipped, with the reason, only where Debian's ``chromium`` is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from data_service.server import serve as serve_data
from gateway.app import create_app
from gateway.config import GatewaySettings
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.e2e.chromium import Browser, Page, why_unusable
from tests.integration.gateway_support import serve

TOKEN = "dataset-page-token"
UNUSABLE = why_unusable()
pytestmark = pytest.mark.skipif(UNUSABLE is not None, reason=f"headless Chromium unavailable: {UNUSABLE}")
PAIRS = [{"prompt": f"What is {i} + {i}?", "completion": f" {2 * i}"} for i in range(60)]
TEXT = "".join(f"line {i}: the fox\n" for i in range(200))


@pytest.fixture(scope="module")
def data_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A real data service with a text dataset and two pairs datasets prepared, one with retrieval and
    memory: (address, their ids)."""
    root = tmp_path_factory.mktemp("dataset-page")
    (root / "data").mkdir()
    (root / "data" / "lines.txt").write_text(TEXT, encoding="utf-8")
    (root / "data" / "sums.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    server, port = serve_data(Settings(data_root=root / "data", state_dir=root / "var"), port=0)
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DataServiceStub(channel)
        ids = {
            "text": stub.PrepareDataset(
                pb.PrepareDatasetRequest(module="text", source="lines.txt")
            ).dataset_id,
            "pairs": stub.PrepareDataset(
                pb.PrepareDatasetRequest(module="jsonl", source="sums.jsonl", packing="pairs")
            ).dataset_id,
            "remembered": stub.PrepareDataset(
                pb.PrepareDatasetRequest(
                    module="jsonl",
                    source="sums.jsonl",
                    packing="pairs",
                    options={"memory_examples": "2", "retrieval_corpus": "lines.txt"},
                )
            ).dataset_id,
        }
    try:
        yield address, ids
    finally:
        server.stop(None)


@pytest.fixture
def gateway(
    data_service: tuple[str, dict[str, str]],
    redis_url: str,
    key_prefix: str,
    job_queue: JobQueue,
    tmp_path: Path,
) -> Iterator[str]:
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_service_addr=data_service[0], state_dir=tmp_path
    )
    with serve(create_app(settings, GatewaySettings(api_token=TOKEN))) as client:
        yield str(client.base_url).rstrip("/")


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with Browser() as browser:
        yield browser.page()


def signed_in(page: Page, url: str) -> None:
    """Open ``url`` with the API token saved, as the token form saves it."""
    page.goto(url)
    page.eval(f"localStorage.setItem('simtrain-token', {TOKEN!r})")
    page.goto(url)


def change(page: Page, element_id: str, value: str) -> None:
    """Set a control's value as a person would, so its change handler runs."""
    page.eval(
        f"(() => {{ const e = document.getElementById({element_id!r}); e.value = {value!r};"
        " e.dispatchEvent(new Event('change')); })()"
    )


def spans(page: Page, role: str, row: int = 0) -> list[str]:
    return page.eval(
        f"[...document.querySelectorAll('#rows-list [data-row]')[{row}].querySelectorAll('.tok.{role}')]"
        ".map(s => s.textContent)"
    )


def test_the_list_links_each_dataset(gateway: str, data_service, page: Page):
    ids = data_service[1]
    signed_in(page, f"{gateway}/datasets")
    page.wait_for("document.querySelectorAll('#datasets tr[data-dataset]').length === 3")
    links = page.eval("[...document.querySelectorAll('#datasets tr[data-dataset] a')].map(a => a.pathname)")
    assert sorted(links) == sorted(f"/datasets/{i}" for i in ids.values())
    assert page.eval("[...document.querySelectorAll('#nav a')].map(a => a.textContent)") == [
        "Jobs",
        "Datasets",
    ]
    assert page.js_errors() == []


def test_a_pairs_dataset_shows_prompts_masked_answers_trained_and_padding(
    gateway: str, data_service, page: Page
):
    pairs_id = data_service[1]["pairs"]
    signed_in(page, f"{gateway}/datasets/{pairs_id}?block_size=24")
    page.wait_for("document.querySelectorAll('#rows-list [data-row]').length === 8")
    assert "jsonl" in page.eval("document.getElementById('dataset-stats').textContent")
    first = page.eval("document.querySelector('#rows-list [data-row]').dataset.row")
    assert first == "0"
    masked, trained, padding = (spans(page, role) for role in ("masked", "trained", "padding"))
    assert "".join(masked) == "What is 0 + 0?"
    assert "".join(trained) == " 0<|endoftext|>"
    assert padding == ["pad ×8"]
    # Told apart by colour, and the legend says which is which.
    colours = page.eval(
        "['trained', 'masked', 'padding'].map(r => getComputedStyle("
        "document.querySelector(`#rows-list .tok.${r}`)).backgroundImage + getComputedStyle("
        "document.querySelector(`#rows-list .tok.${r}`)).backgroundColor)"
    )
    assert len(set(colours)) == 3
    legend = page.eval("document.getElementById('rows-legend').textContent")
    assert "trained" in legend and "masked" in legend and "padding" in legend
    assert page.eval("document.querySelector('.tok.trained.special').textContent") == "<|endoftext|>"

    assert page.eval("document.getElementById('rows-shares').textContent") == ""  # none given for 24
    change(page, "rows-block", "64")
    page.wait_for("document.getElementById('rows-shares').textContent.includes('at block size 64')")
    shares = page.eval("document.getElementById('rows-shares').textContent")
    assert "0.0% of examples truncated" in shares and "not trained (masked or padding)" in shares
    change(page, "rows-block", "24")
    page.wait_for("document.querySelector('#rows-list .row-head').textContent.includes('of 25 trained')")
    page.eval("document.getElementById('rows-next').click()")
    page.wait_for("document.querySelector('#rows-list [data-row]').dataset.row === '8'")
    assert "start=8" in page.eval("location.search")
    assert page.eval("document.getElementById('rows-where').textContent").startswith("rows 8–15 of ")
    page.eval("document.getElementById('rows-prev').click()")
    page.wait_for("document.querySelector('#rows-list [data-row]').dataset.row === '0'")
    assert page.eval("document.getElementById('rows-prev').disabled") is True
    assert page.js_errors() == []


def test_retrieval_and_memory_are_named_in_the_list_and_the_statistics(
    gateway: str, data_service, page: Page
):
    remembered = data_service[1]["remembered"]
    signed_in(page, f"{gateway}/datasets")
    page.wait_for(f"document.querySelector('#datasets tr[data-dataset=\"{remembered}\"]')")
    listed = page.eval(f"document.querySelector('#datasets tr[data-dataset=\"{remembered}\"]').textContent")
    assert "sums.jsonl + retrieval from lines.txt + memory of 2 examples" in listed
    page.goto(f"{gateway}/datasets/{remembered}")
    page.wait_for("document.querySelectorAll('#rows-list [data-row]').length === 8")
    stats = page.eval("document.getElementById('dataset-stats').textContent")
    assert "bm25 over lines.txt" in stats
    assert (
        "the 2 examples before each row in its document and split, untrained; rows with some: train " in stats
    )
    assert page.js_errors() == []


def test_a_text_dataset_shows_newlines_and_pages_through_splits(gateway: str, data_service, page: Page):
    text_id = data_service[1]["text"]
    signed_in(page, f"{gateway}/datasets/{text_id}")
    page.wait_for("document.querySelectorAll('#rows-list [data-row]').length === 8")
    row = page.eval("document.querySelector('#rows-list .row-tokens').textContent")
    assert row.startswith("line 0: the fox⏎line 1") and len(spans(page, "masked")) == 1
    assert not spans(page, "padding")
    change(page, "rows-split", "val")
    page.wait_for("location.search.includes('split=val')")
    page.wait_for("document.querySelector('#rows-list .row-tokens')")
    # A block larger than the split is refused with the data service's reason, on the page.
    change(page, "rows-block", "8000")
    page.wait_for("document.getElementById('rows-error')")
    assert "too large" in page.eval("document.getElementById('rows-error').textContent")
    assert page.js_errors() == []


def test_an_unknown_dataset_says_so(gateway: str, page: Page):
    signed_in(page, f"{gateway}/datasets/00000000deadbeef")
    page.wait_for("document.getElementById('dataset-error')")
    assert "not found" in page.eval("document.getElementById('dataset-error').textContent")
    assert page.js_errors() == []


def test_the_job_page_links_its_dataset_at_its_block_size(gateway: str, data_service, page: Page):
    pairs_id = data_service[1]["pairs"]
    spec = {
        "dataset": {"id": pairs_id, "packing": "pairs"},
        "model": {"model_type": "gpt-nano"},
        "training": {"max_iters": 10, "batch_size": 4, "block_size": 24},
    }
    answer = httpx.post(f"{gateway}/v1/jobs", json=spec, headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 202, answer.text
    signed_in(page, f"{gateway}/jobs/{answer.json()['id']}")
    page.wait_for("document.getElementById('dataset-link')")
    assert page.eval("document.getElementById('dataset-link').getAttribute('href')") == (
        f"/datasets/{pairs_id}?block_size=24"
    )
    page.eval("document.getElementById('dataset-link').click()")
    page.wait_for("document.querySelectorAll('#rows-list [data-row]').length === 8")
    assert spans(page, "padding") == ["pad ×8"]
    assert page.js_errors() == []
