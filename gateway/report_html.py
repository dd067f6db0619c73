"""The fit report as one self-contained HTML page: verdict, hyperparameters, loss curves, checks, data, trace,
probes, samples.

Rendered from the report JSON alone (the trainer's ``report.json``, as stored in Redis), with the charts
as inline SVG and the style inline, so the page needs no script, no second request and no token beyond
the one that fetched it. Every value taken from the report is escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

CURVES = (
    ("train", "train (logged steps)", "#3b6ea8"),
    ("train_eval", "train (eval)", "#8fb3dc"),
    ("val", "val", "#d9822b"),
)
GREY = "#6b6b6b"
VERDICT_COLOURS = {"fit": "#1f7a3a", "fit with warnings": "#9a6700", "not fit": "#b3261e"}
PILL_COLOURS = {"pass": "#1f7a3a", "warn": "#9a6700", "fail": "#b3261e", "skip": GREY}

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d1d1f; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 12px; } h3 { font-size: 14px; }
section { background: #fff; border: 1px solid #dfe1e5; border-radius: 8px; padding: 16px 20px;
  margin: 16px 0; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eceef1; vertical-align: top; }
th { font-weight: 600; color: #555; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #6b6b6b; } .mono { font-family: ui-monospace, monospace; white-space: pre-wrap; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; }
.verdict { display: inline-block; padding: 4px 14px; border-radius: 14px; color: #fff; font-weight: 600; }
.banner { background: #fdecea; border-color: #f5c2bd; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 0 32px; }
tr:target { background: #fff4c2; }
.verdict-checks { margin: 10px 0 0; padding-left: 20px; }
.warn { color: #9a6700; }
pre.context { white-space: pre-wrap; background: #f6f7f9; padding: 6px 8px; margin: 0; }
"""


# -- small builders ---------------------------------------------------------------------------------


def el(tag: str, content: str = "", **attrs: Any) -> str:
    """An element; ``content`` is markup (escape text first), attribute values are escaped here."""
    attributes = "".join(
        f" {k.rstrip('_').replace('_', '-')}='{escape(str(v))}'" for k, v in attrs.items() if v is not None
    )
    return f"<{tag}{attributes}>{content}</{tag}>"


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a person (escaped text for anything else); a dash for missing."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if value and abs(value) < 1e-3 else f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return escape(str(value))


def pct(value: Any) -> str:
    return "—" if value is None else f"{value:.1%}"


def table(
    rows: list[list[str]],
    head: list[str] | None = None,
    numeric: set[int] = frozenset(),
    row_ids: list[str] | None = None,
) -> str:
    """A table of markup cells; columns in ``numeric`` are right-aligned; ``row_ids`` name rows to link to."""

    def row(cells: list[str], cell: str, id_: str | None = None) -> str:
        tds = "".join(el(cell, c, class_="num" if i in numeric else None) for i, c in enumerate(cells))
        return el("tr", tds, id=id_)

    ids = row_ids or [None] * len(rows)
    thead = el("thead", row(head, "th")) if head else ""
    return el("table", thead + el("tbody", "".join(row(r, "td", i) for r, i in zip(rows, ids, strict=True))))


def section(name: str, title: str, body: str, class_: str | None = None) -> str:
    return el("section", el("h2", title) + body, id=name, class_=class_)


# -- charts --------------------------------------------------------------------------------------------


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    raw = ((hi - lo) or 1.0) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "middle") -> str:
    return el("text", escape(text), x=f"{x:.1f}", y=f"{y:.1f}", font_size=size, text_anchor=anchor)


def _vertical(x: float, y: float, text: str, size: int = 11) -> str:
    """An axis title read bottom to top, centred on (x, y)."""
    turn = f"rotate(-90 {x:.1f} {y:.1f})"
    return el(
        "text", escape(text), x=f"{x:.1f}", y=f"{y:.1f}", font_size=size, text_anchor="middle", transform=turn
    )


