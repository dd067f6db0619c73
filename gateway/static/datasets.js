// simtrain web page: the prepared datasets at "/datasets", one dataset at "/datasets/<id>" with its
// statistics and its rows exactly as training sees them (trained tokens apart from masked ones and padding).
// Uses the helpers of app.js (h, api, notice, fmtInt), which loads after this file and calls these pages.
"use strict";

const ROWS_PER_PAGE = 8;
// Characters that would vanish in a row, drawn as a visible mark (a newline also breaks the line).
const VISIBLE = { "\n": "⏎", "\r": "␍", "\t": "⇥", "\u0000": "␀" };
const ROLE_TEXT = { trained: "trained: loss is taken on predicting it", masked: "masked: input only, no loss",
  padding: "padding: filler after the example's end" };

const datasetPath = (id) => `/datasets/${encodeURIComponent(id)}`;

async function datasetsPage(root) {
  root.replaceChildren(h("p", { class: "muted" }, "Loading datasets…"));
  let listed;
  try {
    listed = (await api("GET", "/v1/datasets")).datasets;
  } catch (err) {
    root.replaceChildren(h("div", { class: "card" }, h("p", {}, `Could not list datasets: ${err.message}`)));
    return;
  }
  const head = ["dataset", "module", "source", "tokenizer", "packing", "vocab", "train tokens", "val tokens", "warnings"];
  const rows = listed.map((d) => h("tr", { "data-dataset": d.id },
    h("td", {}, h("a", { class: "mono", href: datasetPath(d.id) }, d.id)),
    h("td", {}, d.module), h("td", { class: "mono" }, sourceText(d)), h("td", {}, d.tokenizer), h("td", {}, d.packing),
    h("td", { class: "num" }, fmtInt(d.vocab_size)),
    h("td", { class: "num" }, fmtInt((d.splits.train || {}).tokens)),
    h("td", { class: "num" }, fmtInt((d.splits.val || {}).tokens)),
    h("td", { class: "num" }, String(d.warnings.length))));
  root.replaceChildren(h("section", { class: "card", id: "datasets" },
    h("h2", {}, "Prepared datasets"),
    listed.length ? h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))), h("tbody", {}, rows))
      : h("p", { class: "empty", id: "no-datasets" },
        "No datasets prepared yet: submit a job, or run `simtrain datasets prepare`.")));
}

async function datasetPage(root, datasetId) {
  let info;
  try {
    info = await api("GET", `/v1/datasets/${encodeURIComponent(datasetId)}`);
  } catch (err) {
    root.replaceChildren(h("div", { class: "card", id: "dataset-error" }, h("p", {}, err.message),
      h("a", { href: "/datasets" }, "← all datasets")));
    return;
  }
  const rowsBox = h("section", { class: "card", id: "rows" });
  root.replaceChildren(h("p", {}, h("a", { href: "/datasets" }, "← all datasets")),
    h("div", { class: "job-head" }, h("h1", {}, "Dataset ", h("span", { class: "mono" }, info.id))),
    datasetSummary(info), rowsBox);
  await rowBrowser(rowsBox, info);
}

// The source, with the corpus its prompts retrieve from and the examples each row remembers, if any:
// two datasets of one source tell apart.
const sourceText = (d) => {
  const s = d.stats || {};
  const corpus = (s.retrieval || {}).corpus;
  const remembered = (s.memory || {}).examples_before;
  return d.source + (corpus ? ` + retrieval from ${corpus}` : "") + (remembered ? ` + memory of ${remembered} examples` : "");
};

function datasetSummary(info) {
  const split = (name) => info.splits[name] || { tokens: 0, examples: 0 };
  const rows = [
    ["module", info.module], ["source", info.source], ["tokenizer", info.tokenizer], ["packing", info.packing],
    ["vocabulary", fmtInt(info.vocab_size)],
    ["train", `${fmtInt(split("train").tokens)} tokens, ${fmtInt(split("train").examples)} examples`],
    ["val", `${fmtInt(split("val").tokens)} tokens, ${fmtInt(split("val").examples)} examples`],
  ];
  const s = info.stats || {};
  for (const [key, label] of [["duplicate_examples", "duplicate examples"], ["empty_examples", "empty examples"],
    ["train_val_overlap", "examples in both splits"], ["val_tokens_unseen_in_train", "val tokens unseen in train"]]) {
    if (typeof s[key] === "number") rows.push([label, fmtInt(s[key])]);
  }
  const r = s.retrieval;
  if (r) {
    rows.push(["retrieval", `${r.retriever} over ${r.corpus}: ${fmtInt(r.passages)} passages, top ${r.retrieve_k}, ` +
      `up to ${r.context_tokens} tokens of context`]);
    const examples = (r.examples.train || 0) + (r.examples.val || 0);
    const supported = (r.supported.train || 0) + (r.supported.val || 0);
    rows.push(["answers in the context", `${fmtInt(supported)} of ${fmtInt(examples)} examples`]);
    rows.push(["val passages left out", fmtInt(r.val_passages_excluded)]);
  }
  const m = s.memory;
  if (m) {
    rows.push(["episodic memory", `the ${m.examples_before} examples before each row in its document and split, ` +
      `untrained; rows with some: train ${fmtInt(m.rows_with_memory.train)}, val ${fmtInt(m.rows_with_memory.val)}`]);
  }
  const lengths = s.example_tokens;
  if (lengths && lengths.count) {
    rows.push(["tokens per example", `min ${lengths.min}, median ${lengths.p50}, p95 ${lengths.p95}, max ${lengths.max}`]);
  }
  return h("section", { class: "card", id: "dataset-stats" }, h("h2", {}, "Statistics"),
    h("table", { class: "params" }, h("tbody", {},
      rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { class: "mono" }, String(v)))))),
    info.warnings.length ? h("ul", { class: "check-list warn", id: "dataset-warnings" },
      info.warnings.map((w) => h("li", {}, w))) : h("p", { class: "muted" }, "No warnings."));
}

