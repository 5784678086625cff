// Building DOM nodes without innerHTML: every text from the API goes in as a text node.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "value" && "value" in node && node.namespaceURI !== SVG_NS) {
      node.value = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("a", {href: "/x"}, "text", otherNode). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, same shape as h(). */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace everything inside node with children. */
export function replace(node, ...children) {
  node.replaceChildren();
  return fill(node, {}, children);
}

/** A number with a few significant digits, or a dash for null. */
export function num(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (Number.isInteger(value)) return String(value);
  return Number(value).toPrecision(digits);
}

/** A fraction as a percentage ("0.37%"), or a dash. */
export function percent(value) {
  if (value === null || value === undefined) return "—";
  const p = value * 100;
  return `${p >= 1 ? p.toFixed(1) : p.toPrecision(2)}%`;
}

/** A definition list of [term, value] pairs. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** Paths of the explorer's pages. */
export const paths = {
  feature: (saeId, feature) => `/saes/${encodeURIComponent(saeId)}/features/${feature}`,
  family: (saeId, familyId) => `/saes/${encodeURIComponent(saeId)}/families/${encodeURIComponent(familyId)}`,
  sae: (saeId) => `/saes/${encodeURIComponent(saeId)}`,
  search: (params) => `/search?${new URLSearchParams(params)}`,
  arxiv: (id) => `https://arxiv.org/abs/${encodeURIComponent(id)}`,
};
