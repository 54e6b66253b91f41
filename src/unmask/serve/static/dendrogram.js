// The label tree of the chosen classes as a dendrogram; a click merges or splits clusters.
import { COLOURS, svg } from "./draw.js";

// The classes below a node of LabelTree.subtree's JSON.
export function leaves(node) {
  if (node.children === undefined) return [node.class];
  return node.children.flatMap(leaves);
}

const same = (a, b) => a.length === b.length && a.every((c) => b.includes(c));

// Clusters after a click on `node`: if its classes are exactly one cluster, split that cluster
// into one cluster per child; otherwise merge its classes into one cluster (taking them out of
// the others). Clusters stay in the order of the chosen classes (most probable first).
export function toggle(clusters, node, order) {
  const mine = leaves(node);
  let next;
  if (clusters.some((c) => same(c, mine))) {
    if (node.children === undefined || node.children.length < 2) return clusters;
    next = clusters.filter((c) => !same(c, mine)).concat(node.children.map(leaves));
  } else {
    next = clusters.map((c) => c.filter((k) => !mine.includes(k))).filter((c) => c.length);
    next.push(mine);
  }
  const rank = (k) => order.indexOf(k);
  next = next.map((c) => [...c].sort((a, b) => rank(a) - rank(b)));
  next.sort((a, b) => rank(a[0]) - rank(b[0]));
  return next;
}

// Draw `roots` (LabelTree.subtree) into the SVG; onClick(node) for latent nodes.
export function drawDendrogram(root, roots, clusters, names, onClick) {
  while (root.firstChild) root.removeChild(root.firstChild);
  const depthOf = (n) => (n.children === undefined ? 0 : 1 + Math.max(...n.children.map(depthOf)));
  const depth = Math.max(1, ...roots.map(depthOf));
  const rowH = 24, colW = 44, labelW = 210, pad = 12;
  const count = roots.reduce((s, r) => s + leaves(r).length, 0);
  const width = pad + depth * colW + labelW;
  const height = pad * 2 + Math.max(1, count) * rowH;
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  root.setAttribute("width", width);
  root.setAttribute("height", height);
  const clusterOf = (k) => clusters.findIndex((c) => c.includes(k));
  let next = 0;
  const place = (n, level) => {
    // x by height above the leaves (all leaves in one column), y by leaf order
    const x = pad + (depth - level) * colW;
    if (n.children === undefined) {
      const y = pad + rowH * (next++ + 0.5);
      return { n, x: pad + depth * colW, y, kids: [] };
    }
    const kids = n.children.map((c) => place(c, level - 1));
    return { n, x, y: kids.reduce((s, k) => s + k.y, 0) / kids.length, kids };
  };
  const placed = roots.map((r) => place(r, depthOf(r)));
  const links = svg("g", { class: "links" }, root);
  const nodes = svg("g", { class: "nodes" }, root);
  const visit = (p) => {
    for (const k of p.kids) {
      svg("path", { d: `M${p.x},${p.y} V${k.y} H${k.x}`, class: "link" }, links);
      visit(k);
    }
    if (p.kids.length === 0) {
      const c = clusterOf(p.n.class);
      const g = svg("g", { class: "leaf", "data-class": p.n.class }, nodes);
      svg("circle", { cx: p.x, cy: p.y, r: 5, fill: COLOURS[c % COLOURS.length] || "#999" }, g);
      const t = svg("text", { x: p.x + 10, y: p.y + 4, class: "leaf-label" }, g);
      t.textContent = `${names[p.n.class] ?? p.n.name} (${p.n.class})`;
      return;
    }
    const mine = leaves(p.n);
    const merged = clusters.findIndex((c) => same(c, mine));
    const g = svg("g", { class: merged >= 0 ? "node merged" : "node", "data-id": p.n.id, tabindex: 0, role: "button" }, nodes);
    const title = svg("title", {}, g);
    title.textContent = merged >= 0 && mine.length > 1 ? `${p.n.id}: click to split this cluster` : `${p.n.id}: click to merge ${mine.length} classes`;
    svg("circle", { cx: p.x, cy: p.y, r: 7, fill: merged >= 0 ? COLOURS[merged % COLOURS.length] : "#fff" }, g);
    const handler = () => onClick(p.n);
    g.addEventListener("click", handler);
    g.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") handler(); });
  };
  placed.forEach(visit);
}
