"""The report page's rendering: every section from a full report, and no crash on an old or partial one."""

from __future__ import annotations

import math

from gateway.report_html import curves_svg, histogram_svg, render

FULL = {
    "job_id": "abc123",
    "verdict": "fit with warnings",
    "summary": "every check passes but 1 warn: duplicates",
    "dataset": {"module": "sort", "source": "sort", "tokenizer": "char", "vocab_size": 6},
    "model": {"n_layer": 2, "n_embd": 32, "num_params": 26176},
    "loss_at_init": {"val": 1.79, "expected_ln_vocab": 1.79},
    "final": {"train_loss": 0.01, "val_loss": None},
    "curve": {"train": [[10, 1.5], [20, 1.0]], "val": [[0, 1.79], [20, math.nan]], "train_eval": [[0, 1.78]]},
    "checks": [
        {
            "name": "duplicates",
            "section": "data",
            "title": "duplicates",
            "verdict": "warn",
            "reason": "65% repeat",
        },
        {"name": "trace", "section": "trace", "title": "function trace", "verdict": "pass", "reason": "ok"},
    ],
    "data": {
        "examples": {"train": 1800, "val": 200},
        "lengths": {
            "min": 14,
            "p50": 14.0,
            "histogram": {"bin_starts": [0, 1, 2, 4, 8], "counts": [0, 0, 0, 0, 9]},
        },
        "batches": {"batches": 10, "masked_share": 0.5, "untrained_row_share": 0.25, "pad_row_share": 0.0},
        "answers": {"examples": 40, "distinct_answers": 1, "top_answer_share": 1.0},
        "overlap": {"unit": "example", "val_hits": 0.0},
    },
    "baselines": {
        "val_loss": 1.0,
        "unigram_nats": 1.6,
        "uniform_nats": 1.79,
        "below_unigram_nats": 0.6,
        "below_unigram_share": 0.375,
        "below_uniform_nats": 0.79,
        "below_uniform_share": 0.441,
    },
    "trace": {
        "functions": {"forward": {"calls": 3, "total_s": 0.3, "mean_s": 0.1}},
        "expected": {"forward": "== 3"},
    },
    "preflight": {"rows": 8, "steps": 50, "lr": 0.003, "initial_loss": 1.8, "final_loss": 0.02},
    "accuracy": {
        "examples": 2,
        "correct": 1,
        "accuracy": 0.5,
        "items": [
            {"prompt": "21=", "expected": "12", "got": "12", "ok": True},
            {"prompt": "31=", "expected": "13", "got": "11", "ok": False},
        ],
    },
    "samples": [{"prompt": "21=", "completion": "12", "expected": "12"}],
    "stopped_early": None,
}


def test_a_full_report_renders_every_section() -> None:
    html = render(FULL, png_url="/v1/jobs/abc123/report.png")
    for part in ("id='verdict'", "id='curves'", "id='checks'", "id='data'", "id='preflight'"):
        assert part in html
    for part in ("id='accuracy'", "id='samples'", "id='trace'", "fit with warnings", "65% repeat"):
        assert part in html
    assert "href='/v1/jobs/abc123/report.png'" in html
    assert "Held-out accuracy: 50.0%" in html and "✗" in html
    assert "Training stopped early" not in html
    assert "0.600 nats (37.5%) below unigram 1.600" in html and "rows with no trained target" in html
    assert "share of the commonest answer</td><td class='num'>100.0%" in html


def test_a_report_of_data_that_was_never_trained_shows_the_verdict_and_why() -> None:
    refused = {
        "job_id": "r1",
        "dataset": {"module": "text", "source": "tiny.txt", "tokenizer": "char"},
        "verdict": "not fit",
        "summary": "not fit: data service serves the job: 40 tokens, fewer than one block",
        "checks": [{"name": "batches_served", "section": "data", "verdict": "fail", "reason": "one block"}],
        "stopped_early": "40 tokens, fewer than one block",
    }
    html = render(refused)
    assert (
        "not fit" in html
        and "fewer than one block" in html
        and "nothing: the data could not be served" in html
    )
    assert "None" not in html and "id='data'" not in html and "id='curves'" not in html