def _line(x1: float, y1: float, x2: float, y2: float, colour: str, dash: str = "") -> str:
    extra = {"stroke_dasharray": dash} if dash else {}
    return el("line", x1=f"{x1:.1f}", y1=f"{y1:.1f}", x2=f"{x2:.1f}", y2=f"{y2:.1f}", stroke=colour, **extra)


def curves_svg(curve: dict[str, list[list[float]]], ln_vocab: float | None, width: int = 720) -> str:
    """Train and val loss against step as a line chart, ln(vocab) dashed for reference."""
    series = {
        name: [(s, v) for s, v in curve.get(name) or [] if v is not None and math.isfinite(v)]
        for name, _, _ in CURVES
    }
    points = [p for pts in series.values() for p in pts]
    if not points:
        return el("p", "No finite loss was recorded.", class_="muted")
    legend = [(label, colour) for name, label, colour in CURVES if series[name]]
    legend += [("ln(vocab)", "#999")] if ln_vocab else []
    height, left, right, top, bottom = 340, 64, 16, 32, 40
    x0, x1 = min(0.0, *(s for s, _ in points)), max(s for s, _ in points) or 1.0
    ys = [v for _, v in points] + ([ln_vocab] if ln_vocab else [])
    y0, y1 = min(0.0, *ys), (max(ys) * 1.05) or 1.0

    def px(s: float) -> float:
        return left + (s - x0) / ((x1 - x0) or 1) * (width - left - right)

    def py(v: float) -> float:
        return top + (1 - (v - y0) / ((y1 - y0) or 1)) * (height - top - bottom)

    base = height - bottom
    parts = []
    for t in _ticks(y0, y1):
        parts += [
            _line(left, py(t), width - right, py(t), "#eee"),
            _text(left - 6, py(t) + 4, f"{t:g}", anchor="end"),
        ]
    parts += [_text(px(t), base + 16, f"{t:g}") for t in _ticks(x0, x1)]
    parts += [_text((left + width) / 2, height - 6, "step", 12)]
    parts.append(_vertical(14, (top + base) / 2, "loss (nats/token)", 12))
    parts += [_line(left, top, left, base, "#999"), _line(left, base, width - right, base, "#999")]
    if ln_vocab:
        parts.append(_line(left, py(ln_vocab), width - right, py(ln_vocab), "#999", dash="5 4"))
    for name, _, colour in CURVES:
        if not series[name]:
            continue
        path = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in series[name])
        parts.append(el("polyline", fill="none", stroke=colour, stroke_width=2, points=path))
        if name != "train":
            parts += [
                el("circle", cx=f"{px(s):.1f}", cy=f"{py(v):.1f}", r=3, fill=colour) for s, v in series[name]
            ]
    # The legend is a line above the plot area: it never covers a curve.
    for i, (label, colour) in enumerate(legend):
        x = left + i * 170
        parts.append(el("rect", x=x, y=10, width=14, height=4, fill=colour))
        parts.append(_text(x + 20, 16, label, anchor="start"))
    return el(
        "svg", "".join(parts), viewBox=f"0 0 {width} {height}", width="100%", role="img", aria_label="loss"
    )


def histogram_svg(lengths: dict[str, Any] | None, width: int = 900) -> str:
    """Example lengths in tokens (power-of-two bins) as bars."""
    hist = (lengths or {}).get("histogram")
    if not hist or not hist.get("counts"):
        return el("p", "No length histogram.", class_="muted")
    starts, counts = hist["bin_starts"], hist["counts"]
    height, bottom, left = 160, 30, 28
    bar = (width - left - 10) / len(counts)
    base, peak = height - bottom, max(counts) or 1
    parts = []
    for i, (start, n) in enumerate(zip(starts, counts, strict=False)):
        h, x = (base - 14) * n / peak, left + i * bar
        tip = el("title", f"{start}+ tokens: {n}")
        box = {"x": f"{x + 1:.1f}", "y": f"{base - h:.1f}", "width": f"{bar - 2:.1f}", "height": f"{h:.1f}"}
        parts.append(el("rect", tip, fill="#3b6ea8", **box))
        if n:
            parts.append(_text(x + bar / 2, base - h - 3, str(n), 10))
        parts.append(_text(x + bar / 2, base + 13, str(start), 11))
    parts.append(_text(width / 2, height - 3, "tokens per example (bins start at)"))
    parts.append(_vertical(12, base / 2, "examples"))
    view = f"0 0 {width} {height}"
    return el("svg", "".join(parts), viewBox=view, width="100%", style="max-width:900px", role="img")


