// unmask explorer: the page. Plain ES modules, no build step, nothing from the network.
import { COLOURS, drawCurves, drawOverlay, drawRGB, el, imagePixels, rethreshold } from "./draw.js";
import { drawDendrogram, toggle } from "./dendrogram.js";

const $ = (id) => document.getElementById(id);

const S = {
  info: null,
  model: null,       // the model's entry of /api/info
  imageId: null,
  prediction: null,  // /api/predict's answer
  clusters: [],
  tab: "cwox",
  results: {},       // per tab: what it shows
  selected: null,    // {key, name, label}: the map that metrics, removal and downloads use
  job: null,         // the running job's id
  cancelled: false,
  maps: new Map(),   // f32 URL -> Float32Array
};

// ------------------------------------------------------------------ the API
async function api(path, options = {}) {
  const init = { ...options };
  if (init.json !== undefined) {
    init.method = init.method || "POST";
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(init.json);
    delete init.json;
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) {
    const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : `${r.status} ${r.statusText}`;
    throw new Error(detail);
  }
  return data;
}

async function f32(url) {
  if (S.maps.has(url)) return S.maps.get(url);
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  const values = new Float32Array(await r.arrayBuffer());
  S.maps.set(url, values);
  if (S.maps.size > 200) S.maps.delete(S.maps.keys().next().value);
  return values;
}

function showError(id, err) { $(id).textContent = err ? String(err.message || err) : ""; }

// ------------------------------------------------------------------ jobs
async function runJob(body, label) {
  const box = $("job");
  box.hidden = false;
  $("job-progress").value = 0;
  $("job-text").textContent = `${label}: queued`;
  let job = await api("/api/jobs", { json: body });
  S.job = job.id;
  $("cancel").disabled = false;
  try {
    while (!["done", "failed", "cancelled"].includes(job.status)) {
      await new Promise((res) => setTimeout(res, 200));
      job = await api(`/api/jobs/${job.id}`);
      const { done, total } = job.progress;
      $("job-progress").value = total ? done / total : 0;
      $("job-text").textContent = `${label}: ${job.status}${total ? ` ${Math.round(100 * done / total)}%` : ""}`;
    }
  } finally {
    S.job = null;
    $("cancel").disabled = true;
  }
  $("job-progress").value = job.status === "done" ? 1 : $("job-progress").value;
  $("job-text").textContent = `${label}: ${job.status}${job.cached ? " (from the cache)" : ""}`;
  if (job.status === "failed") throw new Error(job.error || "the job failed");
  if (job.status === "cancelled") throw new Error("cancelled");
  return job.result;
}

$("cancel").addEventListener("click", async () => {
  S.cancelled = true;
  if (S.job) { try { await api(`/api/jobs/${S.job}`, { method: "DELETE" }); } catch (e) { showError("job-error", e); } }
});

// ------------------------------------------------------------------ info, model, image
async function start() {
  S.info = await api("/api/info");
  for (const m of S.info.models) el("option", { value: m.name }, m.name, $("model"));
  for (const name of S.info.examples) el("option", { value: name }, name, $("example"));
  const families = {};
  for (const m of S.info.methods) (families[m.family] ||= []).push(m);
  for (const [family, methods] of Object.entries(families)) {
    const group = el("optgroup", { label: family }, null, $("method"));
    for (const m of methods) el("option", { value: m.name }, m.name, group);
  }
  $("method").value = "gradcam";
  for (const r of S.info.removals) el("option", { value: r.name, title: r.summary }, r.name, $("removal"));
  $("removal").value = "gray";
  selectModel();
  selectMethod();
}

function selectModel() {
  S.model = S.info.models.find((m) => m.name === $("model").value) || S.info.models[0];
  $("model-info").textContent = `${S.model.num_classes} classes, ${S.model.input_size}×${S.model.input_size} input`;
  const tree = $("tree");
  while (tree.firstChild) tree.removeChild(tree.firstChild);
  for (const t of S.model.trees) el("option", { value: t }, t, tree);
  if (method()) $("cwox-preset").textContent = presetText(method());
  if (S.imageId) { showImage(); predict(); }
}

function showImage() {
  const img = $("input-image");
  img.hidden = false;
  img.alt = "the image as the model sees it";
  img.src = `/api/images/${S.imageId}.png?model=${encodeURIComponent(S.model.name)}`;
}

async function setImage(answer) {
  S.imageId = answer.image_id;
  S.results = {};
  S.selected = null;
  renderResults();
  showImage();
  await predict();
}

