"""The experiment page in headless Chromium: a real experiment (3 variants × 2 seeds, one that cannot train)
trained by a real worker, then its page: the verdict sentence, the ranking, the curves, the side-by-side
tables and the runs linked to their jobs.

Skipped, with the reason, only where Debian's ``chromium`` is not installed.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.chromium import Browser, why_unusable
from tests.integration.gateway_support import wait_finished
from tests.integration.test_experiments import experiment
from tests.integration.trainer_support import DataService
from tests.integration.worker_fixtures import gateway, worker
from trainer_service.worker import Worker

UNUSABLE = why_unusable()
pytestmark = [
    pytest.mark.skipif(UNUSABLE is not None, reason=f"headless Chromium unavailable: {UNUSABLE}"),
    pytest.mark.timeout(300),
]
__all__ = ["gateway", "worker"]  # fixtures, used by name


def test_the_experiment_page_shows_the_comparison(
    gateway: httpx.Client, worker: Worker, data_service: DataService, tmp_path: Path
) -> None:
    accepted = gateway.post("/v1/experiments", json=experiment(data_service.address)).json()
    record = wait_finished(gateway, accepted["id"], 240)
    comparison = record["comparison"]
    with Browser() as browser:
        page = browser.page()
        page.goto(f"{gateway.base_url}/experiments/{accepted['id']}")
        page.wait_for("document.getElementById('curves') && document.getElementById('curves').complete")
        assert page.eval("document.getElementById('summary').textContent") == comparison["summary"]
        rows = page.eval("[...document.querySelectorAll('#ranking tbody tr')].map(r => r.dataset.variant)")
        assert rows == [r["variant"] for r in comparison["ranking"]]
        noval = page.eval("document.querySelector('#ranking tr[data-variant=\"noval\"]').textContent")
        assert "not fit" in noval and "no loss" in noval
        assert "bits per byte" in page.eval("document.querySelector('#ranking thead').textContent")
        assert page.eval("document.getElementById('curves').naturalWidth") > 0
        assert page.eval("document.querySelectorAll('#runs tbody tr').length") == 6
        assert page.eval("document.querySelectorAll('#checks-side-by-side tbody tr').length") == len(
            comparison["checks"]
        )
        differs = page.eval("document.getElementById('differences').textContent")
        assert "dataset.tokenizer" in differs and "val_fraction" in differs
        assert "val bytes per token" in page.eval("document.getElementById('data').textContent")
        assert page.js_errors() == []
        page.screenshot(tmp_path / "experiment.png")
        page.goto(f"{gateway.base_url}/")  # the home page lists it, linked to this page
        link = f"#experiments tr[data-experiment='{accepted['id']}'] a"
        page.wait_for(f"document.querySelector({link!r})")
        assert (
            page.eval(f"document.querySelector({link!r}).getAttribute('href')")
            == f"/experiments/{accepted['id']}"
        )
        # Its tags are chips that filter the home page; another tag's filter hides it.
        chip = f"#experiments tr[data-experiment='{accepted['id']}'] a.tag"
        assert page.eval(f"[...document.querySelectorAll({chip!r})].map(a => a.textContent)") == ["ablation"]
        page.goto(f"{gateway.base_url}/?tag=ablation")
        page.wait_for(f"document.querySelector({link!r})")
        page.goto(f"{gateway.base_url}/?tag=other")
        page.wait_for("document.querySelector('[data-loaded=home]')")
        assert page.eval("document.getElementById('experiments')") is None
        assert page.js_errors() == []
