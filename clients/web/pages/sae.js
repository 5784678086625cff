// The SAE pages: the list of SAEs, and one SAE's configuration, metrics, density histogram,
// families and features (sortable by score or density, searchable, paged).

import { api, showError } from "../api.js";
import { facts, h, num, paths, percent, replace } from "../dom.js";
import { setQuery } from "../router.js";
import { histogram } from "../svg.js";

const PAGE_SIZE = 25;

export async function saesPage(main) {
  const { saes } = await api.get("/saes");
  document.title = "SAEs · featurelens";
  main.append(h("h1", {}, "SAEs"),
    saes.length
      ? h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "SAE"), h("th", { class: "num" }, "latents"), h("th", { class: "num" }, "k"), h("th", {}, "embedding model"), h("th", { class: "num" }, "val NMSE"))),
        h("tbody", {}, saes.map((x) => h("tr", {},
          h("td", {}, h("a", { href: paths.sae(x.sae_id) }, x.sae_id), x.is_default ? h("span", { class: "badge" }, " default") : ""),
          h("td", { class: "num" }, String(x.config.num_latents)),
          h("td", { class: "num" }, String(x.config.k)),
          h("td", {}, x.embedding_model),
          h("td", { class: "num" }, num(x.metrics.val_nmse))))))
      : h("p", { class: "muted" }, "No SAE is trained yet."));
}

export async function saePage(main, match, url) {
  const saeId = decodeURIComponent(match[1]);
  const base = `/saes/${encodeURIComponent(saeId)}`;
  const [sae, densities, families] = await Promise.all([
    api.get(base),
    api.get(`${base}/densities`, { bins: 20 }),
    api.get(`${base}/families`, { page_size: 50 }),
  ]);
  document.title = `SAE ${saeId} · featurelens`;
  const c = sae.config, m = sae.metrics;
  const orderSelect = h("select", { id: "order" },
    h("option", { value: "score" }, "label score, best first"),
    h("option", { value: "density_desc" }, "density, highest first"),
    h("option", { value: "density_asc" }, "density, lowest first"));
  orderSelect.value = ["score", "density_desc", "density_asc"].includes(url.searchParams.get("order")) ? url.searchParams.get("order") : "score";
  const filterInput = h("input", { id: "feature-search", type: "search", placeholder: "search labels", autocomplete: "off" });
  const table = h("tbody", { id: "feature-rows" });
  const pager = h("div", { class: "pager" });
  const state = { tokens: [""], index: 0 };

  main.append(
    h("h1", {}, `SAE ${saeId}`, sae.is_default ? h("span", { class: "badge" }, " default") : ""),
    h("div", { class: "grid2" },
      h("section", { "aria-labelledby": "config-title" },
        h("h2", { id: "config-title" }, "Configuration"),
        facts([
          ["latents", String(c.num_latents)], ["k (active per input)", String(c.k)], ["input dimension", String(c.d_in)],
          ["embedding model", sae.embedding_model], ["auxiliary k", num(c.k_aux)], ["auxiliary loss weight", num(c.auxk_coef)],
          ["dead after steps", num(c.dead_steps_threshold)], ["multi-k weight", num(c.multik_coef)], ["multi-k k", num(c.multik_k)],
          ["created", new Date(sae.created_unix * 1000).toISOString().slice(0, 10)],
        ]),
        h("h2", { id: "metrics-title" }, "Metrics"),
        facts([
          ["train NMSE", num(m.train_nmse)], ["validation NMSE", num(m.val_nmse)],
          ["dead latents", percent(m.dead_fraction)], ["dense latents (>10%)", percent(m.dense_fraction)],
          ["steps", String(m.steps)], ["samples", String(m.samples)],
          ["best epoch", m.best_epoch === null || m.best_epoch === undefined ? "—" : String(m.best_epoch)],
          ["stopped early", m.stopped_early ? "yes" : "no"],
        ]),
        h("p", { class: "small muted" }, "Training curves and scaling figures are not offered by the API yet.")),
      h("section", { "aria-labelledby": "density-title" },
        h("h2", { id: "density-title" }, "Feature densities"),
        histogram(densities.bins, {
          title: `Densities of the ${densities.labelled_features} labelled features, by log10`,
          xLabel: "density (log scale)", tickLabel: (v) => `1e${v.toFixed(1)}`,
        }),
        h("p", { class: "small muted" }, `${densities.labelled_features} of ${densities.num_latents} features labelled; ${densities.never_fire} never fire.`),
        h("h2", { id: "families-title" }, "Families"),
        families.families.length
          ? h("ul", { id: "family-list" }, families.families.map((f) => h("li", {},
            h("a", { href: paths.family(saeId, f.family_id) }, f.label || f.family_id),
            h("span", { class: "muted small" }, ` ${f.family_id} · ${f.features.length} features`))))
          : h("p", { class: "muted" }, "No families built yet."))),
    h("section", { "aria-labelledby": "features-title" },
      h("h2", { id: "features-title" }, "Features"),
      h("div", { class: "controls" },
        h("label", { for: "order" }, "Sort by", orderSelect),
        h("label", { for: "feature-search", class: "grow" }, "Search labels (empty: all features)", filterInput)),
      h("table", { id: "features" },
        h("thead", {}, h("tr", {}, h("th", {}, "feature"), h("th", {}, "label"), h("th", { class: "num" }, "density"), h("th", { class: "num" }, "embedding AUROC"), h("th", { class: "num" }, "Pearson r"))),
        table),
      pager));

  function row(label, note) {
    return h("tr", { dataset: { feature: String(label.feature), density: String(label.density) } },
      h("td", {}, h("a", { href: paths.feature(saeId, label.feature) }, `#${label.feature}`)),
      h("td", {}, label.label, note ? h("span", { class: "muted small" }, ` ${note}`) : ""),
      h("td", { class: "num" }, percent(label.density)),
      h("td", { class: "num" }, num(label.embedding_auroc)),
      h("td", { class: "num" }, num(label.pearson_r)));
  }

  async function load() {
    try {
      const phrase = filterInput.value.trim();
      if (phrase) {
        const found = await api.get(`${base}/labels/search`, { q: phrase, top_k: PAGE_SIZE });
        table.dataset.order = "match";
        replace(table, found.matches.map((x) => row(x.label, `(match ${num(x.score, 2)})`)));
        replace(pager, h("span", { class: "muted small" }, `${found.matches.length} best matches`));
        return;
      }
      const page = await api.get(`${base}/labels`, { order: orderSelect.value, page_size: PAGE_SIZE, page_token: state.tokens[state.index] });
      if (page.next_page_token && state.tokens.length === state.index + 1) state.tokens.push(page.next_page_token);
      table.dataset.order = orderSelect.value;
      replace(table, page.labels.length ? page.labels.map((x) => row(x)) : h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No labelled features yet.")));
      const previous = h("button", { type: "button", disabled: state.index === 0 }, "Previous page");
      const next = h("button", { type: "button", disabled: !page.next_page_token }, "Next page");
      previous.addEventListener("click", () => { state.index -= 1; load(); });
      next.addEventListener("click", () => { state.index += 1; load(); });
      replace(pager, previous, h("span", { class: "small muted" }, `page ${state.index + 1}`), next);
    } catch (error) {
      showError(error);
    }
  }

  orderSelect.addEventListener("change", () => {
    state.tokens = [""];
    state.index = 0;
    setQuery({ order: orderSelect.value });
    load();
  });
  let timer = null;
  filterInput.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(load, 300);
  });
  await load();
  return { leave: () => clearTimeout(timer) };
}
