"""The fit report as one self-contained HTML page: verdict, loss curves, checks, data, trace, samples.

Rendered from the report JSON alone (the trainer's ``report.json``, as stored in Redis), with the charts
as inline SVG and the style inline, so the page needs no script, no second request and no token beyond
the one that fetched it. Every value from the report is escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

CURVES = (("train", "train (logged steps)", "#3b6ea8"), ("train_eval", "train (eval)", "#8fb3dc"))
CURVES += (("val", "val", "#d9822b"),)
VERDICT_COLOURS = {"fit": "#1f7a3a", "fit with warnings": "#9a6700", "not fit": "#b3261e"}
PILL_COLOURS = {"pass": "#1f7a3a", "warn": "#9a6700", "fail": "#b3261e", "skip": "#6b6b6b"}

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d1d1f; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 12px; }
section { background: #fff; border: 1px solid #dfe1e5; border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 5px 8px;
  border-bottom: 1px solid #eceef1; vertical-align: top; } th { font-weight: 600; color: #555; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #6b6b6b; } .mono { font-family: ui-monospace, monospace; white-space: pre-wrap; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; }
.verdict { display: inline-block; padding: 4px 14px; border-radius: 14px; color: #fff; font-weight: 600; }
.banner { background: #fdecea; border-color: #f5c2bd; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 0 32px; }
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return escape(str(value))


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value:.1%}"


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><td>{escape(k)}</td><td class='num'>{v}</td></tr>" for k, v in pairs)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = (hi - lo) or 1.0
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def curves_svg(curve: dict[str, list[list[float]]], ln_vocab: float | None, width: int = 720) -> str:
    """Train and val loss against step as a line chart, ln(vocab) dashed for reference."""
    series = {
        name: [(s, v) for s, v in curve.get(name) or [] if v is not None and math.isfinite(v)]
        for name, _, _ in CURVES
    }
    points = [p for pts in series.values() for p in pts]
    if not points:
        return "<p class='muted'>No finite loss was recorded.</p>"
    height, left, right, top, bottom = 320, 56, 16, 12, 40
    xs = [s for s, _ in points]
    ys = [v for _, v in points] + ([ln_vocab] if ln_vocab else [])
    x0, x1 = min(0.0, min(xs)), max(xs) or 1.0
    y0, y1 = min(0.0, min(ys)), max(ys) * 1.05 or 1.0

    def px(s: float) -> float:
        return left + (s - x0) / ((x1 - x0) or 1) * (width - left - right)

    def py(v: float) -> float:
        return top + (1 - (v - y0) / ((y1 - y0) or 1)) * (height - top - bottom)

    parts = [f"<svg viewBox='0 0 {width} {height}' width='100%' role='img' aria-label='loss curves'>"]
    for t in _ticks(y0, y1):
        parts.append(
            f"<line x1='{left}' x2='{width - right}' y1='{py(t):.1f}' y2='{py(t):.1f}' stroke='#eee'/>"
        )
        parts.append(
            f"<text x='{left - 6}' y='{py(t) + 4:.1f}' text-anchor='end' font-size='11'>{t:g}</text>"
        )
    for t in _ticks(x0, x1):
        parts.append(
            f"<text x='{px(t):.1f}' y='{height - bottom + 16}' text-anchor='middle' font-size='11'>{t:g}</text>"
        )
    parts.append(
        f"<text x='{(left + width) / 2}' y='{height - 6}' text-anchor='middle' font-size='12'>step</text>"
    )
    parts.append(
        f"<line x1='{left}' x2='{left}' y1='{top}' y2='{height - bottom}' stroke='#999'/>"
        f"<line x1='{left}' x2='{width - right}' y1='{height - bottom}' y2='{height - bottom}' stroke='#999'/>"
    )
    if ln_vocab:
        y = py(ln_vocab)
        parts.append(
            f"<line x1='{left}' x2='{width - right}' y1='{y:.1f}' y2='{y:.1f}' stroke='#999' stroke-dasharray='5 4'/>"
        )
    legend = []
    for i, (name, label, colour) in enumerate(CURVES):
        pts = series[name]
        if not pts:
            continue
        path = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in pts)
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{path}'/>")
        if name != "train":
            parts += [f"<circle cx='{px(s):.1f}' cy='{py(v):.1f}' r='3' fill='{colour}'/>" for s, v in pts]
        legend.append((label, colour, i))
    if ln_vocab:
        legend.append(("ln(vocab)", "#999", len(legend)))
    for row, (label, colour, _) in enumerate(legend):
        y = top + 10 + row * 16
        parts.append(f"<rect x='{width - right - 150}' y='{y - 8}' width='12' height='4' fill='{colour}'/>")
        parts.append(f"<text x='{width - right - 132}' y='{y - 2}' font-size='11'>{escape(label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(lengths: dict[str, Any] | None, width: int = 480) -> str:
    """Example lengths in tokens, power-of-two bins, as bars."""
    hist = (lengths or {}).get("histogram")
    if not hist or not hist.get("counts"):
        return "<p class='muted'>No length histogram.</p>"
    starts, counts = hist["bin_starts"], hist["counts"]
    height, bottom, bar = 150, 30, (width - 20) / len(counts)
    peak = max(counts) or 1
    parts = [f"<svg viewBox='0 0 {width} {height}' width='100%' role='img' aria-label='example lengths'>"]
    for i, (start, n) in enumerate(zip(starts, counts, strict=False)):
        h = (height - bottom - 14) * n / peak
        x = 10 + i * bar
        parts.append(
            f"<rect x='{x + 1:.1f}' y='{height - bottom - h:.1f}' width='{bar - 2:.1f}' height='{h:.1f}' "
            f"fill='#3b6ea8'><title>{start}+ tokens: {n}</title></rect>"
        )
        if n:
            parts.append(
                f"<text x='{x + bar / 2:.1f}' y='{height - bottom - h - 3:.1f}' text-anchor='middle' "
                f"font-size='9'>{n}</text>"
            )
        parts.append(
            f"<text x='{x + bar / 2:.1f}' y='{height - bottom + 12}' text-anchor='middle' font-size='10'>{start}</text>"
        )
    parts.append(
        f"<text x='{width / 2}' y='{height - 4}' text-anchor='middle' font-size='11'>tokens per example</text></svg>"
    )
    return "".join(parts)


def _checks(checks: list[dict[str, Any]]) -> str:
    rows = []
    for c in checks:
        colour = PILL_COLOURS.get(c.get("verdict"), "#6b6b6b")
        setting = f"<div class='muted'>{escape(c['setting'])}</div>" if c.get("setting") else ""
        rows.append(
            f"<tr><td>{escape(c.get('section', ''))}</td><td>{escape(c.get('title') or c.get('name', ''))}</td>"
            f"<td><span class='pill' style='background:{colour}'>{escape(str(c.get('verdict', '')))}</span></td>"
            f"<td>{escape(c.get('reason', ''))}</td><td class='num'>{_fmt(c.get('value'))}</td>"
            f"<td>{escape(c.get('threshold') or '')}{setting}</td></tr>"
        )
    head = (
        "<tr><th>section</th><th>check</th><th>verdict</th><th>why</th><th>value</th><th>threshold</th></tr>"
    )
    return f"<table id='checks'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _data(report: dict[str, Any]) -> str:
    data = report.get("data") or {}
    b, o = data.get("batches") or {}, data.get("overlap") or {}
    examples, tokens = data.get("examples") or {}, data.get("tokens") or {}
    service = [
        ("examples (train / val)", f"{_fmt(examples.get('train'))} / {_fmt(examples.get('val'))}"),
        ("tokens (train / val)", f"{_fmt(tokens.get('train'))} / {_fmt(tokens.get('val'))}"),
        ("vocabulary", _fmt(data.get("vocab_size"))),
        ("packing", _fmt(data.get("packing"))),
        ("empty examples", _fmt(data.get("empty_examples"))),
        ("media-only fields", _fmt(data.get("media_only_fields"))),
        ("duplicate examples", _fmt(data.get("duplicate_examples"))),
        ("examples in both train and val", _fmt(data.get("train_val_overlap"))),
        ("val tokens unseen in train", _fmt(data.get("val_tokens_unseen_in_train"))),
    ]
    batches = [
        ("batches checked", _fmt(b.get("batches"))),
        ("ids out of range", _fmt(b.get("out_of_range"))),
        ("targets masked", _pct(b.get("masked_share"))),
        ("targets padding", _pct(b.get("padded_share"))),
        ("examples truncated", _pct(b.get("truncated_share"))),
        ("targets = next input", _pct(b.get("aligned_share"))),
        ("targets = same-position input", _pct(b.get("same_position_share"))),
        ("answers inside their prompt", _pct(b.get("leaked_share"))),
        ("distinct targets", _fmt(b.get("distinct_targets"))),
        ("commonest target's share", _pct(b.get("top_target_share"))),
        (f"val {o.get('unit', 'n-gram')}s seen in training", _pct(o.get("val_hits"))),
        (f"unseen train {o.get('unit', 'n-gram')}s seen in training", _pct(o.get("fresh_hits"))),
    ]
    lengths = data.get("lengths") or {}
    summary = ", ".join(
        f"{k} {_fmt(lengths.get(k), 1)}" for k in ("min", "p50", "mean", "p95", "max") if k in lengths
    )
    return (
        "<section id='data'><h2>Data</h2><div class='grid'>"
        f"<div><h3>From the data service</h3><table>{_rows(service)}</table></div>"
        f"<div><h3>From every batch received</h3><table>{_rows(batches)}</table></div></div>"
        f"<h3>Example lengths</h3><p class='muted'>{escape(summary)}</p>{histogram_svg(lengths)}</section>"
    )


def _trace(report: dict[str, Any]) -> str:
    trace = report.get("trace") or {}
    functions, expected = trace.get("functions") or {}, trace.get("expected") or {}
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td class='num'>{_fmt(f.get('calls'))}</td>"
        f"<td class='num muted'>{escape(expected.get(name, ''))}</td>"
        f"<td class='num'>{f.get('total_s', 0):.3f}</td><td class='num'>{1000 * f.get('mean_s', 0):.3f}</td></tr>"
        for name, f in functions.items()
    )
    head = "<tr><th>function</th><th>calls</th><th>expected</th><th>total s</th><th>mean ms</th></tr>"
    return f"<section id='trace'><h2>Function trace</h2><table><thead>{head}</thead><tbody>{rows}</tbody></table></section>"


def _preflight(report: dict[str, Any]) -> str:
    p = report.get("preflight")
    if not p:
        return ""
    return (
        "<section id='preflight'><h2>Pre-flight: one batch overfits</h2><p>"
        f"{_fmt(p.get('rows'))} rows of the first batch, {_fmt(p.get('steps'))} steps at lr {_fmt(p.get('lr'), 4)}: "
        f"loss {_fmt(p.get('initial_loss'))} → {_fmt(p.get('final_loss'))} "
        f"(pass below {_fmt(p.get('ratio'), 2)} × start)</p></section>"
    )


def _accuracy(report: dict[str, Any]) -> str:
    a = report.get("accuracy")
    if not a:
        return ""
    rows = "".join(
        f"<tr><td class='mono'>{escape(i['prompt'])}</td><td class='mono'>{escape(i['expected'])}</td>"
        f"<td class='mono'>{escape(i['got'])}</td><td>{'✓' if i['ok'] else '✗'}</td></tr>"
        for i in a.get("items") or []
    )
    head = "<tr><th>prompt</th><th>expected</th><th>greedy answer</th><th></th></tr>"
    return (
        f"<section id='accuracy'><h2>Held-out accuracy: {_pct(a.get('accuracy'))}</h2>"
        f"<p class='muted'>{_fmt(a.get('correct'))} of {_fmt(a.get('examples'))} val pairs answered exactly</p>"
        f"<table><thead>{head}</thead><tbody>{rows}</tbody></table></section>"
    )


def _samples(report: dict[str, Any]) -> str:
    items = "".join(
        f"<p class='mono'><span class='muted'>{escape(s.get('prompt', ''))}</span>{escape(s.get('completion', ''))}"
        + (f"<br><span class='muted'>expected: {escape(s['expected'])}</span>" if "expected" in s else "")
        + "</p>"
        for s in report.get("samples") or []
    )
    return f"<section id='samples'><h2>Samples</h2>{items or '<p class=muted>No samples.</p>'}</section>"


def render(report: dict[str, Any], png_url: str | None = None) -> str:
    """The whole page for one report."""
    verdict = report.get("verdict") or "no verdict"
    ds, model, speed = report.get("dataset") or {}, report.get("model") or {}, report.get("speed") or {}
    init, final = report.get("loss_at_init") or {}, report.get("final") or {}
    job = escape(str(report.get("job_id", "")))
    banner = ""
    if report.get("stopped_early"):
        banner = f"<section class='banner'><b>Training stopped early:</b> {escape(report['stopped_early'])}</section>"
    facts = [
        (
            "dataset",
            f"{escape(str(ds.get('module')))}:{escape(str(ds.get('source')))} · {escape(str(ds.get('tokenizer')))}",
        ),
        (
            "model",
            f"{model.get('n_layer')} layers × {model.get('n_embd')} wide, {_fmt(model.get('num_params'))} params",
        ),
        ("loss at init", f"{_fmt(init.get('val'))} (ln vocab {_fmt(init.get('expected_ln_vocab'))})"),
        ("final loss", f"train {_fmt(final.get('train_loss'))}, val {_fmt(final.get('val_loss'))}"),
        ("speed", f"{_fmt(speed.get('tokens_per_s'), 0)} tokens/s on {escape(str(speed.get('device')))}"),
    ]
    png = f" <a href='{escape(png_url)}'>PNG</a>" if png_url else ""
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>simtrain report {job}</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head><body><main>"
        f"<h1>Fit report</h1><p class='muted mono'>job {job}</p>"
        f"<section id='verdict'><span class='verdict' style='background:{VERDICT_COLOURS.get(verdict, '#6b6b6b')}'>"
        f"{escape(verdict)}</span> <span>{escape(report.get('summary') or '')}</span>"
        f"<table style='margin-top:12px'>{_rows(facts)}</table></section>{banner}"
        f"<section id='curves'><h2>Loss curves{png}</h2>"
        f"{curves_svg(report.get('curve') or {}, init.get('expected_ln_vocab'))}</section>"
        f"<section><h2>Checks</h2>{_checks(report.get('checks') or [])}</section>"
        f"{_data(report)}{_preflight(report)}{_accuracy(report)}{_samples(report)}{_trace(report)}"
        "</main></body></html>"
    )
