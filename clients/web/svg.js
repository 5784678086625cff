// Charts drawn as inline SVG: a histogram and a family tree.

import { h, s, num } from "./dom.js";

/**
 * A bar chart of bins ({lower, upper, count}); tickLabel(value) writes a bin edge.
 * title names the chart for screen readers.
 */
export function histogram(bins, { title, xLabel, tickLabel = (v) => num(v, 2) }) {
  const width = 520, height = 200, left = 40, bottom = 36, top = 10, right = 10;
  const plotW = width - left - right, plotH = height - top - bottom;
  const max = Math.max(1, ...bins.map((b) => b.count));
  const barW = bins.length ? plotW / bins.length : plotW;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": title },
    s("title", {}, title));
  svg.append(s("line", { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, stroke: "#9aa5b1" }));
  svg.append(s("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, String(max)));
  svg.append(s("text", { x: left - 6, y: top + plotH, "text-anchor": "end" }, "0"));
  bins.forEach((bin, i) => {
    const barH = (bin.count / max) * plotH;
    svg.append(s("rect", {
      class: "bar", x: left + i * barW + 1, y: top + plotH - barH, width: Math.max(1, barW - 2), height: barH,
    }, s("title", {}, `${tickLabel(bin.lower)} to ${tickLabel(bin.upper)}: ${bin.count}`)));
  });
  if (bins.length) {
    const ticks = [0, Math.floor(bins.length / 2)];
    for (const i of new Set(ticks)) {
      svg.append(s("text", { x: left + i * barW, y: top + plotH + 14, "text-anchor": "start" }, tickLabel(bins[i].lower)));
    }
    svg.append(s("text", { x: left + plotW, y: top + plotH + 14, "text-anchor": "end" }, tickLabel(bins[bins.length - 1].upper)));
  }
  svg.append(s("text", { x: left + plotW / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  return svg;
}

/**
 * A family's tree: parent over children, node area by density, each node a link (href(member)).
 * members: [{feature, parent, density, label}], the root's parent null.
 */
export function tree(members, { title, href }) {
  const children = new Map(members.map((m) => [m.feature, []]));
  let root = null;
  for (const m of members) {
    if (m.parent === null || !children.has(m.parent)) root = root ?? m;
    else children.get(m.parent).push(m);
  }
  if (!root) return h("p", { class: "muted" }, "This family has no members.");
  // Leaves take the next column; a parent sits over the middle of its children.
  const place = new Map();
  let column = 0, depth = 0;
  const visit = (m, level) => {
    depth = Math.max(depth, level);
    const kids = children.get(m.feature);
    if (!kids.length) {
      place.set(m.feature, { x: column++, y: level });
    } else {
      kids.forEach((k) => visit(k, level + 1));
      const xs = kids.map((k) => place.get(k.feature).x);
      place.set(m.feature, { x: (Math.min(...xs) + Math.max(...xs)) / 2, y: level });
    }
  };
  visit(root, 0);
  const colW = 130, rowH = 110, pad = 40;
  const width = Math.max(1, column) * colW + pad, height = (depth + 1) * rowH + pad;
  const at = (f) => ({ x: pad / 2 + place.get(f).x * colW + colW / 2, y: pad / 2 + place.get(f).y * rowH + 24 });
  const maxDensity = Math.max(1e-9, ...members.map((m) => m.density));
  const radius = (d) => 6 + 18 * Math.sqrt(Math.max(0, d) / maxDensity);
  const svg = s("svg", { class: "chart tree", viewBox: `0 0 ${width} ${height}`, width, height, role: "group", "aria-label": title },
    s("title", {}, title));
  for (const m of members) {
    if (m === root || !place.has(m.parent)) continue;
    const a = at(m.parent), b = at(m.feature);
    svg.append(s("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y }));
  }
  for (const m of members) {
    if (!place.has(m.feature)) continue;
    const p = at(m.feature);
    const name = m.label || "unlabelled";
    const short = name.length > 20 ? `${name.slice(0, 19)}…` : name;
    svg.append(s("a", { href: href(m), class: "node", "aria-label": `Feature ${m.feature}: ${name}`, dataset: { feature: String(m.feature) } },
      s("title", {}, `Feature ${m.feature}: ${name} (density ${num(m.density, 2)})`),
      s("circle", { cx: p.x, cy: p.y, r: radius(m.density) }),
      s("text", { x: p.x, y: p.y + radius(m.density) + 13, "text-anchor": "middle" }, `#${m.feature}`),
      s("text", { x: p.x, y: p.y + radius(m.density) + 26, "text-anchor": "middle" }, short)));
  }
  return svg;
}
