// Drawing helpers: colour maps, canvases, the CWOX re-threshold, SVG elements.
// Everything from data is set with textContent or attributes, never innerHTML.

import { DIVERGING, SEQUENTIAL } from "./colours.js";

const SVG = "http://www.w3.org/2000/svg";

// unmask.viz's colour rule (viz.overlay, viz.colour_scale), the one rule of every picture:
// each map on its own scale anchored at 0 -- [0, M] for a non-negative map (SEQUENTIAL,
// viridis), [-M, M] for a signed one (DIVERGING, RdBu_r), M = max |v| -- so a map spanning
// 0.78-0.88 fills the top of the colour table only. Value v takes the table entry
// min(255, floor(256 t)), t = v / M (or (v / M + 1) / 2 signed), at opacity alpha * sqrt(|v| / M).
export function colourScale(values) {
  let lo = Infinity, hi = -Infinity, top = 0;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; top = Math.max(top, Math.abs(v)); }
  top = top > 0 ? top : 1;
  const signed = lo < 0;
  return { signed, low: signed ? -top : 0, high: top, vmin: lo, vmax: hi };
}

// Python's "%.3g" for the numbers of a caption.
function g3(v) { return String(Number(v.toPrecision(3))); }

// viz.ColourScale.caption: the map's range and the share of its scale it spans.
export function scaleCaption(sc) {
  const share = Math.round(100 * (sc.vmax - sc.vmin) / (sc.high - sc.low));
  return `map ${g3(sc.vmin)} to ${g3(sc.vmax)} of scale ${sc.low === 0 ? "0" : g3(sc.low)} to ${g3(sc.high)} (spans ${share}%)`;
}

// The colour [r, g, b] (0-255) and opacity weight (0-1) of value v on scale sc.
export function colourOf(v, sc) {
  const n = v / sc.high;
  const t = sc.signed ? (n + 1) / 2 : Math.max(n, 0);
  const table = sc.signed ? DIVERGING : SEQUENTIAL;
  const k = 3 * Math.min(255, Math.max(0, Math.floor(256 * t)));
  return [[table[k], table[k + 1], table[k + 2]], Math.sqrt(sc.signed ? Math.abs(n) : Math.max(n, 0))];
}

// numpy's linear percentile (torch.quantile's default) of a Float32Array, q in [0, 100].
export function percentile(values, q) {
  const s = Float64Array.from(values).sort();
  if (s.length === 0) return 0;
  const pos = (s.length - 1) * (q / 100);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

// CWOX-2s' class map at support percentile delta, from the contrastive cluster map H and the
// raw class map max(0, m S_k - sum_l S_l):  1[H > percentile(H, delta)] * raw.
export function rethreshold(cluster, raw, delta) {
  const q = percentile(cluster, delta);
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = cluster[i] > q ? raw[i] : 0;
  return out;
}

// Draw a map (Float32Array, h x w) over an image (ImageData h x w or null) at opacity alpha,
// by the colour rule above; the caption of the canvas's figure (a ".scale" element) gets the
// map's range on its scale. Returns the scale.
export function drawOverlay(canvas, values, h, w, image, alpha) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(w, h);
  const sc = colourScale(values);
  const base = image ? image.data : null;
  for (let i = 0; i < h * w; i++) {
    const [rgb, weight] = colourOf(values[i], sc);
    const a = base ? alpha * weight : 1;
    const j = 4 * i;
    for (let k = 0; k < 3; k++) out.data[j + k] = base ? (1 - a) * base[j + k] + a * rgb[k] : rgb[k];
    out.data[j + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
  const cap = canvas.parentElement ? canvas.parentElement.querySelector(".scale") : null;
  if (cap) cap.textContent = scaleCaption(sc);
  return sc;
}

// Draw an RGB image stored as Float32Array (h x w x 3, values in [0, 1]).
export function drawRGB(canvas, values, h, w) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) out.data[4 * i + k] = Math.round(255 * Math.min(1, Math.max(0, values[3 * i + k])));
    out.data[4 * i + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
}

// The pixels of an <img> at h x w (ImageData), or null before it loaded.
export function imagePixels(img, h, w) {
  if (!img || !img.complete || !img.naturalWidth) return null;
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0, w, h);
  return ctx.getImageData(0, 0, w, h);
}

export function svg(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

export function el(tag, attrs = {}, text = null, parent = null) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, String(v));
  }
  if (text !== null) e.textContent = String(text);
  if (parent) parent.appendChild(e);
  return e;
}

// Eight distinguishable cluster colours.
export const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
  "#8c564b", "#e377c2"];

// Deletion / insertion curves into an SVG (viewBox 320 x 200).
export function drawCurves(root, curves) {
  while (root.firstChild) root.removeChild(root.firstChild);
  root.removeAttribute("hidden");
  const W = 320, H = 200, L = 36, R = 10, T = 22, B = 30;
  const x = (f) => L + f * (W - L - R);
  let top = 0;
  for (const c of Object.values(curves)) for (const s of c.scores) top = Math.max(top, s);
  top = top > 0 ? top : 1;
  const y = (s) => T + (1 - s / top) * (H - T - B);
  svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "frame" }, root);
  for (const t of [0, 0.5, 1]) {
    svg("line", { x1: x(t), x2: x(t), y1: H - B, y2: H - B + 4, class: "tick" }, root);
    svg("text", { x: x(t), y: H - B + 15, class: "tick-label", "text-anchor": "middle" }, root).textContent = t;
    svg("text", { x: L - 4, y: y(t * top) + 3, class: "tick-label", "text-anchor": "end" }, root).textContent = (t * top).toFixed(2);
  }
  svg("text", { x: (L + W - R) / 2, y: H - 3, class: "axis-label", "text-anchor": "middle" }, root).textContent = "fraction of pixels removed / revealed";
  const colour = { deletion: "#d62728", insertion: "#1f77b4" };
  let row = 0;
  const seen = new Set();
  for (const [label, c] of Object.entries(curves)) {
    const id = c.mode + c.scores.length;
    if (seen.has(id)) continue;
    seen.add(id);
    const pts = c.scores.map((s, i) => `${x(c.fractions[i]).toFixed(1)},${y(s).toFixed(1)}`).join(" ");
    svg("polyline", { points: pts, class: "curve", stroke: colour[c.mode] || "#555" }, root);
    const t = svg("text", { x: L + 150 * row, y: 12, class: "legend", fill: colour[c.mode] || "#555" }, root);
    t.textContent = `${c.mode} AUC ${c.auc.toFixed(3)}${label === c.mode ? "" : ` (${label})`}`;
    row += 1;
  }
}