$("file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  showError("image-error", null);
  const form = new FormData();
  form.append("file", file, file.name);
  try { await setImage(await api("/api/images", { method: "POST", body: form })); }
  catch (err) { showError("image-error", err); }
});

$("example").addEventListener("change", async (e) => {
  if (!e.target.value) return;
  showError("image-error", null);
  try { await setImage(await api("/api/images/example", { json: { name: e.target.value } })); }
  catch (err) { showError("image-error", err); }
});

$("model").addEventListener("change", selectModel);

// ------------------------------------------------------------------ top classes and the tree
$("top-mode").addEventListener("change", () => {
  const byCount = $("top-mode").value === "k";
  const v = $("top-value");
  if (byCount) { v.min = 1; v.max = Math.min(50, S.model ? S.model.num_classes : 50); v.step = 1; v.value = Math.min(5, v.max); }
  else { v.min = 0.01; v.max = 1; v.step = 0.01; v.value = 0.95; }
  $("max-top-label").hidden = byCount;
  predict();
});
for (const id of ["top-value", "max-top", "tree", "cut-level"]) $(id).addEventListener("change", () => predict());

async function predict() {
  if (!S.imageId) return;
  showError("image-error", null);
  const body = { image_id: S.imageId, model: S.model.name, tree: $("tree").value || null, cut_level: Number($("cut-level").value) };
  if ($("top-mode").value === "k") body.top = Number($("top-value").value);
  else { body.top_p = Number($("top-value").value); body.max_top = Number($("max-top").value); }
  try {
    S.prediction = await api("/api/predict", { json: body });
  } catch (err) { showError("image-error", err); return; }
  $("cut-level").max = S.prediction.depth - 1;
  S.clusters = S.prediction.clusters.map((c) => [...c]);
  renderClasses();
  renderTree();
  renderTargets();
}

function renderClasses() {
  const list = $("classes");
  while (list.firstChild) list.removeChild(list.firstChild);
  const chosen = S.prediction.chosen;
  const top = S.prediction.classes[0] ? S.prediction.classes[0].probability : 1;
  for (const c of S.prediction.classes) {
    const k = S.clusters.findIndex((cl) => cl.includes(c.class));
    const li = el("li", { class: chosen.includes(c.class) ? "cls chosen" : "cls", dataset: { class: c.class } }, null, list);
    el("span", { class: "name" }, `${c.name}`, li);
    const bar = el("span", { class: "bar" }, null, li);
    const fill = el("span", { class: "fill" }, null, bar);
    fill.style.width = `${(100 * c.probability / top).toFixed(1)}%`;
    if (k >= 0) fill.style.background = COLOURS[k % COLOURS.length];
    el("span", { class: "p" }, `${(100 * c.probability).toFixed(1)}%`, li);
  }
}

function className(c) { return S.prediction.classes.find((x) => x.class === c)?.name ?? `class ${c}`; }

function renderTree() {
  const names = {};
  for (const c of S.prediction.classes) names[c.class] = c.name;
  drawDendrogram($("dendrogram"), S.prediction.tree, S.clusters, names, (node) => {
    S.clusters = toggle(S.clusters, node, S.prediction.chosen);
    renderTree();
    renderClasses();
  });
  const list = $("clusters");
  while (list.firstChild) list.removeChild(list.firstChild);
  S.clusters.forEach((cl, i) => {
    const li = el("li", { class: "cluster" }, null, list);
    const dot = el("span", { class: "dot" }, null, li);
    dot.style.background = COLOURS[i % COLOURS.length];
    el("span", {}, cl.map(className).join(" · "), li);
  });
}

function renderTargets() {
  const sel = $("target");
  while (sel.firstChild) sel.removeChild(sel.firstChild);
  for (const c of S.prediction.classes) el("option", { value: c.class }, `${c.name} (${(100 * c.probability).toFixed(1)}%)`, sel);
}

// ------------------------------------------------------------------ method and parameters
function method() { return S.info.methods.find((m) => m.name === $("method").value); }

function selectMethod() {
  const m = method();
  $("method-summary").textContent = m.summary.replace(/``/g, "");
  $("delta").value = m.cwox_delta;
  $("cwox-preset").textContent = presetText(m);
  renderForm();
}

// The values CWOX's preset sets in both stages: what the form shows in the CWOX tab.
function sharedPreset(m) {
  const p = m.cwox_preset;
  if (!p) return {};
  const out = {};
  for (const [k, v] of Object.entries(p.cluster)) {
    if (k in p.classes && JSON.stringify(p.classes[k]) === JSON.stringify(v)) out[k] = v;
  }
  return out;
}