// The rows of a split, a page at a time; split, block size and the first row live in the address.
async function rowBrowser(box, info) {
  const query = new URLSearchParams(location.search);
  const state = {
    split: query.get("split") === "val" ? "val" : "train",
    start: Math.max(0, parseInt(query.get("start"), 10) || 0),
    block: Math.max(1, parseInt(query.get("block_size"), 10) || 64),
  };
  const split = h("select", { id: "rows-split" }, ["train", "val"].map((s) => h("option", { value: s }, s)));
  const block = h("input", { id: "rows-block", type: "number", min: 1, max: 8192, value: state.block });
  const prev = h("button", { id: "rows-prev", class: "secondary" }, "← previous");
  const next = h("button", { id: "rows-next", class: "secondary" }, "next →");
  const where = h("span", { class: "muted", id: "rows-where" });
  const shares = h("p", { class: "muted", id: "rows-shares" });
  const list = h("div", { id: "rows-list" });
  split.value = state.split;
  box.replaceChildren(h("h2", {}, "Rows as training sees them"),
    h("div", { class: "toolbar" }, h("label", {}, "split ", split), h("label", {}, "block size ", block),
      h("span", { class: "spacer" }), where, prev, next),
    rowLegend(), shares, list);

  let total = 0;
  let asked = 0;  // the latest load: an answer to an earlier one (a quick second click) is dropped
  const load = async () => {
    const mine = ++asked;
    const params = new URLSearchParams({ split: state.split, start: state.start, count: ROWS_PER_PAGE,
      block_size: state.block });
    history.replaceState(null, "", `${location.pathname}?${new URLSearchParams({ split: state.split,
      start: state.start, block_size: state.block })}`);
    shares.textContent = blockShares(info, state.block);
    let body;
    try {
      body = await api("GET", `/v1/datasets/${encodeURIComponent(info.id)}/rows?${params}`);
    } catch (err) {
      if (mine !== asked) return;
      list.replaceChildren(h("p", { class: "error-box", id: "rows-error" }, err.message));
      where.textContent = "";
      prev.disabled = next.disabled = true;
      return;
    }
    if (mine !== asked) return;
    total = body.total_rows;
    const shown = body.rows;
    where.textContent = shown.length
      ? `rows ${shown[0].index}–${shown[shown.length - 1].index} of ${fmtInt(total)}`
      : `no rows here (${fmtInt(total)} in this split)`;
    prev.disabled = state.start === 0;
    next.disabled = state.start + ROWS_PER_PAGE >= total;
    list.replaceChildren(...(shown.length ? shown.map(rowView)
      : [h("p", { class: "empty", id: "rows-empty" }, total ? "Past the last row." : "This split is empty.")]));
  };
  split.addEventListener("change", () => { state.split = split.value; state.start = 0; load(); });
  block.addEventListener("change", () => { state.block = Math.max(1, parseInt(block.value, 10) || 64); load(); });
  prev.addEventListener("click", () => { state.start = Math.max(0, state.start - ROWS_PER_PAGE); load(); });
  next.addEventListener("click", () => { state.start += ROWS_PER_PAGE; load(); });
  await load();
}

// What the dataset's statistics say of this block size over the whole dataset (given for a few sizes).
function blockShares(info, block) {
  const at = ((info.stats || {}).at_block_size || {})[String(block)];
  if (!at) return "";
  const pct = (x) => `${(100 * x).toFixed(1)}%`;
  return `Over the whole dataset at block size ${block}: ${pct(at.truncated)} of examples truncated, ` +
    `${pct(at.padded)} of target positions padding, ${pct(at.masked)} not trained (masked or padding).`;
}

function rowLegend() {
  return h("div", { class: "legend token-legend", id: "rows-legend" },
    ...["trained", "masked", "padding"].map((role) => h("span", {}, h("span", { class: `tok ${role}` }, role),
      ` ${ROLE_TEXT[role].split(": ")[1]}`)),
    h("span", { class: "muted" }, "⏎ newline · ⇥ tab · special tokens in bold"));
}

const visible = (text) => [...text].map((ch) => VISIBLE[ch] || ch).join("");

// One row: a token per span, styled by its role; a run of padding as one span, with its count.
function rowView(row) {
  const counts = { trained: 0, masked: 0, padding: 0 };
  const spans = [];
  let padding = 0;
  const flushPadding = () => {
    if (padding) spans.push(h("span", { class: "tok padding", title: ROLE_TEXT.padding }, `pad ×${padding}`));
    padding = 0;
  };
  for (const t of row.tokens) {
    counts[t.role] = (counts[t.role] || 0) + 1;
    if (t.role === "padding") { padding += 1; continue; }
    flushPadding();
    spans.push(h("span", { class: `tok ${t.role}${t.special ? " special" : ""}`, "data-id": t.id,
      title: `id ${t.id} · ${ROLE_TEXT[t.role] || t.role}` }, visible(t.text)));
    if (t.text.includes("\n")) spans.push(h("br"));
  }
  flushPadding();
  const facts = [`at token ${fmtInt(row.token_offset)}`, `${counts.trained} of ${row.tokens.length} trained`];
  if (row.truncated) facts.push("truncated to the block");
  return h("div", { class: "row-view", "data-row": row.index },
    h("div", { class: "row-head muted" }, `row ${row.index} · ${facts.join(" · ")}`),
    h("div", { class: "row-tokens" }, spans));
}
