// prodsearch web page: plain JS, no build step. Talks to the JSON API of the same app.
//
// A query fetches the best `limits.fetch` matches once; the facet panel counts values over those
// matches and filters them in the page, so every count is exactly the number of results a click
// leaves, counts update with each click, and paging walks the same list. Scores and fusion
// numbers are for developers: they show with ?debug=1 in the address.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const debug = ["1", "true", "yes"].includes(params.get("debug") || "");
const state = {
  text: "", photo: null, crop: null, what: "", results: [], filters: {}, page: 0, match: null, info: "",
};
const limits = {
  fetch: 96,
  perPage: Math.max(1, Number.parseInt(params.get("per_page") || "24", 10) || 24),
  maxUploadBytes: Infinity,
};
// Opt-in learning from shoppers (PRODSEARCH_INTERACTION_LOG): a click on a result of a text search is
// reported to /events with the query; when the service logs nothing it answers 403 and the page stops.
const shopper = { query: null, logging: true, session: sessionStorage.getItem("prodsearch-session") };
if (!shopper.session) {
  shopper.session = Math.random().toString(36).slice(2, 12);
  sessionStorage.setItem("prodsearch-session", shopper.session);
}

function reportClick(product) {
  if (!shopper.logging || !shopper.query) return;
  const body = { product_id: product.id, event: "click", query: shopper.query, session_id: shopper.session };
  fetch("events", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
    .then((response) => { if (response.status === 403) shopper.logging = false; })
    .catch(() => {});
}

// attribute names that tell a shopper what a product is, shown on the cards first
const KEY_ATTRIBUTE = /(type|categ|kind|colou?r|farbe|couleur)/i;

function showStatus(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

function showNotice(message) {
  $("notice").textContent = message || "";
  $("notice").hidden = !message;
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

// "articleType" -> "Article type", "base_colour" -> "Base colour"
function humanTitle(field) {
  const words = field.replace(/[_-]+/g, " ").replace(/([a-z0-9])([A-Z])/g, "$1 $2").trim().toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

async function runSearch() {
  // Always the text in the box now: a mode switch searches what the box says, not the last query.
  state.text = $("q").value.trim();
  if (!state.text && !state.photo) {
    showStatus("Type a query or drop a photo.", true);
    return;
  }
  const query = { text: state.text || null, k: limits.fetch, mode: $("mode").value, explain: true };
  if (state.photo && state.crop) query.crop = state.crop;
  if (state.photo && $("scene").checked) {
    query.regions = "auto"; // region by region: the photo only
    query.text = null;
  }
  $("results").dataset.query = JSON.stringify(query); // what was asked, for people and tests reading the page
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
    shopper.query = state.photo ? null : state.text; // clicks are logged for text searches only
    setResults(response, describeQuery());
  } catch (err) {
    showStatus(err.message, true);
  }
}

function describeQuery() {
  const scene = state.photo && $("scene").checked;
  const parts = [];
  if (state.text && !scene) parts.push(`“${state.text}”`);
  if (scene) parts.push("each product in your photo");
  else if (state.photo) parts.push(state.crop ? "the box in your photo" : "your photo");
  return parts.join(" + ");
}

async function showSimilar(product) {
  showStatus("Searching…");
  try {
    const response = await api(`products/${encodeURIComponent(product.id)}/similar?k=${limits.fetch}&explain=true`);
    shopper.query = null;
    setResults(response, `similar to “${product.title}”`);
  } catch (err) {
    showStatus(err.message, true);
  }
}

// A new result list: filters and paging start over, facets are counted afresh.
function setResults(response, what) {
  state.results = response.results;
  state.what = what;
  state.filters = {};
  state.page = 0;
  state.match = response.match || null;
  const total = Object.values(response.timings_ms).reduce((a, b) => a + b, 0);
  state.info = `${response.signals.join(" + ")}, ${total.toFixed(1)} ms`;
  render();
}

function passes(result, skipField = null) {
  for (const [field, values] of Object.entries(state.filters)) {
    if (field === skipField || !values.size) continue;
    if (!values.has(String(result.attributes[field] ?? ""))) return false;
  }
  return true;
}

function filtered() {
  return state.results.filter((r) => passes(r));
}

// Counts per field over the results passing the *other* fields' filters (values of one field are
// alternatives), so a count is what ticking that value adds or leaves.
function facetCounts() {
  const fields = [];
  for (const r of state.results) for (const f of Object.keys(r.attributes)) if (!fields.includes(f)) fields.push(f);
  const out = [];
  for (const field of fields) {
    const counts = new Map();
    for (const r of state.results) {
      const v = r.attributes[field];
      if (v === undefined || v === null || v === "" || !passes(r, field)) continue;
      counts.set(String(v), (counts.get(String(v)) || 0) + 1);
    }
    const ticked = state.filters[field] || new Set();
    for (const v of ticked) if (!counts.has(v)) counts.set(v, 0);
    const distinct = new Set(state.results.map((r) => String(r.attributes[field] ?? "")).filter(Boolean));
    if (distinct.size < 2 && !ticked.size) continue; // one value for every result: nothing to choose
    const values = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    out.push([field, values.slice(0, 12)]);
  }
  return out;
}

function render() {
  renderFacets();
  renderPage();
}

function renderFacets() {
  const aside = $("facets");
  aside.replaceChildren();
  for (const [field, values] of facetCounts()) {
    const box = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = humanTitle(field);
    box.append(legend);
    for (const [value, count] of values) {
      const label = document.createElement("label");
      const check = document.createElement("input");
      check.type = "checkbox";
      check.dataset.field = field;
      check.dataset.value = value;
      check.checked = Boolean(state.filters[field] && state.filters[field].has(value));
      check.addEventListener("change", () => toggleFilter(field, value, check.checked));
      const count_ = document.createElement("span");
      count_.className = "count";
      count_.dataset.count = String(count);
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
  state.page = 0;
  render();
}

// Why a result matched, in a shopper's words; the fusion numbers only in the debug view.
function explanationLines(e) {
  const lines = [];
  if (e.matched_terms.length) lines.push(["Words", e.matched_terms.join(", ")]);
  for (const [k, v] of Object.entries(e.matched_attributes)) lines.push([humanTitle(k), v]);
  const says = { lexical: "same words", text: "similar description", image: "looks similar", popularity: "popular with shoppers" };
  const strong = Object.entries(e.contributions).sort((a, b) => b[1] - a[1]).map(([s]) => says[s] || s);
  if (strong.length) lines.push(["Matched by", strong.join(", ")]);
  if (debug) {
    for (const [signal, share] of Object.entries(e.contributions)) {
      const sim = e.similarities[signal];
      lines.push([signal, `${share.toFixed(4)}${sim === undefined ? "" : ` (sim ${sim.toFixed(3)})`}`]);
    }
  }
  return lines;
}

function explanationTable(e) {
  const table = document.createElement("table");
  for (const [name, value] of explanationLines(e)) {
    const tr = table.insertRow();
    tr.insertCell().textContent = name;
    tr.insertCell().textContent = value;
  }
  return table;
}

function keyAttributes(attributes) {
  const entries = Object.entries(attributes).filter(([, v]) => v !== null && v !== "");
  const key = entries.filter(([k]) => KEY_ATTRIBUTE.test(k));
  return (key.length ? key : entries).slice(0, 3).map(([, v]) => v);
}

function renderPage() {
  const grid = $("results");
  grid.replaceChildren();
  const list = filtered();
  const pages = Math.max(1, Math.ceil(list.length / limits.perPage));
  state.page = Math.min(state.page, pages - 1);
  const start = state.page * limits.perPage;
  const shown = list.slice(start, start + limits.perPage);
  const weak = state.match && state.match.weak;
  showNotice(weak ? `No close match for ${state.what}: these are only the nearest products.` : "");
  if (!state.results.length) {
    showStatus(`No results for ${state.what}.`);
  } else {
    const range = list.length ? `${start + 1}–${start + shown.length} of ${list.length}` : "0";
    const of = list.length < state.results.length ? ` (filtered from the ${state.results.length} best matches)` : "";
    showStatus(`${range} results for ${state.what}${of}` + (debug ? ` · ${state.info}` : ""));
  }
  const template = $("card");
  for (const r of shown) {
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
    const score = card.querySelector(".score");
    if (debug) score.textContent = r.score.toFixed(4);
    else score.remove();
    card.querySelector(".attrs").textContent = keyAttributes(r.attributes).join(" · ");
    for (const el of [card.querySelector(".photo"), card.querySelector(".title")]) {
      el.addEventListener("click", () => reportClick(r));
    }
    card.querySelector(".similar").addEventListener("click", () => { reportClick(r); showSimilar(r); });
    const why = card.querySelector(".why");
    const whyButton = card.querySelector(".why-btn");
    if (r.explanation) {
      whyButton.title = explanationLines(r.explanation).map(([k, v]) => `${k}: ${v}`).join("\n");
      why.append(explanationTable(r.explanation));
      whyButton.addEventListener("click", () => { why.hidden = !why.hidden; });
    } else {
      whyButton.remove();
    }
    grid.append(card);
  }
  renderPager(pages);
}

function renderPager(pages) {
  const pager = $("pager");
  pager.hidden = pages <= 1;
  $("page-label").textContent = `Page ${state.page + 1} of ${pages}`;
  $("prev").disabled = state.page === 0;
  $("next").disabled = state.page >= pages - 1;
}

function goPage(delta) {
  state.page += delta;
  renderPage();
  $("status").scrollIntoView({ block: "nearest" });
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
  setCrop(null, false);
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  $("clear-photo").hidden = !file;
  $("photo-panel").hidden = !file;
  $("drop-label").textContent = file ? file.name : "Drop a photo or click to search by image";
  if (file) {
    preview.src = URL.createObjectURL(file);
    $("crop-img").src = preview.src;
    runSearch();
  } else {
    preview.removeAttribute("src");
    $("crop-img").removeAttribute("src");
  }
}

// The crop box: drawn by dragging on the photo, sent as fractions [x0, y0, x1, y1].
function setCrop(box, search = true) {
  state.crop = box;
  const rect = $("crop-rect");
  rect.hidden = !box;
  $("clear-box").hidden = !box;
  if (box) {
    rect.style.left = `${box[0] * 100}%`;
    rect.style.top = `${box[1] * 100}%`;
    rect.style.width = `${(box[2] - box[0]) * 100}%`;
    rect.style.height = `${(box[3] - box[1]) * 100}%`;
  }
  if (search && state.photo) runSearch();
}

function initCropper() {
  const area = $("cropper");
  let start = null;
  const at = (event) => {
    const r = $("crop-img").getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientX - r.left) / r.width), clamp((event.clientY - r.top) / r.height)];
  };
  const boxOf = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
  area.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    start = at(event);
    area.setPointerCapture(event.pointerId);
  });
  area.addEventListener("pointermove", (event) => {
    if (!start) return;
    const box = boxOf(start, at(event));
    const rect = $("crop-rect");
    rect.hidden = false;
    Object.assign(rect.style, { left: `${box[0] * 100}%`, top: `${box[1] * 100}%`,
      width: `${(box[2] - box[0]) * 100}%`, height: `${(box[3] - box[1]) * 100}%` });
  });
  area.addEventListener("pointerup", (event) => {
    if (!start) return;
    const box = boxOf(start, at(event));
    start = null;
    if (box[2] - box[0] < 0.04 || box[3] - box[1] < 0.04) { setCrop(state.crop, false); return; } // a click
    $("scene").checked = false;
    setCrop(box.map((v) => Math.round(v * 1000) / 1000));
  });
  $("clear-box").addEventListener("click", () => setCrop(null));
  $("scene").addEventListener("change", () => { if ($("scene").checked) setCrop(null, false); runSearch(); });
}

async function loadLimits() {
  try {
    const health = await api("healthz");
    limits.fetch = Math.min(limits.fetch, health.limits.max_k);
    limits.maxUploadBytes = health.limits.max_upload_bytes;
  } catch (err) {
    showStatus(`The search service is not answering: ${err.message}`, true);
  }
}

function init() {
  if (debug) document.body.classList.add("debug");
  loadLimits();
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); runSearch(); });
  $("mode").addEventListener("change", () => { if ($("q").value.trim() || state.photo) runSearch(); });
  initCropper();
  $("prev").addEventListener("click", () => goPage(-1));
  $("next").addEventListener("click", () => goPage(1));
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
