// prodsearch web page: plain JS, no build step. Talks to the JSON API of the same app.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { text: "", photo: null, filters: {}, facets: null };
const limits = { page: 24, maxUploadBytes: Infinity };

function showStatus(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

function activeFilters() {
  const out = {};
  for (const [field, values] of Object.entries(state.filters)) {
    if (values.size) out[field] = [...values];
  }
  return Object.keys(out).length ? out : null;
}

async function runSearch(newQuery) {
  if (newQuery) {
    state.text = $("q").value.trim();
    state.filters = {};
  }
  if (!state.text && !state.photo) {
    showStatus("Type a query or drop a photo.", true);
    return;
  }
  const query = { text: state.text || null, k: limits.page, mode: $("mode").value, filters: activeFilters(),
                  facets: true, explain: true };
  let options;
  if (state.photo) {
    const form = new FormData();
    form.append("query", JSON.stringify(query));
    form.append("image", state.photo, state.photo.name || "photo");
    options = { method: "POST", body: form };
  } else {
    options = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(query) };
  }
  showStatus("Searching…");
  try {
    const response = await api("search", options);
    if (newQuery || !state.facets) state.facets = response.facets || {};
    renderFacets();
    renderResults(response, describeQuery());
  } catch (err) {
    showStatus(err.message, true);
  }
}

function describeQuery() {
  const parts = [];
  if (state.text) parts.push(`“${state.text}”`);
  if (state.photo) parts.push("your photo");
  return parts.join(" + ");
}

async function showSimilar(product) {
  showStatus("Searching…");
  try {
    const response = await api(`products/${encodeURIComponent(product.id)}/similar?k=${limits.page}&explain=true`);
    renderResults(response, `similar to “${product.title}”`);
  } catch (err) {
    showStatus(err.message, true);
  }
}

function renderFacets() {
  const aside = $("facets");
  aside.replaceChildren();
  for (const [field, values] of Object.entries(state.facets || {})) {
    if (!values.length) continue;
    const box = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = field;
    box.append(legend);
    for (const { value, count } of values) {
      const label = document.createElement("label");
      const check = document.createElement("input");
      check.type = "checkbox";
      check.dataset.field = field;
      check.dataset.value = value;
      check.checked = Boolean(state.filters[field] && state.filters[field].has(value));
      check.addEventListener("change", () => toggleFilter(field, value, check.checked));
      const count_ = document.createElement("span");
      count_.className = "count";
      count_.textContent = ` (${count})`;
      label.append(check, ` ${value}`, count_);
      box.append(label);
    }
    aside.append(box);
  }
}

function toggleFilter(field, value, on) {
  const values = state.filters[field] || (state.filters[field] = new Set());
  if (on) values.add(value);
  else values.delete(value);
  runSearch(false);
}

function explanationText(e) {
  const lines = [];
  for (const [signal, share] of Object.entries(e.contributions)) lines.push(`${signal}: ${share.toFixed(4)}`);
  if (e.matched_terms.length) lines.push(`matched words: ${e.matched_terms.join(", ")}`);
  const attrs = Object.entries(e.matched_attributes).map(([k, v]) => `${k}=${v}`);
  if (attrs.length) lines.push(`matched attributes: ${attrs.join(", ")}`);
  return lines.join("\n");
}

function explanationTable(e) {
  const table = document.createElement("table");
  const row = (name, value) => {
    const tr = table.insertRow();
    tr.insertCell().textContent = name;
    tr.insertCell().textContent = value;
  };
  for (const [signal, share] of Object.entries(e.contributions)) {
    const sim = e.similarities[signal];
    row(signal, `${share.toFixed(4)}${sim === undefined ? "" : ` (sim ${sim.toFixed(3)})`}`);
  }
  if (e.matched_terms.length) row("words", e.matched_terms.join(", "));
  for (const [k, v] of Object.entries(e.matched_attributes)) row(k, v);
  return table;
}

function renderResults(response, what) {
  const grid = $("results");
  grid.replaceChildren();
  const total = Object.values(response.timings_ms).reduce((a, b) => a + b, 0);
  showStatus(response.results.length
    ? `${response.results.length} results for ${what} (${response.signals.join(" + ")}, ${total.toFixed(1)} ms)`
    : `No results for ${what}.`);
  const template = $("card");
  for (const r of response.results) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.id = r.id;
    const img = card.querySelector(".photo img");
    if (r.image_url) {
      img.src = r.image_url;
      img.alt = r.title;
    } else {
      img.remove();
    }
    card.querySelector(".title").textContent = r.title;
    card.querySelector(".score").textContent = r.score.toFixed(4);
    card.querySelector(".attrs").textContent = Object.values(r.attributes).slice(0, 3).join(" · ");
    card.querySelector(".similar").addEventListener("click", () => showSimilar(r));
    const why = card.querySelector(".why");
    const whyButton = card.querySelector(".why-btn");
    if (r.explanation) {
      whyButton.title = explanationText(r.explanation);
      why.append(explanationTable(r.explanation));
      whyButton.addEventListener("click", () => { why.hidden = !why.hidden; });
    } else {
      whyButton.remove();
    }
    grid.append(card);
  }
}

function setPhoto(file) {
  if (file && !file.type.startsWith("image/")) {
    showStatus(`${file.name} is not an image.`, true);
    return;
  }
  if (file && file.size > limits.maxUploadBytes) {
    showStatus(`${file.name} is too large (${file.size} bytes; the limit is ${limits.maxUploadBytes}).`, true);
    return;
  }
  state.photo = file || null;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  $("clear-photo").hidden = !file;
  $("drop-label").textContent = file ? file.name : "Drop a photo or click to search by image";
  if (file) {
    preview.src = URL.createObjectURL(file);
    state.text = $("q").value.trim();
    state.filters = {};
    state.facets = null;
    runSearch(false);
  } else {
    preview.removeAttribute("src");
  }
}

async function loadLimits() {
  try {
    const health = await api("healthz");
    limits.page = Math.min(limits.page, health.limits.max_k);
    limits.maxUploadBytes = health.limits.max_upload_bytes;
  } catch (err) {
    showStatus(`The search service is not answering: ${err.message}`, true);
  }
}

function init() {
  loadLimits();
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); runSearch(true); });
  $("mode").addEventListener("change", () => runSearch(false));
  const drop = $("drop");
  drop.addEventListener("click", (event) => { if (event.target.id !== "clear-photo") $("file").click(); });
  drop.addEventListener("keydown", (event) => { if (event.key === "Enter") $("file").click(); });
  $("file").addEventListener("change", () => setPhoto($("file").files[0]));
  $("clear-photo").addEventListener("click", () => { $("file").value = ""; setPhoto(null); });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) setPhoto(event.dataTransfer.files[0]);
  });
}

init();