# -- sections -------------------------------------------------------------------------------------------


def _checks(checks: list[dict[str, Any]]) -> str:
    rows = []
    for c in checks:
        verdict = str(c.get("verdict", ""))
        pill = el(
            "span", escape(verdict), class_="pill", style=f"background:{PILL_COLOURS.get(verdict, GREY)}"
        )
        setting = el("div", escape(c["setting"]), class_="muted") if c.get("setting") else ""
        title = escape(c.get("title") or c.get("name", ""))
        reason = escape(c.get("reason") or "")
        rows.append([escape(c.get("section", "")), title, pill, reason, fmt(c.get("value"))])
        rows[-1].append(escape(c.get("threshold") or "") + setting)
    head = ["section", "check", "verdict", "why", "value", "threshold"]
    ids = [check_anchor(c) for c in checks]
    return section("checks", "Checks", table(rows, head, numeric={4}, row_ids=ids))


def check_anchor(check: dict[str, Any]) -> str:
    """The id of a check's row: the job page links each failing or warning check to it."""
    return f"check-{check.get('name', '')}"


def _data(report: dict[str, Any]) -> str:
    data = report.get("data") or {}
    b, o = data.get("batches") or {}, data.get("overlap") or {}
    examples, tokens = data.get("examples") or {}, data.get("tokens") or {}
    unit = o.get("unit", "n-gram")
    service = [
        ["examples (train / val)", f"{fmt(examples.get('train'))} / {fmt(examples.get('val'))}"],
        ["tokens (train / val)", f"{fmt(tokens.get('train'))} / {fmt(tokens.get('val'))}"],
        ["vocabulary", fmt(data.get("vocab_size"))],
        ["packing", fmt(data.get("packing"))],
        ["empty examples", fmt(data.get("empty_examples"))],
        ["media-only fields", fmt(data.get("media_only_fields"))],
        ["fields whose media was dropped", fmt(data.get("media_dropped_fields"))],
        ["duplicate examples", fmt(data.get("duplicate_examples"))],
        ["examples in both train and val", fmt(data.get("train_val_overlap"))],
        ["val tokens unseen in train", fmt(data.get("val_tokens_unseen_in_train"))],
    ]
    if trained := data.get("trained_tokens"):
        service.append(
            [
                "tokens that take loss (train / val)",
                f"{fmt(trained.get('train'))} / {fmt(trained.get('val'))}",
            ]
        )
    batches = [
        ["batches checked", fmt(b.get("batches"))],
        ["ids out of range", fmt(b.get("out_of_range"))],
        ["targets masked", pct(b.get("masked_share"))],
        ["targets that are padding", pct(b.get("padded_share"))],
        ["examples truncated", pct(b.get("truncated_share"))],
        ["rows with no trained target", pct(b.get("untrained_row_share"))],
        ["rows with padding in their targets", pct(b.get("pad_row_share"))],
        ["targets = next input", pct(b.get("aligned_share"))],
        ["targets = input at the same position", pct(b.get("same_position_share"))],
        ["answers inside their prompt", pct(b.get("leaked_share"))],
        ["distinct targets", fmt(b.get("distinct_targets"))],
        ["share of the commonest target", pct(b.get("top_target_share"))],
        [f"val {unit}s seen in training", pct(o.get("val_hits"))],
        [f"unseen train {unit}s seen in training", pct(o.get("fresh_hits"))],
    ]
    answers = data.get("answers") or {}
    if answers.get("examples"):
        batches += [
            ["distinct examples trained (pairs)", fmt(answers.get("examples"))],
            ["distinct answers", fmt(answers.get("distinct_answers"))],
            ["share of the commonest answer", pct(answers.get("top_answer_share"))],
            ["answer entropy given the prompt, bits", fmt(answers.get("answer_entropy_given_prompt_bits"))],
        ]
    lengths = data.get("lengths") or {}
    summary = ", ".join(
        f"{k} {fmt(lengths.get(k), 1)}" for k in ("min", "p50", "mean", "p95", "max") if k in lengths
    )
    columns = el("div", el("h3", "From the data service") + table(service, numeric={1})) + el(
        "div", el("h3", "From every batch received") + table(batches, numeric={1})
    )
    body = el("div", columns, class_="grid") + _sources(data.get("sources"))
    body += el("h3", "Example lengths") + el("p", summary, class_="muted")
    return section("data", "Data", body + histogram_svg(lengths))


