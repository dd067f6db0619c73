// simtrain web page: the jobs table and submit form at "/", one job at "/jobs/<id>" (one experiment at
// "/experiments/<id>": experiment.js; the dataset pages are datasets.js's).
// Plain DOM and a hand-written SVG chart; no build step. All data comes from the REST API, sent with the
// token the user saved (localStorage), so the page itself needs no secret.
"use strict";

const TOKEN_KEY = "simtrain-token";
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

// -- tiny helpers ---------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : String(c));
  return el;
}

const fmt = (x, digits = 4) => (typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "—");
const shortened = (text, most) => (text.length <= most ? text : `${text.slice(0, most - 1)}…`);
const fmtInt = (x) => (typeof x === "number" && isFinite(x) ? Math.round(x).toLocaleString("en") : "—");

function ago(seconds) {
  const d = Date.now() / 1000 - seconds;
  if (d < 60) return `${Math.max(0, Math.round(d))}s ago`;
  if (d < 3600) return `${Math.round(d / 60)}m ago`;
  if (d < 86400) return `${Math.round(d / 3600)}h ago`;
  return new Date(seconds * 1000).toLocaleDateString();
}

const pill = (status) => h("span", { class: `pill ${status}`, "data-status": status }, status);

// The fit verdict is the page's answer; green is kept for "fit" alone, so a run that succeeded on data
// that is not fit never looks fine.
const VERDICT_CLASS = { "fit": "fit", "fit with warnings": "warnings", "not fit": "not-fit" };
const verdictBadge = (verdict, big) => h("span", {
  class: `verdict-badge ${VERDICT_CLASS[verdict] || "none"}${big ? " big" : ""}`, "data-verdict": verdict,
}, verdict);

function progressCell(job) {
  const { step, max_iters } = job.progress;
  const pct = max_iters ? Math.min(100, (100 * step) / max_iters) : 0;
  return h("div", { class: "progress-cell" },
    h("div", { class: "bar" }, h("span", { style: `width:${pct}%` })),
    h("span", { class: "mono" }, `${step}/${max_iters}`));
}

// -- the API --------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code;
    this.details = err.details || [];
  }
}

function authHeaders(extra) {
  const token = localStorage.getItem(TOKEN_KEY);
  return Object.assign(token ? { Authorization: `Bearer ${token}` } : {}, extra || {});
}

async function api(method, path, body, extraHeaders) {
  const init = { method, headers: authHeaders(extraHeaders) };
  if (body !== undefined) {
    if (body instanceof Blob) init.body = body;
    else {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
  }
  const res = await fetch(path, init);
  if (res.status === 401) needToken();
  if (!res.ok) {
    let parsed = null;
    try { parsed = await res.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, parsed);
  }
  return res.status === 204 ? null : res.json();
}

// Server-Sent Events over fetch, so the Authorization header goes along (EventSource cannot send one).
async function readEvents(path, lastId, onEvent, signal) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  if (lastId) headers["Last-Event-ID"] = lastId;
  const res = await fetch(path, { headers, signal });
  if (res.status === 401) needToken();
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = val;
        else if (field === "data") data.push(val);
        else if (field === "id") id = val;
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")), id);
    }
  }
}

// -- notices and the token ------------------------------------------------------------------------

function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text || "";
  box.hidden = !text;
}

function needToken() {
  notice("This gateway needs an API token: enter it at the top right and press Save.");
  document.getElementById("token").focus();
}

function setupToken() {
  const input = document.getElementById("token");
  input.value = localStorage.getItem(TOKEN_KEY) || "";
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value) localStorage.setItem(TOKEN_KEY, input.value);
    else localStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
}

// -- the home page: submit form and jobs table ----------------------------------------------------

async function homePage(root) {
  const form = submitForm();
  const table = jobsTable();
  root.replaceChildren(h("div", { class: "grid" }, form.el, table.el));
  const [, , experiments] = await Promise.all([form.load(), table.refresh(), experimentsCard(tagWords(new URLSearchParams(location.search).get("tag") || "")).catch(() => null)]);
  if (experiments) root.append(experiments);
  root.dataset.loaded = "home";  // both tables drawn (tests wait for it)
  form.onSubmitted = () => table.refresh();
  setInterval(() => table.refresh(), 2000);
}

const COLUMNS = ["job", "verdict", "status", "name", "tags", "progress", "train loss", "val loss", "model", "data",
  "created"];