// The parameter form. In the CWOX tab a field the preset sets shows the preset's value (what
// runs when it is left alone); elsewhere the method's default.
function renderForm() {
  const m = method();
  const preset = S.tab === "cwox" ? sharedPreset(m) : {};
  $("params").dataset.tab = S.tab === "cwox" ? "cwox" : "other";
  const form = $("params");
  while (form.firstChild) form.removeChild(form.firstChild);
  for (const field of m.form) {
    const f = field.name in preset ? { ...field, default: preset[field.name] } : field;
    const label = el("label", { title: (f.help || "").replace(/``/g, "") }, null, form);
    el("span", {}, f.name, label);
    let input;
    if (f.choices && f.choices.length) {
      input = el("select", {}, null, label);
      if (f.nullable || !f.choices.includes(f.default)) el("option", { value: "null" }, "default", input);
      for (const c of f.choices) el("option", { value: JSON.stringify(c) }, String(c), input);
      input.value = JSON.stringify(f.default ?? null);
    } else if (f.type === "bool") {
      input = el("input", { type: "checkbox" }, null, label);
      input.checked = Boolean(f.default);
    } else {
      const numeric = f.type === "int" || f.type === "float";
      input = el("input", { type: numeric ? "number" : "text" }, null, label);
      if (numeric) {
        input.step = f.type === "int" ? 1 : "any";
        if (f.min !== null && f.min !== undefined) input.min = f.min;
        if (f.max !== null && f.max !== undefined) input.max = f.max;
      }
      const shown = f.type === "list" ? JSON.stringify(f.default) : String(f.default);
      input.value = f.default === null || f.default === undefined ? "" : shown;
      if (f.default === null || f.default === undefined) input.placeholder = "default";
    }
    input.dataset.name = f.name;
    input.dataset.type = f.type;
    input.dataset.default = JSON.stringify(f.default ?? null);
  }
}
$("method").addEventListener("change", selectMethod);

// What CWOX uses for the parameters left at their defaults (the original's settings).
function presetText(m) {
  const p = m.cwox_preset;
  if (!p) return `CWOX: both stages use the form's values; negative base maps are clamped at 0.`;
  const show = (o) => Object.entries(o).map(([k, v]) => `${k}=${v}`).join(", ");
  const parts = [];
  const layers = p.layers ? S.model.cwox_layers[p.layers] : null;
  const stage = (name, o, layer) => {
    const all = { ...(layer ? { layer } : {}), ...o };
    return `${name}: ${Object.keys(all).length ? show(all) : "the defaults"}`;
  };
  parts.push(stage("clusters", p.cluster, layers && layers[0]));
  parts.push(stage("classes", p.classes, layers && layers[1]));
  return `CWOX preset (parameters left at their defaults): ${parts.join("; ")}; negative maps: ${p.negative}.`;
}

// Only the parameters changed from their defaults are sent (the server validates them).
function params() {
  const out = {};
  for (const input of $("params").querySelectorAll("[data-name]")) {
    const def = JSON.parse(input.dataset.default);
    let v;
    if (input.tagName === "SELECT") v = JSON.parse(input.value);
    else if (input.type === "checkbox") v = input.checked;
    else if (input.value === "") continue;
    else if (input.dataset.type === "int" || input.dataset.type === "float") v = Number(input.value);
    else if (input.dataset.type === "list") {
      try { v = JSON.parse(input.value); } catch { throw new Error(`params.${input.dataset.name}: expected a JSON list such as [0.1, 0.2]`); }
    }
    else v = input.value;
    if (JSON.stringify(v) !== JSON.stringify(def)) out[input.dataset.name] = v;
  }
  return out;
}

// ------------------------------------------------------------------ tabs and runs
for (const b of $("tabs").querySelectorAll("button")) {
  b.addEventListener("click", () => {
    S.tab = b.dataset.tab;
    if (method() && $("params").dataset.tab !== (S.tab === "cwox" ? "cwox" : "other")) renderForm();
    for (const x of $("tabs").querySelectorAll("button")) x.classList.toggle("active", x === b);
    for (const x of document.querySelectorAll(".tab-cwox")) x.hidden = S.tab !== "cwox";
    for (const x of document.querySelectorAll(".tab-single")) x.hidden = S.tab !== "single";
    renderResults();
  });
}