def test_an_old_report_without_checks_still_renders() -> None:
    old = {"job_id": "x", "loss_at_init": {"val": 3.9, "expected_ln_vocab": 3.87}, "final": {}, "samples": []}
    html = render(old)
    assert "no verdict" in html and "No finite loss was recorded" in html and "No samples." in html


def test_a_partial_report_with_losses_is_not_taken_for_a_refused_one() -> None:
    html = render({"job_id": "p", "final": {"train_loss": 1.25, "val_loss": 1.5}, "checks": []})
    assert "train 1.250" in html and "nothing: the data could not be served" not in html


def test_a_stopped_job_shows_why() -> None:
    html = render(FULL | {"verdict": "not fit", "stopped_early": "ids <past> the vocabulary"})
    assert "Training stopped early" in html and "ids &lt;past&gt; the vocabulary" in html


def test_the_curves_skip_missing_values_and_draw_ln_vocab() -> None:
    svg = curves_svg(FULL["curve"], 1.79)
    assert svg.count("<polyline") == 3 and "stroke-dasharray='5 4'" in svg and "nan" not in svg
    assert "ln(vocab)" in svg
    assert "No length histogram" in histogram_svg(None)
    assert histogram_svg(FULL["data"]["lengths"]).count("<rect") == 5


SPEC = {
    "dataset": {"module": "sort", "source": "sort", "tokenizer": "char", "packing": "pairs"}
    | {"options": {"num_examples": 2000}},
    "model": {"model_type": "gpt-nano"},
    "training": {"max_iters": 300, "batch_size": 16, "block_size": 32, "learning_rate": 0.005},
}


def hyperparameters(html: str) -> str:
    start = html.index("id='hyperparameters'")
    return html[start : html.index("</section>", start)]


def test_the_hyperparameters_come_from_the_jobs_spec() -> None:
    shown = hyperparameters(render(FULL, spec=SPEC))
    for label, value in (
        ("model preset", "gpt-nano"),
        ("learning rate", "0.005"),
        ("batch size", "16"),
        ("block size", "32"),
        ("iterations", "300"),
        ("dataset", "sort module"),
        ("source", "sort"),
        ("tokenizer", "char"),
        ("packing", "pairs"),
        ("dataset options", "num_examples=2000"),
    ):
        assert f"<td>{label}</td><td>{value}</td>" in shown, label


def test_without_the_spec_the_hyperparameters_come_from_the_report() -> None:
    report = FULL | {"training": {"max_iters": 40, "batch_size": 8, "block_size": 16, "learning_rate": 0.001}}
    shown = hyperparameters(render(report | {"model": FULL["model"] | {"n_head": 2}}))
    assert "<td>model preset</td><td>2 layers, 2 heads, 32 wide</td>" in shown
    assert "<td>iterations</td><td>40</td>" in shown and "<td>batch size</td><td>8</td>" in shown
    assert "<td>dataset options</td><td>—</td>" in shown  # a trained report does not record them


def test_each_check_has_a_row_to_link_to_and_the_verdict_links_the_flagged_ones() -> None:
    failing = {
        "name": "targets_aligned",
        "title": "targets aligned",
        "verdict": "fail",
        "reason": "not shifted",
    }
    html = render(FULL | {"verdict": "not fit", "checks": [failing, *FULL["checks"]]})
    assert "<tr id='check-targets_aligned'>" in html and "<tr id='check-duplicates'>" in html
    verdict = html[html.index("id='verdict'") : html.index("</section>", html.index("id='verdict'"))]
    assert "fail: <a href='#check-targets_aligned'>targets aligned</a>" in verdict
    assert "warn: <a href='#check-duplicates'>duplicates</a>" in verdict
    assert "check-trace'>" not in verdict  # a passing check is not flagged