def _sources(sources: dict[str, Any] | None) -> str:
    """Examples and tokens per source file, for a dataset of several."""
    if not sources:
        return ""
    rows = [
        [
            fmt(name),
            *(fmt((c.get(what) or {}).get(s)) for what in ("examples", "tokens") for s in ("train", "val")),
        ]
        for name, c in sources.items()
        if isinstance(c, dict)
    ]
    head = ["source", "examples train", "examples val", "tokens train", "tokens val"]
    return el("h3", "Per source") + el("div", table(rows, head, numeric={1, 2, 3, 4}), id="sources")


def _trace(report: dict[str, Any]) -> str:
    trace = report.get("trace") or {}
    expected = trace.get("expected") or {}
    rows = [
        [escape(name), fmt(f.get("calls")), escape(expected.get(name, "")), f"{f.get('total_s', 0):.3f}"]
        + [f"{1000 * f.get('mean_s', 0):.3f}"]
        for name, f in (trace.get("functions") or {}).items()
    ]
    head = ["function", "calls", "expected", "total s", "mean ms"]
    return section("trace", "Function trace", table(rows, head, numeric={1, 2, 3, 4}))


def _preflight(report: dict[str, Any]) -> str:
    p = report.get("preflight")
    if not p:
        return ""
    what = f"{fmt(p.get('rows'))} rows of the first batch, {fmt(p.get('steps'))} steps"
    what += f" at lr {fmt(p.get('lr'), 4)}"
    loss = f"loss {fmt(p.get('initial_loss'))} → {fmt(p.get('final_loss'))}"
    return section("preflight", "Pre-flight: one batch overfits", el("p", f"{what}: {loss}"))


def _accuracy(report: dict[str, Any]) -> str:
    a = report.get("accuracy")
    if not a:
        return ""
    rows = [
        [el("span", escape(i[k]), class_="mono") for k in ("prompt", "expected", "got")]
        + ["✓" if i["ok"] else "✗"]
        for i in a.get("items") or []
    ]
    lead = el(
        "p", f"{fmt(a.get('correct'))} of {fmt(a.get('examples'))} val pairs answered exactly", class_="muted"
    )
    body = lead + table(rows, ["prompt", "expected", "greedy answer", ""])
    return section("accuracy", f"Held-out accuracy: {pct(a.get('accuracy'))}", body)


def probe_mark(row: dict[str, Any]) -> str:
    """A scored answer in a few characters: exact, prefix or neither, and the token accuracy."""
    if "exact" not in row:
        return ""
    mark = "✓ exact" if row["exact"] else "✓ prefix" if row["prefix"] else "✗"
    return f"{mark}, {pct(row.get('token_accuracy'))} of tokens"