$("run").addEventListener("click", async () => {
  if (!S.imageId || !S.prediction) { showError("job-error", "choose an image first"); return; }
  showError("job-error", null);
  S.cancelled = false;
  $("run").disabled = true;
  try {
    const common = { image_id: S.imageId, model: S.model.name, method: $("method").value, params: params(), seed: Number($("seed").value) };
    if (S.tab === "cwox") {
      const result = await runJob({ kind: "cwox", ...common, clusters: S.clusters, delta: Number($("delta").value) }, "CWOX");
      S.results.cwox = result;
    } else if (S.tab === "classes") {
      const out = [];
      const chosen = S.prediction.chosen;
      for (let i = 0; i < chosen.length && !S.cancelled; i++) {
        out.push(await runJob({ kind: "explain", ...common, target: chosen[i] }, `class ${i + 1}/${chosen.length}`));
      }
      S.results.classes = out;
    } else {
      S.results.single = await runJob({ kind: "explain", ...common, target: Number($("target").value) }, common.method);
    }
    S.selected = null;
    renderResults();
  } catch (err) {
    showError("job-error", err);
  } finally {
    $("run").disabled = false;
  }
});

// ------------------------------------------------------------------ results
function figure(parent, label, info, key, extra = null) {
  const fig = el("figure", { class: "map", dataset: { key, map: info.name } }, null, parent);
  const canvas = el("canvas", { width: info.shape[1], height: info.shape[0], "data-map": info.name }, null, fig);
  const cap = el("figcaption", {}, null, fig);
  el("span", {}, label, cap);
  if (extra) el("span", { class: "muted" }, extra, cap);
  el("span", { class: "muted scale" }, "", cap);  // the map's range on its scale (drawOverlay)
  fig.addEventListener("click", () => select({ key, name: info.name, label }));
  return canvas;
}

function select(sel) {
  S.selected = sel;
  for (const f of document.querySelectorAll("figure.map")) {
    f.classList.toggle("selected", f.dataset.key === sel.key && f.dataset.map === sel.name);
  }
  $("metrics-map").textContent = `map: ${sel.label}`;
  if (S.curvesFor !== `${sel.key}/${sel.name}`) {  // the curves shown are of another map
    $("curves").setAttribute("hidden", "");
    const table = $("metric-values");
    while (table.firstChild) table.removeChild(table.firstChild);
  }
  const d = $("downloads");
  while (d.firstChild) d.removeChild(d.firstChild);
  el("span", { class: "muted" }, "download:", d);
  const base = `/api/results/${sel.key}/${sel.name}`;
  el("a", { href: `${base}.png`, download: `${sel.name}.png`, class: "button" }, "map PNG", d);
  el("a", { href: `${base}.npy`, download: `${sel.name}.npy`, class: "button" }, "map NPY", d);
  el("a", { href: `/api/results/${sel.key}.json`, download: `unmask-${sel.key.slice(0, 8)}.json`, class: "button", id: "download-json" }, "numbers JSON", d);
}

let drawers = [];  // functions that redraw the shown canvases (opacity, delta)