def test_the_curves_have_axis_titles_and_the_legend_above_the_plot() -> None:
    svg = curves_svg(FULL["curve"], 1.79)
    assert ">step</text>" in svg and ">loss (nats/token)</text>" in svg and "rotate(-90" in svg
    top_of_plot = 32
    for label in ("train (logged steps)", "val", "ln(vocab)"):
        at = svg.index(f">{label}</text>")
        y = float(svg[svg.rindex("y='", 0, at) + 3 :].split("'")[0])
        assert y < top_of_plot, label
    assert ">examples</text>" in histogram_svg(FULL["data"]["lengths"])


def test_a_dataset_of_several_sources_shows_a_row_per_source() -> None:
    sources = {
        "Geschäftsprozess.apkg": {"examples": {"train": 1200, "val": 130}, "tokens": {"train": 5, "val": 6}},
        "<b>talk</b>.jsonl": {"examples": {"train": 600, "val": 70}, "tokens": {"train": 7, "val": 8}},
    }
    data = FULL["data"] | {"sources": sources, "trained_tokens": {"train": 321, "val": 45}}
    html = render(FULL | {"data": data})
    table = html.split("id='sources'", 1)[1].split("</table>", 1)[0]
    assert "Geschäftsprozess.apkg" in table and "1,200" in table and "130" in table
    assert "&lt;b&gt;talk&lt;/b&gt;.jsonl" in table and "<b>talk" not in table  # a file name is text, escaped
    assert "tokens that take loss (train / val)" in html and "321 / 45" in html
    assert "id='sources'" not in render(FULL)  # one source: no table


PROBES = {
    "steps": [0, 100, 200, 300, 400, 500, 600, 700],
    "shown_steps": [0, 100, 300, 400, 600, 700],
    "items": [
        {
            "prompt": "21=",
            "expected": "12",
            "answers": [{"step": 0, "text": "<9", "exact": False, "prefix": False, "token_accuracy": 0.0}]
            + [
                {"step": s, "text": "12", "exact": True, "prefix": True, "token_accuracy": 1.0}
                for s in (100, 200, 300, 400, 500, 600, 700)
            ],
        },
        {"prompt": "Once upon", "expected": None, "answers": [{"step": 700, "text": " a time"}]},
        {"prompt": "Zoë", "expected": None, "answers": [], "error": "cannot encode this probe: 'ë'"},
    ],
    "final": {"scored": 1, "exact": 1, "prefix": 1, "token_accuracy": 1.0},
}


def test_the_probes_show_each_answer_over_training_with_its_score() -> None:
    html = render(FULL | {"probes": PROBES})
    start = html.index("id='probes'")
    shown = html[start : html.index("</section>", start)]
    assert "1 of 1 scored probes exact, 1 by prefix, 100.0% of expected tokens right" in shown
    first = shown[shown.index("id='probe-0'") : shown.index("id='probe-1'")]
    assert "&lt;9" in first and "✗, 0.0% of tokens" in first and "✓ exact, 100.0% of tokens" in first
    assert first.count("<tr><td>") == 6  # the shown steps only, not all 8
    assert "<td>200</td>" not in first and "<td>700</td>" in first
    assert " a time" in shown and "cannot encode this probe: &#x27;ë&#x27;" in shown
    assert "id='probes'" not in render(FULL)  # a job without probes has no such section


def test_a_retrieval_jobs_probes_show_the_context_they_were_asked_after() -> None:
    item = {
        "prompt": "code of bafigo? ",
        "expected": "4821",
        "answers": [],
        "context": "bafigo has the code 4821.",
    }
    probes = {"steps": [], "shown_steps": [], "items": [item], "final": None}
    shown = render(FULL | {"probes": probes})
    assert "asked after the retrieved context:" in shown
    assert "<pre class='context'>bafigo has the code 4821.</pre>" in shown
    note = "asked without the retrieved context the dataset's rows have: no Retrieve at the data service"
    item.pop("context")
    shown = render(FULL | {"probes": probes | {"note": note}})
    assert f"Probes {note}.".replace("'", "&#x27;") in shown and "retrieved context:" not in shown