// Words typed into a tags box: split at commas and spaces (a tag has neither).
const tagWords = (text) => text.split(/[\s,]+/).filter(Boolean);

function jobsTable() {
  const filter = h("select", { id: "status-filter", onchange: () => self.refresh() },
    h("option", { value: "" }, "all"),
    ...["queued", "running", "succeeded", "failed", "cancelled"].map((s) => h("option", { value: s }, s)));
  const tagFilter = h("input", { id: "tag-filter", placeholder: "any", size: "12", title: "jobs with every tag given",
    value: new URLSearchParams(location.search).get("tag") || "", onchange: () => self.refresh() });
  const body = h("tbody", { id: "jobs-body" });
  const el = h("section", { class: "card" },
    h("div", { class: "toolbar" }, h("h2", { style: "margin:0" }, "Jobs"), h("span", { class: "spacer" }),
      h("label", { class: "muted", for: "tag-filter" }, "tags "), tagFilter,
      h("span", { class: "muted" }, " status "), filter),
    h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", {}, c)))),
      body));
  let busy = false;
  const self = {
    el,
    // A tag clicked in the table becomes the filter.
    filterBy(tag) {
      tagFilter.value = tag;
      self.refresh();
    },
    async refresh() {
      if (busy) return;
      busy = true;
      const tags = tagWords(tagFilter.value);
      try {
        const q = (filter.value ? `&status=${filter.value}` : "") +
          tags.map((t) => `&tag=${encodeURIComponent(t)}`).join("");
        const page = await api("GET", `/v1/jobs?limit=50${q}`);
        notice("");
        const none = tags.length || filter.value ? "No job matches the filters." : "No jobs yet: submit one.";
        body.replaceChildren(...(page.jobs.length ? page.jobs.map((job) => jobRow(job, self.filterBy))
          : [h("tr", {}, h("td", { colspan: COLUMNS.length, class: "empty" }, none))]));
      } catch (err) {
        if (err.status !== 401) notice(`Could not list jobs: ${err.message}`);
      } finally {
        busy = false;
      }
    },
  };
  return self;
}

// A job record's spec is null when it no longer reads (the record then says why, in its error).
const modelName = (spec) => !spec ? "—"
  : spec.model.model_type || `${spec.model.n_layer} layers × ${spec.model.n_head} heads × ${spec.model.n_embd} wide`;
const dataName = (spec) => !spec ? "—" : spec.dataset.id || `${spec.dataset.module}:${spec.dataset.source}`;

function verdictCell(job) {
  if (job.verdict) return verdictBadge(job.verdict);
  return h("span", { class: "muted", "data-verdict": "" }, FINISHED.has(job.status) ? "no verdict" : "pending");
}

// A job's tags as chips; clicking one calls onPick with it (the jobs table filters by it).
function tagChips(spec, onPick) {
  return ((spec && spec.tags) || []).map((tag) => h(onPick ? "button" : "span", {
    class: "tag", type: onPick ? "button" : null, "data-tag": tag, title: onPick ? `only jobs tagged ${tag}` : null,
    onclick: onPick ? () => onPick(tag) : null,
  }, tag));
}

function jobRow(job, onTag) {
  const m = job.metrics || {};
  return h("tr", { "data-job": job.id },
    h("td", {}, h("a", { class: "mono", href: `/jobs/${job.id}` }, job.id.slice(0, 12))),
    h("td", { class: "verdict-cell" }, verdictCell(job)),
    h("td", {}, pill(job.status)),
    h("td", { class: "name-cell" }, (job.spec && job.spec.name) || ""),
    h("td", { class: "tags-cell" }, tagChips(job.spec, onTag)),
    h("td", {}, progressCell(job)),
    h("td", { class: "num" }, fmt(m["train/loss"])),
    h("td", { class: "num" }, fmt(m["val/loss"])),
    h("td", {}, modelName(job.spec)),
    h("td", { class: "mono" }, dataName(job.spec)),
    h("td", { class: "muted" }, ago(job.created_at)));
}

// -- the job page ---------------------------------------------------------------------------------

