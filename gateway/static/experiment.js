// The experiment page, "/experiments/<id>": each run's status, then the comparison of the variants (the
// ranking first, then checks, data and spec side by side) and the val-loss curves the gateway draws.
// Uses the helpers of app.js (h, api, notice, pill, verdictBadge, fmt), which loads after this script.
"use strict";

const CHECK_CLASS = { pass: "fit", warn: "warnings", fail: "not-fit", skip: "none" };

function cellText(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  return typeof value === "string" ? value : JSON.stringify(value);
}

function sideBySide(id, title, rows, names) {
  return h("table", { id },
    h("thead", {}, h("tr", {}, h("th", {}, title), ...names.map((n) => h("th", {}, n)))),
    h("tbody", {}, ...Object.entries(rows).map(([label, values]) =>
      h("tr", {}, h("td", {}, label), ...names.map((n) => h("td", { class: "mono" }, cellText(values[n])))))));
}

function rankingTable(c) {
  const byName = Object.fromEntries(c.variants.map((v) => [v.name, v]));
  return h("table", { id: "ranking" },
    h("thead", {}, h("tr", {}, ["#", "variant", `val loss (${c.unit})`, "seeds", "accuracy", "verdict",
      "against the best"].map((t) => h("th", {}, t)))),
    h("tbody", {}, ...c.ranking.map((r) => {
      const v = byName[r.variant];
      const loss = r.place === null ? "—" : `${fmt(r.mean)}${r.std === null ? "" : ` ± ${fmt(r.std, 3)}`}`;
      const against = r.place === null ? h("span", { class: "not-fit-text" }, `no loss: ${r.why}`)
        : r.behind_best ? r.behind_best.text : "best";
      return h("tr", { "data-variant": r.variant },
        h("td", {}, r.place === null ? "—" : String(r.place)), h("td", {}, r.variant),
        h("td", { class: "num" }, loss), h("td", { class: "num" }, String(v.n)),
        h("td", { class: "num" }, v.accuracy === null ? "—" : `${(100 * v.accuracy).toFixed(1)}%`),
        h("td", {}, v.verdict ? verdictBadge(v.verdict) : h("span", { class: "muted" }, "no report")),
        h("td", {}, against));
    })));
}

function checksTable(checks, names) {
  return h("table", { id: "checks-side-by-side" },
    h("thead", {}, h("tr", {}, h("th", {}, "check"), ...names.map((n) => h("th", {}, n)))),
    h("tbody", {}, ...checks.map((row) => h("tr", {}, h("td", {}, row.title || row.name), ...names.map((n) => {
      const cell = row.variants[n];
      if (!cell) return h("td", {}, "");
      const seeds = Object.values(cell.counts).reduce((a, b) => a + b, 0);
      const count = (cell.counts[cell.worst] || 0) < seeds ? ` ${cell.counts[cell.worst]}/${seeds}` : "";
      return h("td", { title: cell.reason || "" },
        h("span", { class: `verdict-badge ${CHECK_CLASS[cell.worst] || "none"}` }, `${cell.worst}${count}`));
    })))));
}

function runsTable(runs) {
  return h("table", { id: "runs" },
    h("thead", {}, h("tr", {}, ["variant", "seed", "job", "status", "progress", "verdict"].map((t) => h("th", {}, t)))),
    h("tbody", {}, ...runs.map((r) => h("tr", { "data-job": r.job_id },
      h("td", {}, r.variant), h("td", { class: "num" }, String(r.seed)),
      h("td", {}, h("a", { class: "mono", href: `/jobs/${r.job_id}` }, r.job_id.slice(0, 12))),
      h("td", {}, pill(r.status || "deleted")),
      h("td", { class: "mono" }, `${r.step}/${r.max_iters}`),
      h("td", {}, r.verdict ? verdictBadge(r.verdict) : h("span", { class: "muted" }, "pending"))))));
}

// The PNG is behind the token: fetched with it, shown from a blob URL.
async function curvesImage(experimentId) {
  const res = await fetch(`/v1/experiments/${experimentId}/curves.png`, { headers: authHeaders() });
  if (!res.ok) return h("p", { class: "muted" }, "The curves could not be drawn.");
  return h("img", { id: "curves", alt: "val loss per variant: mean over seeds, with its band",
    src: URL.createObjectURL(await res.blob()) });
}

async function experimentPage(root, experimentId) {
  const draw = async () => {
    const e = await api("GET", `/v1/experiments/${experimentId}`);
    const c = e.comparison;
    const names = c.variants.map((v) => v.name);
    const step = c.common_step === null ? "" : ` at step ${c.common_step}`;
    root.replaceChildren(h("section", { class: "card" },
      h("div", { class: "toolbar" }, h("h2", { style: "margin:0" }, e.name), h("span", { class: "spacer" }),
        pill(e.status),
        e.status === "finished" ? null : h("button", { onclick: () => api("POST", `/v1/experiments/${e.id}/cancel`)
          .then(draw).catch((err) => notice(err.message)) }, "Cancel")),
      h("p", { id: "summary", class: "verdict-line" }, c.summary),
      h("p", { class: "muted" }, `final val loss${step}, in ${c.unit}: ± after a loss is the seed-to-seed `
        + "standard deviation, ± after a difference its standard error; a difference counts when it is over "
        + "twice its standard error"),
      ...c.notes.map((n) => h("p", { class: "note" }, `note: ${n}`)),
      rankingTable(c),
      h("h3", {}, "val loss per variant"), await curvesImage(experimentId),
      Object.keys(c.differences).length ? [h("h3", {}, "what differs"), sideBySide("differences", "field", c.differences, names)] : null,
      h("h3", {}, "checks"), checksTable(c.checks, names),
      h("h3", {}, "data"), sideBySide("data", "statistic", c.data, names),
      h("h3", {}, "runs"), runsTable(e.runs)));
    return e.status === "finished";
  };
  const poll = async () => {
    try {
      if (!(await draw())) setTimeout(poll, 3000);
    } catch (err) {
      notice(err.message);
    }
  };
  await poll();
}

// On the home page, below the jobs: the experiments, newest first, each linked to its page (none: nothing).
// The experiments table of the home page; with tags (the page's `?tag=`), only experiments with every one.
async function experimentsCard(tags) {
  const filter = tags.map((t) => `&tag=${encodeURIComponent(t)}`).join("");
  const { experiments } = await api("GET", `/v1/experiments?limit=20${filter}`);
  if (!experiments.length) return null;
  const chips = (e) => (e.spec.tags || []).map((tag) =>
    h("a", { class: "tag", href: `/?tag=${encodeURIComponent(tag)}`, title: `only what is tagged ${tag}` }, tag));
  const done = (e) => e.runs.filter((r) => r.status === null || FINISHED.has(r.status)).length;
  return h("section", { class: "card", id: "experiments" },
    h("h2", { style: "margin-top:0" }, "Experiments"),
    h("table", {},
      h("thead", {}, h("tr", {}, ["experiment", "name", "tags", "status", "variants", "runs done", "created"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, ...experiments.map((e) => h("tr", { "data-experiment": e.id },
        h("td", {}, h("a", { class: "mono", href: `/experiments/${e.id}` }, e.id.slice(0, 12))),
        h("td", {}, e.name), h("td", { class: "tags-cell" }, chips(e)), h("td", {}, pill(e.status)),
        h("td", { class: "num" }, String(Object.keys(e.spec.variants).length)),
        h("td", { class: "mono" }, `${done(e)}/${e.runs.length}`),
        h("td", { class: "muted" }, ago(e.created_at)))))));
}