def _probes(report: dict[str, Any]) -> str:
    p = report.get("probes")
    if not p or not p.get("items"):
        return ""
    final = p.get("final")
    lead = ""
    if final:
        lead = el(
            "p",
            f"At the last evaluation: {fmt(final['exact'])} of {fmt(final['scored'])} scored probes exact, "
            f"{fmt(final['prefix'])} by prefix, {pct(final.get('token_accuracy'))} of expected tokens right.",
            class_="muted",
        )
    if p.get("note"):
        lead += el("p", escape(f"Probes {p['note']}."), class_="warn")
    shown = set(p.get("shown_steps") or p.get("steps") or [])
    parts = []
    for n, item in enumerate(p["items"]):
        title = el("span", escape(item.get("prompt", "")), class_="mono")
        if item.get("expected") is not None:
            title += el("span", " → expected ", class_="muted") + el(
                "span", escape(item["expected"]), class_="mono"
            )
        body = el("p", escape(item["error"]), class_="muted") if item.get("error") else ""
        if "context" in item:  # a retrieval dataset: the passages the model read before the prompt
            body += el("p", "asked after the retrieved context:", class_="muted") + el(
                "pre", escape(item["context"]), class_="context"
            )
        rows = [
            [fmt(r.get("step")), el("span", escape(r.get("text", "")), class_="mono"), probe_mark(r)]
            if "error" not in r
            else [fmt(r.get("step")), el("span", escape(r["error"]), class_="muted"), ""]
            for r in item.get("answers") or []
            if r.get("step") in shown
        ]
        if rows:
            body += table(rows, ["step", "greedy answer", "score"])
        parts.append(el("div", el("h3", title) + body, id=f"probe-{n}"))
    return section("probes", "Probes: the answers over training", lead + "".join(parts))


def _samples(report: dict[str, Any]) -> str:
    items = []
    for s in report.get("samples") or []:
        text = el("span", escape(s.get("prompt", "")), class_="muted") + escape(s.get("completion", ""))
        if "expected" in s:
            text += "<br>" + el("span", f"expected: {escape(s['expected'])}", class_="muted")
        items.append(el("p", text, class_="mono"))
    return section("samples", "Samples", "".join(items) or el("p", "No samples.", class_="muted"))


def _baselines(b: dict[str, Any] | None) -> str:
    if not b:
        return "not measured"
    unigram = f"{fmt(b['below_unigram_nats'])} nats ({pct(b['below_unigram_share'])}) below unigram"
    uniform = f"{fmt(b['below_uniform_nats'])} nats ({pct(b['below_uniform_share'])}) below ln vocab"
    return f"val loss {unigram} {fmt(b['unigram_nats'])}, {uniform} {fmt(b['uniform_nats'])}"


def _summary(report: dict[str, Any]) -> str:
    ds, model, speed = report.get("dataset") or {}, report.get("model") or {}, report.get("speed") or {}
    init, final = report.get("loss_at_init") or {}, report.get("final") or {}
    dataset = f"{ds.get('module')}:{ds.get('source')} · {ds.get('tokenizer')} tokenizer"
    dataset += f" · vocab {ds['vocab_size']}" if ds.get("vocab_size") else ""
    size = f"{model.get('n_layer')} layers, {model.get('n_embd')} wide"
    size += f", {fmt(model.get('num_params'))} parameters"
    if not _trained(report):
        table_ = table([["dataset", escape(dataset)], ["trained", "nothing: the data could not be served"]])
        return el("section", _badge(report) + table_, id="verdict")
    facts = [
        ["dataset", escape(dataset)],
        ["model", size],
        ["loss at init", f"{fmt(init.get('val'))} (ln vocab = {fmt(init.get('expected_ln_vocab'))})"],
        ["final loss", f"train {fmt(final.get('train_loss'))}, val {fmt(final.get('val_loss'))}"],
        ["learned beyond baselines", _baselines(report.get("baselines"))],
        ["speed", f"{fmt(speed.get('tokens_per_s'), 0)} tokens/s on {fmt(speed.get('device'))}"],
    ]
    return el("section", _badge(report) + table(facts), id="verdict")


def _trained(report: dict[str, Any]) -> bool:
    """False for the report of a dataset refused before training: it has no losses at all."""
    return "final" in report or "loss_at_init" in report