async function jobPage(root, jobId) {
  let job;
  try {
    job = await api("GET", `/v1/jobs/${jobId}`);
  } catch (err) {
    root.replaceChildren(h("div", { class: "card" }, h("p", {}, err.message), h("a", { href: "/" }, "← all jobs")));
    return;
  }
  const series = { train: [], val: [] };
  let lastId = null;
  let report = null;
  let hasCheckpoint = false;
  const head = h("div", { class: "job-head" });
  const verdictBox = h("section", { class: "card verdict-card", id: "verdict" });
  const errorBox = h("div", { id: "job-error" });
  const stats = h("div", { class: "stats", id: "stats" });
  const chartBox = h("div", { id: "chart-box" });
  const paramsBox = h("section", { class: "card", id: "params" });
  const reportBox = h("div", { class: "stack", id: "report" });
  const forkBox = forkCard(job);
  const ask = askCard(jobId);
  root.replaceChildren(h("p", {}, h("a", { href: "/" }, "← all jobs")), head, lineage(job.spec), verdictBox,
    errorBox, stats,
    h("div", { class: "stack" },
      h("section", { class: "card" }, h("h2", {}, "Loss ", h("span", { class: "muted" }, "(live)")), chartBox),
      ask.el, paramsBox, forkBox.el, reportBox));

  const drawChart = () => chartBox.replaceChildren(lossChart(series, job.progress.max_iters, noMetricsText(job)));
  const render = () => {
    const name = job.spec && job.spec.name;
    head.replaceChildren(h("h1", {}, name ? h("span", { id: "job-name" }, `${name} `) : null,
      "Job ", h("span", { class: "mono" }, job.id)), ...tagChips(job.spec, (tag) => { location.href = `/?tag=${encodeURIComponent(tag)}`; }),
      h("span", { class: "run-state" }, "run ", pill(job.status)),
      h("span", { class: "spacer" }), ...jobActions(job, hasCheckpoint, () => location.reload()));
    verdictBox.replaceChildren(...verdictParts(job, report));
    const m = job.metrics || {};
    const stat = (k, v) => h("div", { class: "stat" }, h("div", { class: "k" }, k), h("div", { class: "v" }, v));
    stats.replaceChildren(
      stat("step", `${job.progress.step} / ${job.progress.max_iters}`),
      stat("train loss", fmt(m["train/loss"])), stat("val loss", fmt(m["val/loss"])),
      stat("tokens / s", fmtInt(m.tokens_per_s)), stat("attempts", String(job.attempts)));
    errorBox.replaceChildren(...(job.error ? [h("div", { class: "error-box", id: "job-error-text" },
      h("strong", {}, job.status === "failed" ? "This job failed: " : "Error: "), job.error)] : []));
  };
  // A checkpoint appears at an evaluation and stays after the job ends; ask again when either may have
  // brought one, and offer the download only once there is one.
  let probing = false;
  const probeCheckpoint = async () => {
    if (hasCheckpoint || probing) return;
    probing = true;
    hasCheckpoint = await checkpointExists(job.id);
    probing = false;
    if (hasCheckpoint) {
      forkBox.checkpointReady();
      render();
    }
    ask.setReady(hasCheckpoint);
  };
  const loadReport = async () => {
    try {
      report = await api("GET", `/v1/jobs/${job.id}/report`);
    } catch (err) {
      if (err.status !== 404) notice(`Could not read the report: ${err.message}`);
      return;
    }
    render();
    showReport(reportBox, report);
  };
  paramsBox.replaceChildren(h("h2", {}, "Hyperparameters"), paramsTable(job.spec));
  render();
  drawChart();
  probeCheckpoint();

  const onEvent = (event, data, id) => {
    if (event === "metrics") {
      const step = data.step;
      if ("train/loss" in data) series.train.push([step, data["train/loss"]]);
      if ("val/loss" in data) {
        series.val.push([step, data["val/loss"]]);
        probeCheckpoint();
      }
      job.progress.step = Math.max(job.progress.step, step);
      Object.assign(job.metrics, data);
      render();
      drawChart();
    } else if (event === "status" || event === "end") {
      if (data.status === "deleted") { location.href = "/"; return; }
      job = data;
      render();
      drawChart();
      probeCheckpoint();
      if (event === "end") loadReport();
    }
    if (id) lastId = id;
  };
  // Follow the stream; if it breaks off before the job ends, pick it up where it stopped.
  for (;;) {
    try {
      await readEvents(`/v1/jobs/${jobId}/events`, lastId, onEvent);
      if (FINISHED.has(job.status)) break;
    } catch (err) {
      if (err.status === 404) break;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// Where the job came from: "forked from <job>", from its checkpoint or with fresh weights.
function lineage(spec) {
  if (!spec || !spec.forked_from) return h("p", { id: "lineage", hidden: true });
  const source = spec.forked_from;
  const how = spec.init_from === source ? "starting from its checkpoint" : "with fresh weights";
  return h("p", { id: "lineage" }, "forked from ",
    h("a", { class: "mono", href: `/jobs/${source}`, id: "forked-from" }, source.slice(0, 12)), ` (${how})`);
}

// Fork this job: new settings over its spec, from its checkpoint or not. Shows the CLI command too.
// field() is the submit form's (submit.js).
function forkCard(job) {
  const t = (job.spec && job.spec.training) || {};
  const iters = h("input", { id: "fork-max-iters", type: "number", min: "1", step: "1", value: t.max_iters || 300 });
  const lr = h("input", { id: "fork-lr", type: "number", step: "any", value: t.learning_rate || 0.0005 });
  const name = h("input", { id: "fork-name", maxlength: "128", placeholder: "(the source's)" });
  const fromCheckpoint = h("input", { id: "fork-from-checkpoint", type: "checkbox", disabled: true });
  const msg = h("div", { class: "form-msg", id: "fork-msg" });
  const command = h("code", { id: "fork-command" });
  const showCommand = () => {
    const parts = ["simtrain fork", job.id.slice(0, 8)];
    if (fromCheckpoint.checked) parts.push("--from-checkpoint");
    if (iters.value) parts.push(`--max-iters ${iters.value}`);
    if (lr.value) parts.push(`--lr ${lr.value}`);
    if (name.value.trim()) parts.push(`--name '${name.value.trim().replaceAll("'", "'\\''")}'`);
    command.textContent = parts.join(" ");
  };
  const button = h("button", { type: "submit", id: "fork-submit" }, "Fork");
  const submit = async (e) => {
    e.preventDefault();
    button.disabled = true;
    msg.className = "form-msg";
    msg.textContent = "";
    const changes = { training: { max_iters: Number(iters.value), learning_rate: Number(lr.value) } };
    if (name.value.trim()) changes.name = name.value.trim();
    try {
      const made = await api("POST", `/v1/jobs/${job.id}/fork`, { changes, init_from_checkpoint: fromCheckpoint.checked });
      location.href = `/jobs/${made.id}`;
    } catch (err) {
      msg.className = "form-msg error";
      msg.textContent = err.message;
      button.disabled = false;
    }
  };
  const el = h("form", { class: "card", id: "fork", onsubmit: submit, oninput: showCommand, novalidate: true },
    h("h2", {}, "Fork this job"),
    h("p", { class: "muted" }, "A new job with this one's settings and the changes below. From the checkpoint, it starts " +
      "from this job's weights with a fresh optimizer at step 0: the iterations are the fork's own."),
    h("div", { class: "row2" }, field("Iterations", iters, "changes.training.max_iters"),
      field("Learning rate", lr, "changes.training.learning_rate")),
    field("Name", name, "changes.name"),
    h("label", { class: "check" }, fromCheckpoint, " start from its checkpoint ",
      h("span", { class: "muted", id: "fork-checkpoint-note" }, "(none saved yet)")),
    button, msg, h("p", { class: "muted" }, "or from a shell: ", command));
  showCommand();
  return {
    el,
    checkpointReady() {
      fromCheckpoint.disabled = false;
      el.querySelector("#fork-checkpoint-note").textContent = "";
    },
  };
}

// What the chart says while it has no point: only a running or queued job has metrics still to come.
function noMetricsText(job) {
  return {
    queued: "queued: the curve starts at the first logged step",
    running: "waiting for the first metrics…",
    failed: "no metrics: the job failed before it logged a step",
    cancelled: "no metrics: the job was cancelled before it logged a step",
  }[job.status] || "no metrics were logged";
}

const reportPath = (jobId) => `/v1/jobs/${jobId}/report.html`;
// A dataset's page, its rows shown at the job's block size.
const datasetRowsPath = (id, blockSize) =>
  `/datasets/${encodeURIComponent(id)}` + (blockSize ? `?block_size=${blockSize}` : "");

// A link into the full report page (a check's row there has the id "check-<name>").
function reportLink(jobId, text, anchor, attrs) {
  const hash = anchor ? `#${encodeURIComponent(anchor)}` : "";
  return h("a", Object.assign({
    href: reportPath(jobId) + hash,
    onclick: (e) => { e.preventDefault(); openPage(reportPath(jobId), hash); },
  }, attrs || {}), text);
}

// The verdict card: the badge and summary, then each failing and warning check linked to its row.
function verdictParts(job, report) {
  const verdict = (report && report.verdict) || job.verdict;
  const fullReport = h("p", {}, reportLink(job.id, "Full fit report (plots, data, trace) →", null, { id: "report-page" }));
  if (!verdict) {
    const why = report ? "This report has no verdict."
      : !FINISHED.has(job.status) ? "The verdict comes with the fit report, when the job ends."
        : job.status === "failed" ? "The job failed before it wrote a fit report."
          : job.status === "cancelled" ? "The job was cancelled before it wrote a fit report."
            : "No fit report was stored for this job.";
    const label = FINISHED.has(job.status) ? "no verdict" : "verdict pending";
    const line = h("div", { class: "verdict-line" }, verdictBadge(label, true), h("span", { id: "verdict-summary" }, why));
    return report ? [line, fullReport] : [line];
  }
  const parts = [h("div", { class: "verdict-line" }, verdictBadge(verdict, true),
    h("span", { id: "verdict-summary" }, (report && report.summary) || ""))];
  if (!report) return parts;
  const checks = checkList(report.checks);
  for (const [level, title] of [["fail", "Failing checks"], ["warn", "Warnings"]]) {
    const hits = checks.filter((c) => c.verdict === level);
    if (!hits.length) continue;
    parts.push(h("h3", {}, title), h("ul", { class: `check-list ${level}`, id: `${level}-checks` },
      hits.map((c) => h("li", {},
        reportLink(job.id, c.title || c.name, `check-${c.name}`, { class: "check-link", "data-check": c.name }),
        c.reason ? h("span", { class: "muted" }, ` — ${c.reason}`) : null))));
  }
  parts.push(fullReport);
  return parts;
}

// What the job was asked to train: model, optimisation and data settings, from its spec.
function paramsTable(spec) {
  if (!spec) return h("p", { class: "muted" }, "The job's spec could not be read (its error says why).");
  const t = spec.training, ds = spec.dataset;
  const options = Object.entries(ds.options || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "none";
  const lr = t.lr_schedule && t.lr_schedule !== "constant"
    ? `${t.learning_rate} (${t.lr_schedule}, ${t.warmup_iters} warm-up steps)` : String(t.learning_rate);
  const rows = [
    ["model", "model preset", modelName(spec)],
    ["learning_rate", "learning rate", lr],
    ["batch_size", "batch size", t.batch_size],
    ["block_size", "block size", t.block_size],
    ["max_iters", "iterations", t.max_iters],
    ["eval_interval", "evaluate every", `${t.eval_interval} steps`],
    ["dataset", "dataset", ds.id ? `id ${ds.id}` : `${ds.module} module, source ${ds.source}`],
    ["tokenizer", "tokenizer", ds.tokenizer],
    ["packing", "packing", ds.packing],
    ["options", "dataset options", options],
  ];
  const cell = (key, value) => key === "dataset" && ds.id
    ? h("a", { href: datasetRowsPath(ds.id, t.block_size), id: "dataset-link" }, String(value)) : String(value);
  return h("table", { class: "params" }, h("tbody", {},
    rows.map(([key, label, value]) => h("tr", { "data-param": key }, h("th", {}, label),
      h("td", { class: "mono" }, cell(key, value))))));
}

function jobActions(job, hasCheckpoint, after) {
  const act = (label, cls, fn) => h("button", { class: cls, onclick: async (e) => {
    e.target.disabled = true;
    try { await fn(); after(); } catch (err) { notice(err.message); e.target.disabled = false; }
  } }, label);
  const out = [];
  if (!FINISHED.has(job.status)) out.push(act("Cancel", "danger", () => api("POST", `/v1/jobs/${job.id}/cancel`)));
  if (hasCheckpoint) {
    out.push(act("Checkpoint", "secondary", () => download(`/v1/jobs/${job.id}/checkpoint`, `${job.id}-checkpoint.pt`)));
  }
  if (FINISHED.has(job.status)) {
    out.push(act("Delete", "danger", async () => {
      if (!confirm("Delete this job, its report and checkpoint?")) throw new Error("not deleted");
      await api("DELETE", `/v1/jobs/${job.id}`);
      location.href = "/";
    }));
  }
  return out;
}

// "Ask the model": a prompt for the job's latest checkpoint, answered by the generate server.
function askCard(jobId) {
  const field = (label, input) => h("label", { class: "field" }, label, input,
    h("span", { class: "field-error", "data-error-for": input.name }));
  const prompt = h("textarea", { name: "prompt", id: "ask-prompt", rows: 2, maxlength: 2000,
    placeholder: "Text for the model to continue" });
  const maxNew = h("input", { name: "max_new_tokens", type: "number", min: 1, max: 512, value: 100 });
  const temperature = h("input", { name: "temperature", type: "number", min: 0.05, step: 0.05, value: 1 });
  const topK = h("input", { name: "top_k", type: "number", min: 1, placeholder: "all" });
  const n = h("input", { name: "n", type: "number", min: 1, max: 8, value: 1 });
  const button = h("button", { type: "submit", id: "ask-button", disabled: true }, "Ask");
  const status = h("p", { class: "muted", id: "ask-status" }, "The model can be asked once the job saves its first checkpoint.");
  const answers = h("div", { id: "ask-answers" });
  const form = h("form", { id: "ask-form" }, field("prompt", prompt),
    h("div", { class: "row4" }, field("new tokens", maxNew), field("temperature", temperature),
      field("top-k", topK), field("answers", n)), button, status, answers);
  const number = (input) => (input.value === "" ? undefined : Number(input.value));
  let ready = false;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
    button.disabled = true;
    status.textContent = "asking…";
    status.className = "muted";
    const body = { prompt: prompt.value, max_new_tokens: number(maxNew), temperature: number(temperature),
      top_k: number(topK), n: number(n) };
    try {
      const result = await api("POST", `/v1/jobs/${jobId}/generate`, body);
      status.textContent = `answered by the checkpoint at step ${result.step} in ${fmt(result.seconds, 2)} s`;
      const context = result.context == null ? [] : [h("div", { class: "muted", id: "ask-context" },
        h("strong", {}, `retrieved context (${result.context.passages} passage${result.context.passages === 1 ? "" : "s"}, before the prompt): `),
        h("span", { class: "mono" }, result.context.text || "(nothing found)"))];
      const note = result.note ? [h("p", { class: "warn", id: "ask-note" }, result.note)] : [];
      answers.replaceChildren(...context, ...note,...result.completions.map((c) => h("div", { class: "sample answer" },
        h("span", { class: "prompt" }, result.prompt), c.text,
        c.stopped ? h("span", { class: "muted" }, " ⏎ (the model ended here)") : null)));
    } catch (err) {
      for (const d of err.details || []) {
        const slot = form.querySelector(`[data-error-for="${d.field}"]`);
        if (slot) slot.textContent = d.message;
      }
      status.textContent = err.message;
      status.className = "form-msg error";
    } finally {
      button.disabled = false;
    }
  });
  return {
    el: h("section", { class: "card", id: "ask" }, h("h2", {}, "Ask the model ",
      h("span", { class: "muted" }, "(its latest checkpoint)")), form),
    setReady(hasCheckpoint) {
      if (!hasCheckpoint || ready) return;
      ready = true;
      button.disabled = false;
      status.textContent = "";
    },
  };
}

// Whether the job has a checkpoint to download: one byte of it is asked for, not the file.
async function checkpointExists(jobId) {
  try {
    const res = await fetch(`/v1/jobs/${jobId}/checkpoint`, { headers: authHeaders({ Range: "bytes=0-0" }) });
    if (res.body) res.body.cancel();
    return res.ok;
  } catch (_) {
    return false;
  }
}

async function download(path, name) {
  const res = await fetch(path, { headers: authHeaders() });
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
  const url = URL.createObjectURL(await res.blob());
  h("a", { href: url, download: name }).click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// A page behind the token, in a new tab: a plain link cannot send the Authorization header, so fetch the
// page with it and open what came back (at ``hash``, a place in it). The tab opens at the click, before
// the fetch (no pop-up block).
async function openPage(path, hash) {
  const tab = window.open("", "_blank");
  try {
    const res = await fetch(path, { headers: authHeaders() });
    if (res.status === 401) needToken();
    if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
    const url = URL.createObjectURL(await res.blob()) + (hash || "");
    if (tab) tab.location = url;
    else location.href = url;
  } catch (err) {
    if (tab) tab.close();
    notice(`Could not open the page: ${err.message}`);
  }
}

function showReport(box, report) {
  const init = report.loss_at_init || {};
  const final = report.final || {};
  const trained = "final" in report || "loss_at_init" in report;
  const summary = h("section", { class: "card", id: "summary" }, h("h2", {}, "Report"),
    h("table", {}, h("tbody", {},
      trained ? [
        h("tr", {}, h("td", {}, "loss at init"), h("td", { class: "num" }, fmt(init.val, 3)),
          h("td", { class: "muted" }, `ln(vocab) = ${fmt(init.expected_ln_vocab, 3)}`)),
        h("tr", {}, h("td", {}, "final train loss"), h("td", { class: "num" }, fmt(final.train_loss, 3)), h("td", {})),
        h("tr", {}, h("td", {}, "final val loss"), h("td", { class: "num" }, fmt(final.val_loss, 3)), h("td", {})),
      ] : h("tr", {}, h("td", {}, "trained"), h("td", { colspan: 2 }, "nothing: the data could not be served")),
      report.dataset ? h("tr", {}, h("td", {}, "dataset"), h("td", { class: "mono", colspan: 2 },
        `${report.dataset.module}:${report.dataset.source}` +
        (report.dataset.vocab_size ? ` · vocab ${report.dataset.vocab_size}` : ""),
        report.dataset.id ? [" · ", h("a", { id: "report-dataset-link",
          href: datasetRowsPath(report.dataset.id, (report.training || {}).block_size) },
        "the rows it trained on →")] : null)) : null)));
  box.replaceChildren(summary, checksCard(report.checks), ...probesCard(report.probes), samplesCard(report.samples || []));
}

// The spec's probes: each prompt's greedy answer at the shown evaluation steps, scored where expected.
function probesCard(probes) {
  if (!probes || !(probes.items || []).length) return [];
  const steps = probes.shown_steps || probes.steps || [];
  const cell = (row) => {
    if (!row) return h("td", {});
    if (row.error) return h("td", { class: "muted" }, row.error);
    const mark = !("exact" in row) ? null
      : h("div", { class: row.exact || row.prefix ? "probe-ok" : "probe-bad" },
        `${row.exact ? "exact" : row.prefix ? "prefix" : "✗"} ${row.token_accuracy == null ? "" : `${Math.round(row.token_accuracy * 100)}%`}`);
    return h("td", {}, h("span", { class: "mono" }, JSON.stringify(row.text)), mark);
  };
  const rows = probes.items.map((item) => {
    const probe = h("td", {}, h("span", { class: "mono" }, JSON.stringify(item.prompt)),
      item.expected == null ? null : h("div", { class: "muted mono" }, `→ ${JSON.stringify(item.expected)}`),
      item.context == null ? null : h("div", { class: "muted mono probe-context", title: item.context },
        `after context ${JSON.stringify(shortened(item.context, 80))}`));
    if (item.error) return h("tr", {}, probe, h("td", { class: "muted", colspan: steps.length }, item.error));
    const byStep = new Map((item.answers || []).map((r) => [r.step, r]));
    return h("tr", {}, probe, ...steps.map((s) => cell(byStep.get(s))));
  });
  const f = probes.final;
  const lead = f ? h("p", { class: "muted", id: "probes-final" },
    `At the last evaluation: ${f.exact} of ${f.scored} exact, ${f.prefix} by prefix` +
    (f.token_accuracy == null ? "." : `, ${Math.round(f.token_accuracy * 100)}% of expected tokens right.`)) : null;
  const note = probes.note ? h("p", { class: "warn", id: "probes-note" }, `Probes ${probes.note}.`) : null;
  return [h("section", { class: "card", id: "probes" }, h("h2", {}, "Probes ", h("span", { class: "muted" }, "(greedy answers over training)")),
    lead, note, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "probe"), ...steps.map((s) => h("th", {}, `step ${s}`)))),
      h("tbody", {}, rows)))];
}

