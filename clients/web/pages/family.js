// A family's page: its tree drawn as a graph (parent over children, sized by density), each node
// linked to its feature, the label and score, and a link to steer search with the whole family.

import { api } from "../api.js";
import { facts, h, num, paths, percent } from "../dom.js";
import { tree } from "../svg.js";

export async function familyPage(main, match) {
  const saeId = decodeURIComponent(match[1]);
  const familyId = decodeURIComponent(match[2]);
  const family = await api.get(`/saes/${encodeURIComponent(saeId)}/families/${encodeURIComponent(familyId)}`);
  document.title = `Family ${familyId}: ${family.label} · featurelens`;
  const root = family.members.find((m) => m.parent === null);
  const steer = { sae: saeId, steer: `${familyId}:0.5` };
  if (family.corpus) steer.corpus = family.corpus;
  main.append(
    h("p", { class: "small" }, h("a", { href: paths.sae(saeId) }, `SAE ${saeId}`), " › family"),
    h("h1", {}, `Family ${familyId}: `, h("span", { id: "family-label" }, family.label || "unlabelled")),
    h("p", {}, h("a", { href: paths.search(steer), id: "steer-link" }, "Steer search with this family"),
      h("span", { class: "muted small" }, " (the family's direction at +0.5 on the search page)")),
    facts([
      ["root feature", h("a", { href: paths.feature(saeId, family.parent_feature) }, `#${family.parent_feature}`)],
      ["root's label score", root ? num(root.label_score) : "—"],
      ["members", String(family.features.length)],
      ["depth", String(family.depth)],
      ["root density", percent(family.root_density)],
      ["nested in", family.nested_in ? h("a", { href: paths.family(saeId, family.nested_in) }, family.nested_in) : "—"],
      ["corpus", family.corpus || "—"],
    ]),
    h("h2", { id: "tree-title" }, "Tree"),
    h("p", { class: "small muted" }, "Parents over children; a node's area grows with its density. Each node opens its feature."),
    h("div", { style: "overflow-x: auto" },
      tree(family.members, { title: `Tree of family ${familyId}`, href: (m) => paths.feature(saeId, m.feature) })),
    h("h2", {}, "Members"),
    h("table", { id: "members" },
      h("thead", {}, h("tr", {}, h("th", {}, "feature"), h("th", {}, "parent"), h("th", { class: "num" }, "density"), h("th", { class: "num" }, "label score"))),
      h("tbody", {}, family.members.map((m) => h("tr", {},
        h("td", {}, h("a", { href: paths.feature(saeId, m.feature) }, `#${m.feature} ${m.label || "unlabelled"}`)),
        h("td", {}, m.parent === null ? "root" : `#${m.parent}`),
        h("td", { class: "num" }, percent(m.density)),
        h("td", { class: "num" }, num(m.label_score)))))));
}
