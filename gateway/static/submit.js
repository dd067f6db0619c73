// The submit form of the home page: builds a job spec (POST /v1/jobs) from the data service's modules and
// their options (GET /v1/modules), the uploaded sources (GET /v1/sources) or a typed name, the packing,
// the training settings, a name and tags. It checks what the API checks before sending (simtrain/jobs.py),
// and shows each error, its own or the API's 422, next to the field at fault. Uses h(), api(), tagWords() from app.js.
"use strict";

// The dataset packings DatasetSpec.packing takes (the data service's PACKINGS).
const PACKINGS = [
  ["stream", "one token stream, cut into block-size windows"],
  ["pairs", "prompt and answer examples, the loss on the answer only"],
];
const OTHER_SOURCE = ""; // the source picker's "type a name" entry
const DEFAULT_SOURCE = "tiny.txt"; // the demo's corpus, which `simtrain demo` puts in the data root

// TrainingSpec's bounds, as pydantic checks them: [spec field, input id, lowest, highest (null: none),
// whole number, lowest excluded].
const TRAINING_LIMITS = [
  ["max_iters", "f-max-iters", 1, 10_000_000, true, false],
  ["eval_interval", "f-eval-interval", 1, null, true, false],
  ["batch_size", "f-batch-size", 1, 4096, true, false],
  ["block_size", "f-block-size", 2, 8192, true, false],
  ["learning_rate", "f-lr", 0, 1, false, true],
];