// Checks come as a list of {name, verdict, reason, value} or as an object keyed by name.
function checkList(checks) {
  return Array.isArray(checks) ? checks
    : Object.entries(checks || {}).map(([name, c]) => Object.assign({ name }, typeof c === "object" ? c : { value: c }));
}

function checksCard(checks) {
  const rows = checkList(checks).map((c) => h("tr", {},
    h("td", {}, c.name), h("td", {}, c.verdict ? pill(c.verdict) : "—"),
    h("td", {}, c.reason || c.message || ""),
    h("td", { class: "num" }, typeof c.value === "number" ? fmt(c.value, 3) : (c.value ?? ""))));
  return h("section", { class: "card", id: "checks" }, h("h2", {}, "Checks"),
    rows.length ? h("table", {}, h("thead", {}, h("tr", {}, ["check", "verdict", "why", "value"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows))
      : h("p", { class: "muted" }, "This report has no checks."));
}

function samplesCard(samples) {
  return h("section", { class: "card", id: "samples" }, h("h2", {}, "Samples"),
    samples.length ? samples.map((s) => h("div", { class: "sample" }, h("span", { class: "prompt" }, s.prompt), s.completion))
      : h("p", { class: "muted" }, "No samples."));
}

// -- the loss chart: a small SVG line chart ---------------------------------------------------------

function niceTicks(lo, hi, count) {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

// Train and val loss against step. The legend is a line above the plot, so it never covers a curve.
function lossChart(series, maxIters, emptyText) {
  const W = 760, H = 310, L = 64, R = 16, T = 12, B = 42;
  const all = [...series.train, ...series.val];
  const el = svg("svg", { class: "chart", id: "chart", viewBox: `0 0 ${W} ${H}`, "data-points": String(all.length),
    role: "img", "aria-label": "loss curve" });
  if (!all.length) {
    el.setAttribute("viewBox", `0 0 ${W} 60`);
    el.append(svg("text", { x: W / 2, y: 34, "text-anchor": "middle", class: "axis-label", id: "chart-empty" }, emptyText));
    return h("div", {}, el);
  }
  const xMax = Math.max(maxIters || 0, ...all.map((p) => p[0]), 1);
  let yLo = Math.min(...all.map((p) => p[1])), yHi = Math.max(...all.map((p) => p[1]));
  const pad = (yHi - yLo) * 0.08 || 0.5;
  yLo = Math.max(0, yLo - pad);
  yHi += pad;
  const x = (v) => L + ((W - L - R) * v) / xMax;
  const y = (v) => T + (H - T - B) * (1 - (v - yLo) / (yHi - yLo));
  for (const t of niceTicks(yLo, yHi, 5)) {
    el.append(svg("line", { class: "grid-line", x1: L, x2: W - R, y1: y(t), y2: y(t) }),
      svg("text", { class: "axis-label", x: L - 6, y: y(t) + 4, "text-anchor": "end" }, String(+t.toFixed(3))));
  }
  for (const t of niceTicks(0, xMax, 6)) {
    el.append(svg("text", { class: "axis-label", x: x(t), y: H - B + 16, "text-anchor": "middle" }, String(t)));
  }
  const midY = T + (H - T - B) / 2;
  el.append(
    svg("text", { class: "axis-title", id: "x-title", x: L + (W - L - R) / 2, y: H - 6, "text-anchor": "middle" }, "step"),
    svg("text", { class: "axis-title", id: "y-title", x: 14, y: midY, "text-anchor": "middle",
      transform: `rotate(-90 14 ${midY})` }, "loss (nats/token)"));
  for (const name of ["train", "val"]) {
    const pts = series[name];
    if (!pts.length) continue;
    el.append(svg("polyline", { class: name, points: pts.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(" ") }));
    // Every val point is marked (they are few); train gets a mark at its latest point.
    const marks = name === "val" ? pts : pts.slice(-1);
    for (const [a, b] of marks) el.append(svg("circle", { class: name, cx: x(a).toFixed(1), cy: y(b).toFixed(1), r: 3.5 }));
  }
  const legend = h("div", { class: "legend", id: "chart-legend" },
    h("span", {}, h("i", { style: "background:var(--train)" }), `train loss (${series.train.length} points)`),
    h("span", {}, h("i", { style: "background:var(--val)" }), `val loss (${series.val.length} points)`));
  return h("div", {}, legend, el);
}

// -- start ----------------------------------------------------------------------------------------

function main() {
  setupToken();
  const root = document.getElementById("app");
  const path = location.pathname;
  const job = path.match(/^\/jobs\/([0-9a-f]{1,64})$/);
  const experiment = path.match(/^\/experiments\/([0-9a-f]{1,64})$/);
  const dataset = path.match(/^\/datasets\/([A-Za-z0-9_.-]{1,128})$/);
  const shown = job ? jobPage(root, job[1])
    : experiment ? experimentPage(root, experiment[1])
      : dataset ? datasetPage(root, dataset[1])
        : path === "/datasets" ? datasetsPage(root)
          : homePage(root);
  shown.catch((err) => notice(err.message));
}

main();
