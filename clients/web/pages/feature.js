// A feature's page: label and scores, density, activation histogram, top documents, neighbours,
// families, a box to test a text, and a link to steer search with it.

import { api, showError } from "../api.js";
import { facts, h, num, paths, percent, replace } from "../dom.js";
import { histogram } from "../svg.js";

export async function featurePage(main, match, url) {
  const saeId = decodeURIComponent(match[1]);
  const feature = Number(match[2]);
  const corpus = url.searchParams.get("corpus") || undefined;
  const base = `/saes/${encodeURIComponent(saeId)}/features/${feature}`;
  main.append(h("h1", {}, `Feature ${feature}`), h("p", { class: "muted" }, "Loading…"));
  const [page, activations] = await Promise.all([
    api.get(base, { corpus, top_documents: 10, neighbours: 10 }),
    api.get(`${base}/activations`, { corpus, bins: 20 }).catch((error) => {
      showError(error);
      return null;
    }),
  ]);
  const label = page.label;
  document.title = `Feature ${feature}${label ? `: ${label.label}` : ""} · featurelens`;
  const steerParams = { sae: saeId, steer: `${feature}:0.5` };
  if (page.corpus) steerParams.corpus = page.corpus;

  replace(main,
    h("p", { class: "small" }, h("a", { href: paths.sae(saeId) }, `SAE ${saeId}`), " › feature"),
    h("h1", {}, `Feature ${feature}: `, h("span", { id: "feature-label" }, label ? label.label : "not labelled yet")),
    h("p", {}, h("a", { href: paths.search(steerParams), id: "steer-link" }, "Steer search with this feature"),
      h("span", { class: "muted small" }, " (opens the search page with this feature's slider at +0.5)")),
    h("div", { class: "grid2" },
      h("section", { "aria-labelledby": "label-title" },
        h("h2", { id: "label-title" }, "Label and scores"),
        label ? labelFacts(label) : h("p", { class: "muted" }, "No label yet: run the labeller on this SAE.")),
      h("section", { "aria-labelledby": "hist-title" },
        h("h2", { id: "hist-title" }, "Activations"),
        activations
          ? [histogram(activations.bins, { title: `Activations of feature ${feature} on ${activations.sampled} sampled documents it fires on`, xLabel: "activation" }),
            h("p", { class: "small muted" }, `${activations.sampled} documents of ${activations.corpus} it fires on, sampled with a fixed seed.`)]
          : h("p", { class: "muted" }, "No activations to show."))),
    testBox(saeId, feature),
    h("section", { "aria-labelledby": "top-title" },
      h("h2", { id: "top-title" }, `Top documents${page.corpus ? ` in ${page.corpus}` : ""}`),
      page.top_documents.length
        ? h("table", { id: "top-documents" },
          h("thead", {}, h("tr", {}, h("th", { class: "num" }, "activation"), h("th", {}, "paper"), h("th", {}, "categories"), h("th", {}, "date"))),
          h("tbody", {}, page.top_documents.map((x) => h("tr", {},
            h("td", { class: "num" }, num(x.activation)),
            h("td", {}, h("a", { href: paths.arxiv(x.document.id), target: "_blank", rel: "noopener" }, x.document.title || x.document.id)),
            h("td", {}, x.document.categories.join(", ")),
            h("td", {}, x.document.date)))))
        : h("p", { class: "muted" }, "It fires on no indexed document.")),
    h("div", { class: "grid2" },
      neighbours("decoder-title", "Similar decoder directions", "cosine", saeId, page.decoder_neighbours),
      page.cooccurrence_neighbours === null
        ? h("section", {}, h("h2", {}, "Co-occurring features"), h("p", { class: "muted" }, "Co-occurrence is not built for this SAE yet (build the families)."))
        : neighbours("cooc-title", "Co-occurring features", "co-occurrence", saeId, page.cooccurrence_neighbours)),
    h("section", { "aria-labelledby": "families-title" },
      h("h2", { id: "families-title" }, "Families"),
      page.families.length
        ? h("ul", { id: "families" }, page.families.map((f) => h("li", {},
          h("a", { href: paths.family(saeId, f.family_id) }, f.label || "unlabelled family"), h("span", { class: "muted small" }, ` ${f.family_id}`))))
        : h("p", { class: "muted" }, "In no family.")));
}

function labelFacts(label) {
  return facts([
    ["interpreter", label.interpreter_model],
    ["predictor", label.predictor_model],
    ["prompt version", label.prompt_version],
    ["density", percent(label.density)],
    ["Pearson r", num(label.pearson_r)],
    ["F1", num(label.f1)],
    ["AUROC", num(label.auroc)],
    ["AUROC (hard negatives)", num(label.auroc_hard)],
    ["balanced accuracy", num(label.balanced_accuracy)],
    ["embedding AUROC", num(label.embedding_auroc)],
    ["embedding AUROC (hard)", num(label.embedding_auroc_hard)],
    ["documents scored", num(label.scored_documents)],
    ...(label.score_note ? [["note", label.score_note]] : []),
  ]);
}

function neighbours(id, title, scoreName, saeId, items) {
  return h("section", { "aria-labelledby": id },
    h("h2", { id }, title),
    items.length
      ? h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "feature"), h("th", { class: "num" }, scoreName))),
        h("tbody", {}, items.map((n) => h("tr", {},
          h("td", {}, h("a", { href: paths.feature(saeId, n.feature) }, `#${n.feature} ${n.label || "unlabelled"}`)),
          h("td", { class: "num" }, num(n.score))))))
      : h("p", { class: "muted" }, "None."));
}

function testBox(saeId, feature) {
  const text = h("textarea", { id: "probe-text", rows: 3, cols: 80, placeholder: "Paste an abstract or type a sentence" });
  const answer = h("div", { id: "probe-result", role: "status", "aria-live": "polite" });
  const form = h("form", {},
    h("label", { for: "probe-text" }, "Test a text: does this feature fire on it?"), h("br"), text, h("br"),
    h("button", { type: "submit" }, "Test"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    replace(answer, "Testing…");
    try {
      const result = await api.post(`/saes/${encodeURIComponent(saeId)}/features/${feature}/test`, { text: text.value });
      replace(answer,
        h("p", { class: "label-big" }, result.fires
          ? `Fires: activation ${num(result.activation)}, rank ${result.rank} of ${result.active_features.length} active features.`
          : "Does not fire on this text."),
        h("p", { class: "small muted" }, "Active features of the text: ",
          result.active_features.map((f, i) => [i ? ", " : "",
            h("a", { href: paths.feature(saeId, f.feature) }, `#${f.feature} ${f.label || "unlabelled"}`), ` (${num(f.activation, 2)})`])));
    } catch (error) {
      replace(answer);
      showError(error);
    }
  });
  return h("section", { "aria-labelledby": "probe-title", class: "panel" }, h("h2", { id: "probe-title" }, "Test a text"), form, answer);
}