function field(label, input, path) {
  return h("label", { class: "field", "data-field": path }, label, input, h("span", { class: "field-error" }));
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let i = -1;
  do { n /= 1024; i += 1; } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

// A problem with one training number, in the user's words; null when pydantic would take it.
function numberProblem(text, [, , lo, hi, whole, loExcluded]) {
  if (text.trim() === "") return "give a number";
  const x = Number(text);
  if (!Number.isFinite(x)) return "not a number";
  if (whole && !Number.isInteger(x)) return "must be a whole number";
  if (loExcluded ? x <= lo : x < lo) return loExcluded ? `must be above ${lo}` : `must be at least ${lo}`;
  if (hi !== null && x > hi) return `must be at most ${hi.toLocaleString("en")}`;
  return null;
}

function submitForm() {
  const module = h("select", { id: "f-module", name: "module" });
  const sourcePick = h("select", { id: "f-source-pick" });
  const source = h("input", { id: "f-source", name: "source", value: DEFAULT_SOURCE, maxlength: "1024",
    placeholder: "a file name under the data root" });
  const file = h("input", { id: "f-file", type: "file" });
  const tokenizer = h("input", { id: "f-tokenizer", name: "tokenizer", value: "char", maxlength: "64" });
  const packing = h("select", { id: "f-packing", name: "packing" },
    PACKINGS.map(([value, about]) => h("option", { value, title: about }, value)));
  const options = h("div", { id: "f-options", class: "options" });
  const preset = h("select", { id: "f-model", name: "model_type" });
  const defaults = { max_iters: 300, eval_interval: 100, batch_size: 32, block_size: 64, learning_rate: 0.0005 };
  const training = Object.fromEntries(TRAINING_LIMITS.map(([name, id, lo, hi, whole]) => [name, h("input", {
    id, type: "number", value: defaults[name], step: whole ? "1" : "any", min: String(lo),
    max: hi === null ? null : String(hi),
  })]));
  const name = h("input", { id: "f-name", name: "name", maxlength: "128", placeholder: "optional, to find the run by" });
  const tags = h("input", { id: "f-tags", name: "tags", placeholder: "optional: words, e.g. baseline lr-sweep" });
  const msg = h("div", { class: "form-msg", id: "f-msg" });
  const button = h("button", { type: "submit", id: "f-submit" }, "Submit job");
  let modules = [];

  const optionsField = h("fieldset", { class: "field options-field", "data-field": "dataset.options" },
    h("legend", {}, "Module options ", h("span", { class: "muted" }, "(blank: the default)")),
    options, h("span", { class: "field-error" }));
  const el = h("form", { class: "card", id: "submit-form", onsubmit: submit, novalidate: true },
    h("h2", {}, "New job"),
    field("Data module", module, "dataset.module"),
    h("div", { class: "field", "data-field": "dataset.source" },
      h("label", { for: "f-source-pick" }, "Source"), sourcePick,
      h("label", { for: "f-source", class: "sub" }, "name (an uploaded file, or one under the data root)"), source,
      h("span", { class: "field-error" })),
    field("…or upload a file", file, "upload"),
    h("div", { class: "row2" }, field("Tokenizer", tokenizer, "dataset.tokenizer"),
      field("Packing", packing, "dataset.packing")),
    optionsField,
    field("Model", preset, "model"),
    h("div", { class: "row2" }, field("Iterations", training.max_iters, "training.max_iters"),
      field("Eval every", training.eval_interval, "training.eval_interval")),
    h("div", { class: "row2" }, field("Batch size", training.batch_size, "training.batch_size"),
      field("Block size", training.block_size, "training.block_size")),
    field("Learning rate", training.learning_rate, "training.learning_rate"),
    h("div", { class: "row2" }, field("Name", name, "name"), field("Tags", tags, "tags")),
    button, msg);

  const self = { el, onSubmitted: null };

  // -- errors next to their fields --------------------------------------------------------------------

  function clearErrors() {
    for (const box of el.querySelectorAll(".field-error")) box.textContent = "";
    for (const f of el.querySelectorAll("[data-field].invalid")) f.classList.remove("invalid");
    msg.className = "form-msg";
    msg.textContent = "";
  }

  // Show (path, message) at the field whose path is the longest prefix of path; false when none is.
  function showAtField(path, message) {
    let best = null;
    for (const f of el.querySelectorAll("[data-field]")) {
      const p = f.dataset.field;
      if ((path === p || path.startsWith(`${p}.`)) && (!best || p.length > best.dataset.field.length)) best = f;
    }
    if (!best) return false;
    const box = best.querySelector(":scope > .field-error");
    box.textContent = box.textContent ? `${box.textContent}; ${message}` : message;
    best.classList.add("invalid");
    return true;
  }

  function showErrors(errors) {
    const unplaced = errors.filter(([path, message]) => !showAtField(path, message));
    msg.className = "form-msg error";
    msg.textContent = unplaced.length ? unplaced.map(([p, m]) => (p ? `${p}: ${m}` : m)).join("; ")
      : "Please fix the fields marked in red.";
  }

  // -- what the data service offers -------------------------------------------------------------------

  function renderOptions() {
    const chosen = modules.find((m) => m.name === module.value);
    const offered = chosen ? chosen.options : [];
    options.replaceChildren(...(offered.length ? offered.map((o) => field(o.name, h("input", {
      id: `f-opt-${o.name}`, "data-option": o.name, "data-default": o.default,
      placeholder: JSON.stringify(o.default).slice(1, -1), title: o.description,
    }), `dataset.options.${o.name}`)) : [h("p", { class: "muted" }, "This module takes no options.")]));
  }

  function renderSources(listed, why) {
    const entries = listed.map((s) => h("option", { value: s.name,
      title: `uploaded ${new Date(s.uploaded_at).toLocaleString()}` }, `${s.name}  (${fmtBytes(s.size_bytes)})`));
    const other = h("option", { value: OTHER_SOURCE },
      why ? `type the name below (${why})` : listed.length ? "another: type its name below" : "none uploaded yet: type a name below");
    sourcePick.replaceChildren(...entries, other);
    // The default name is no use when no such file was uploaded: offer the first upload instead.
    if (listed.length && source.value === DEFAULT_SOURCE && !listed.some((s) => s.name === source.value)) {
      source.value = listed[0].name;
    }
    syncPick();
  }

  // The picker shows the typed name when it is a listed source, else "type a name".
  function syncPick() {
    const listed = [...sourcePick.options].some((o) => o.value && o.value === source.value);
    sourcePick.value = listed ? source.value : OTHER_SOURCE;
  }

  async function loadSources() {
    try {
      renderSources((await api("GET", "/v1/sources")).sources, null);
    } catch (err) {
      renderSources([], err.status === 501 ? "this data service cannot list them" : "the list did not load");
    }
  }

  sourcePick.addEventListener("change", () => {
    if (sourcePick.value !== OTHER_SOURCE) source.value = sourcePick.value;
    else source.focus();
  });
  source.addEventListener("input", syncPick);
  module.addEventListener("change", renderOptions);

  self.load = async () => {
    const [mods, models] = await Promise.allSettled([api("GET", "/v1/modules"), api("GET", "/v1/models")]);
    modules = mods.status === "fulfilled" ? mods.value.modules : [{ name: "text", description: "", options: [] }];
    module.replaceChildren(...modules.map((m) => h("option", { value: m.name, selected: m.name === "text",
      title: m.description || null }, m.name)));
    renderOptions();
    const presets = models.status === "fulfilled" ? models.value.presets : [{ model_type: "gpt-nano" }];
    preset.replaceChildren(...presets.map((p) => h("option", { value: p.model_type, selected: p.model_type === "gpt-nano" },
      p.n_layer ? `${p.model_type}  (${p.n_layer} layers, ${p.n_embd} wide)` : p.model_type)));
    await loadSources();
  };

  // -- the spec, checked as the API checks it ---------------------------------------------------------

  function problems() {
    const found = [];
    if (!module.value) found.push(["dataset.module", "choose a data module"]);
    if (!source.value.trim()) found.push(["dataset.source", "choose a source, type its name, or upload a file"]);
    if (!tokenizer.value.trim()) found.push(["dataset.tokenizer", "give a tokenizer (e.g. char)"]);
    for (const limits of TRAINING_LIMITS) {
      const problem = numberProblem(training[limits[0]].value, limits);
      if (problem) found.push([`training.${limits[0]}`, problem]);
    }
    // JobSpec's name and tags: at most 128 printable characters; at most 16 tags of at most 64 each.
    if (name.value.length > 128) found.push(["name", "at most 128 characters"]);
    if (/[\u0000-\u001f\u007f]/.test(name.value)) found.push(["name", "no control characters"]);
    const words = tagWords(tags.value);
    if (new Set(words).size > 16) found.push(["tags", "at most 16 tags"]);
    for (const tag of words) if (tag.length > 64) found.push(["tags", `${tag.slice(0, 12)}…: at most 64 characters`]);
    return found;
  }

  function spec() {
    const chosen = {};
    for (const input of options.querySelectorAll("input[data-option]")) {
      if (input.value !== "" && input.value !== input.dataset.default) chosen[input.dataset.option] = input.value;
    }
    return {
      dataset: { module: module.value, source: source.value.trim(), tokenizer: tokenizer.value.trim(),
        packing: packing.value, options: chosen },
      model: { model_type: preset.value },
      training: Object.fromEntries(TRAINING_LIMITS.map(([key]) => [key, Number(training[key].value)])),
      name: name.value.trim() || null,
      tags: tagWords(tags.value),
    };
  }

  async function submit(e) {
    e.preventDefault();
    clearErrors();
    // A file to upload stands in for the source, so the source may be blank until then.
    const found = problems().filter(([path]) => !(file.files.length && path === "dataset.source"));
    if (found.length) { showErrors(found); return; }
    button.disabled = true;
    try {
      if (file.files.length) {
        msg.textContent = "uploading…";
        const f = file.files[0];
        let up;
        try {
          up = await api("POST", `/v1/sources?filename=${encodeURIComponent(f.name)}`, f,
            { "Content-Type": "application/octet-stream" });
        } catch (err) {
          showErrors([["upload", err.message]]);
          return;
        }
        source.value = up.source;
        file.value = "";
        await loadSources();
      }
      const job = await api("POST", "/v1/jobs", spec());
      msg.className = "form-msg ok";
      msg.replaceChildren("submitted ", h("a", { href: `/jobs/${job.id}` }, job.id.slice(0, 12)));
      if (self.onSubmitted) self.onSubmitted(job);
    } catch (err) {
      const fields = (err.details || []).filter((d) => d.field);
      if (fields.length) showErrors(fields.map((d) => [d.field, d.message]));
      else { msg.className = "form-msg error"; msg.textContent = err.message; }
    } finally {
      button.disabled = false;
    }
  }
  return self;
}