async function renderResults() {
  const box = $("results");
  while (box.firstChild) box.removeChild(box.firstChild);
  const d = $("downloads");
  while (d.firstChild) d.removeChild(d.firstChild);
  drawers = [];
  const result = S.results[S.tab];
  const titles = { cwox: "CWOX: one row per cluster", classes: "Per class (not contrastive)", single: "Map" };
  $("results-title").textContent = titles[S.tab];
  if (!result) { el("p", { class: "muted" }, "Press Explain to compute.", box); return; }
  const img = $("input-image");
  if (!img.complete) await new Promise((res) => img.addEventListener("load", res, { once: true }));
  const alpha = () => Number($("opacity").value);
  let first = null;
  if (S.tab === "cwox") {
    const head = el("p", { class: "muted" }, `${result.cluster_explainer.method} base, δ = ${result.delta}, negative maps: ${result.negative}`, box);
    head.dataset.key = result.key;
    for (const row of result.rows) {
      const div = el("div", { class: "cwox-row", dataset: { cluster: row.index } }, null, box);
      const header = el("div", { class: "row-head" }, null, div);
      const dot = el("span", { class: "dot" }, null, header);
      dot.style.background = COLOURS[(row.index - 1) % COLOURS.length];
      el("strong", {}, row.names.join(" · "), header);
      el("span", { class: "muted" }, ` P = ${(100 * row.probability).toFixed(1)}%`, header);
      const maps = el("div", { class: "maps" }, null, div);
      const [h, w] = row.map.shape;
      const c0 = figure(maps, `cluster ${row.index}`, row.map, result.key, "vs the other clusters");
      const hv = await f32(row.map.f32);
      drawers.push(() => drawOverlay(c0, hv, h, w, imagePixels(img, h, w), alpha()));
      first = first || { key: result.key, name: row.map.name, label: `cluster ${row.index}` };
      if (row.members.length) {
        const slider = el("label", { class: "delta" }, null, header);
        el("span", {}, " δ ", slider);
        const range = el("input", { type: "range", min: 0, max: 100, step: 1, value: result.delta, class: "delta-slider" }, null, slider);
        const shown = el("span", { class: "delta-value" }, String(result.delta), slider);
        const members = [];
        for (const m of row.members) {
          const c = figure(maps, m.name, m.map, result.key, `${(100 * m.probability).toFixed(1)}%`);
          members.push({ c, raw: await f32(m.raw.f32) });
        }
        const drawMembers = () => {
          const delta = Number(range.value);
          shown.textContent = String(delta);
          for (const m of members) drawOverlay(m.c, rethreshold(hv, m.raw, delta), h, w, imagePixels(img, h, w), alpha());
        };
        range.addEventListener("input", drawMembers);
        drawers.push(drawMembers);
      } else {
        el("span", { class: "muted single" }, "a single class: no class maps", maps);
      }
    }
  } else {
    const list = S.tab === "classes" ? result : [result];
    const maps = el("div", { class: S.tab === "single" ? "maps big" : "maps" }, null, box);
    for (const r of list) {
      const info = r.maps[0];
      const [h, w] = info.shape;
      const label = r.target_names.join(" + ");
      const c = figure(maps, label, info, r.key, `${r.spec.method}, ${(100 * r.probability).toFixed(1)}%`);
      const v = await f32(info.f32);
      drawers.push(() => drawOverlay(c, v, h, w, imagePixels(img, h, w), alpha()));
      first = first || { key: r.key, name: info.name, label };
    }
  }
  for (const draw of drawers) draw();
  if (first) select(first);
}

$("opacity").addEventListener("input", () => { for (const draw of drawers) draw(); });

// ------------------------------------------------------------------ metrics and removal
$("metrics-run").addEventListener("click", async () => {
  showError("metrics-error", null);
  if (!S.selected) { showError("metrics-error", "explain first, then click a map"); return; }
  try {
    const r = await runJob({ kind: "metrics", image_id: S.imageId, model: S.model.name, result: S.selected.key, map: S.selected.name, metrics: ["deletion", "insertion"] }, "curves");
    drawCurves($("curves"), r.curves);
    S.curvesFor = `${r.source}/${r.map}`;
    const table = $("metric-values");
    while (table.firstChild) table.removeChild(table.firstChild);
    for (const [name, v] of Object.entries(r.values)) {
      const tr = el("tr", {}, null, table);
      el("td", {}, name, tr);
      el("td", { class: "num" }, v.toFixed(4), tr);
      const hib = r.higher_is_better[name];
      el("td", { class: "muted" }, hib === true ? "higher is better" : hib === false ? "lower is better" : "", tr);
    }
  } catch (err) { showError("metrics-error", err); }
});

$("removal-run").addEventListener("click", async () => {
  showError("removal-error", null);
  if (!S.imageId) { showError("removal-error", "choose an image first"); return; }
  const body = { kind: "removal", image_id: S.imageId, model: S.model.name, removal: $("removal").value, fraction: Number($("removal-fraction").value) };
  if (S.selected) { body.result = S.selected.key; body.map = S.selected.name; }
  try {
    const r = await runJob(body, "removal");
    const out = $("removal-out");
    while (out.firstChild) out.removeChild(out.firstChild);
    for (const info of r.maps) {
      const fig = el("figure", { class: "map" }, null, out);
      const c = el("canvas", {}, null, fig);
      const what = r.source ? `the top ${Math.round(100 * r.fraction)} % of ${r.map}` : "the centre square";
      el("figcaption", {}, info.name === "removed" ? `${r.removal} on ${what}` : "removed pixels", fig);
      const v = await f32(info.f32);
      if (info.shape.length === 3) drawRGB(c, v, info.shape[0], info.shape[1]);
      else drawRGB(c, Float32Array.from({ length: 3 * v.length }, (_, i) => v[Math.floor(i / 3)]), info.shape[0], info.shape[1]);
    }
  } catch (err) { showError("removal-error", err); }
});

start().catch((err) => showError("image-error", err));