def _badge(report: dict[str, Any]) -> str:
    verdict = report.get("verdict") or "no verdict"
    badge = el(
        "span", escape(verdict), class_="verdict", style=f"background:{VERDICT_COLOURS.get(verdict, GREY)}"
    )
    return badge + " " + el("span", escape(report.get("summary") or "")) + _flagged(report)


def _flagged(report: dict[str, Any]) -> str:
    """The failing checks, then the warning ones, each linked to its row in the checks table."""
    items = [
        el(
            "li",
            f"{level}: " + el("a", escape(c.get("title") or c.get("name", "")), href="#" + check_anchor(c)),
        )
        for level in ("fail", "warn")
        for c in report.get("checks") or []
        if c.get("verdict") == level
    ]
    return el("ul", "".join(items), class_="verdict-checks") if items else ""


def _hyperparameters(report: dict[str, Any], spec: dict[str, Any] | None) -> str:
    """What the job trained with: from its spec when the page has it, else as far as the report recorded."""
    spec = spec or {}
    training = spec.get("training") or report.get("training") or {}
    model = spec.get("model") or report.get("model") or {}
    ds = {**(report.get("dataset") or {}), **(spec.get("dataset") or {})}
    sizes = (fmt(model.get(k)) for k in ("n_layer", "n_head", "n_embd"))
    preset = escape(model.get("model_type") or "{} layers, {} heads, {} wide".format(*sizes))
    lr = training.get("learning_rate")
    packing = ds.get("packing") or (report.get("data") or {}).get("packing")
    options = ", ".join(f"{k}={v}" for k, v in (ds.get("options") or {}).items())
    where = f"id {ds['id']}" if ds.get("id") and not ds.get("source") else f"{ds.get('module')} module"
    rows = [
        ["model preset", escape(preset)],
        ["learning rate", f"{lr:g}" if isinstance(lr, float) else fmt(lr)],
        ["batch size", fmt(training.get("batch_size"))],
        ["block size", fmt(training.get("block_size"))],
        ["iterations", fmt(training.get("max_iters"))],
        ["dataset", escape(where)],
        ["source", fmt(ds.get("source"))],
        ["tokenizer", fmt(ds.get("tokenizer"))],
        ["packing", fmt(packing)],
        ["dataset options", escape(options) if options else "none" if "options" in ds else "—"],
    ]
    return section("hyperparameters", "Hyperparameters", table(rows))


def render(report: dict[str, Any], png_url: str | None = None, spec: dict[str, Any] | None = None) -> str:
    """The whole page for one report; ``png_url`` (a data URL or a path) links the PNG of the curves, and
    ``spec`` (the job's spec as JSON) gives the hyperparameters the report itself may lack."""
    job = escape(str(report.get("job_id", "")))
    stopped = report.get("stopped_early")
    banner = (
        section("stopped", "Training stopped early", el("p", escape(stopped)), "banner") if stopped else ""
    )
    png = (
        " " + el("a", "PNG", href=png_url, download=f"{report.get('job_id') or 'report'}.png")
        if png_url
        else ""
    )
    curves = curves_svg(
        report.get("curve") or {}, (report.get("loss_at_init") or {}).get("expected_ln_vocab")
    )
    body = (
        el("h1", "Fit report")
        + el("p", f"job {job}", class_="muted mono")
        + _summary(report)
        + banner
        + _hyperparameters(report, spec)
        + (el("section", el("h2", "Loss curves" + png) + curves, id="curves") if _trained(report) else "")
        + _checks(report.get("checks") or [])
        + (_data(report) if "data" in report else "")
        + _preflight(report)
        + _accuracy(report)
        + _probes(report)
        + _samples(report)
        + (_trace(report) if "trace" in report else "")
    )
    head = "<meta charset='utf-8'>" + el("title", f"simtrain report {job}") + el("style", STYLE)
    return "<!doctype html>" + el("html", el("head", head) + el("body", el("main", body)), lang="en")
