// The search page: pickers, a query, one slider per feature of the query (and per feature or family
// added by phrase), results that show how each hit moved, and an explanation per hit.

import { api, showError } from "../api.js";
import { h, num, paths, replace } from "../dom.js";
import { setQuery } from "../router.js";

const MIN_WEIGHT = -2, MAX_WEIGHT = 2, STEP = 0.05;
const DEBOUNCE_MS = 300;
const TOP_K = 10;

/** "123:0.5,f12-p0:-0.3" → [{kind, id, weight}] (bad items are skipped). */
export function parseSteer(text) {
  const out = [];
  for (const item of (text || "").split(",")) {
    const at = item.lastIndexOf(":");
    if (at <= 0) continue;
    const target = item.slice(0, at).trim(), weight = Number(item.slice(at + 1));
    if (!Number.isFinite(weight)) continue;
    if (/^\d+$/.test(target)) out.push({ kind: "feature", id: Number(target), weight });
    else if (target) out.push({ kind: "family", id: target, weight });
  }
  return out;
}

/** The steer parameter of the sliders that are not at 0. */
export function formatSteer(sliders) {
  return sliders.filter((x) => x.weight !== 0).map((x) => `${x.id}:${x.weight}`).join(",");
}

/** What a hit's move looks like: rank_before 0 is new, else the ranks it climbed or fell. */
export function movement(hit) {
  if (hit.rank_before === 0) return { kind: "new", text: "new", label: "new in the results" };
  const delta = hit.rank_before - hit.rank;
  if (delta > 0) return { kind: "up", text: `↑${delta}`, label: `up ${delta} from rank ${hit.rank_before}` };
  if (delta < 0) return { kind: "down", text: `↓${-delta}`, label: `down ${-delta} from rank ${hit.rank_before}` };
  return { kind: "same", text: "=", label: "same rank" };
}

export async function searchPage(main, _match, url) {
  const params = url.searchParams;
  const state = {
    corpus: params.get("corpus") || "",
    sae: params.get("sae") || "",
    mode: params.get("mode") || "dense",
    q: params.get("q") || "",
    sliders: parseSteer(params.get("steer")).map((x) => ({ ...x, label: "", fromQuery: false })),
    sequence: 0,
    timer: null,
    families: null,
  };

  const corpusSelect = h("select", { id: "corpus" });
  const saeSelect = h("select", { id: "sae" });
  const modeSelect = h("select", { id: "mode" },
    ["dense", "sparse", "hybrid"].map((m) => h("option", { value: m }, m)));
  modeSelect.value = ["dense", "sparse", "hybrid"].includes(state.mode) ? state.mode : "dense";
  const queryInput = h("input", { id: "query", type: "search", value: state.q, placeholder: "e.g. dark matter halos", autocomplete: "off" });
  const form = h("form", { class: "controls", role: "search" },
    h("label", { for: "corpus" }, "Corpus", corpusSelect),
    h("label", { for: "sae" }, "SAE", saeSelect),
    h("label", { for: "mode" }, "Mode", modeSelect),
    h("label", { for: "query", class: "grow" }, "Query", queryInput),
    h("button", { type: "submit" }, "Search"));

  const sliderList = h("ul", { class: "sliders", id: "sliders", "aria-label": "Steering sliders" });
  const phraseInput = h("input", { id: "phrase", type: "text", placeholder: "a phrase, e.g. galaxy clusters", autocomplete: "off" });
  const matchList = h("ul", { class: "matches", id: "matches", "aria-label": "Matching features and families" });
  const addForm = h("form", { class: "controls" },
    h("label", { for: "phrase", class: "grow" }, "Add a feature or family by phrase", phraseInput),
    h("button", { type: "submit" }, "Find"));
  const resetButton = h("button", { type: "button", id: "reset-weights" }, "Set all weights to 0");
  const status = h("p", { id: "result-status", class: "muted", role: "status", "aria-live": "polite" });
  const hitList = h("ol", { class: "hits", id: "hits", "aria-label": "Results" });
  const dropped = h("div", { id: "dropped" });

  main.append(
    h("h1", {}, "Search"),
    form,
    h("div", { class: "layout" },
      h("section", { class: "panel", "aria-labelledby": "steer-title" },
        h("h2", { id: "steer-title" }, "Steer by feature"),
        h("p", { class: "small muted" }, "Each active feature of the query has a slider: right pulls results towards it, left pushes them away, 0 leaves the query untouched."),
        sliderList, resetButton, addForm, matchList),
      h("section", { "aria-labelledby": "results-title" },
        h("h2", { id: "results-title" }, "Results"), status, hitList, dropped)));

  const [corpora, saes] = await Promise.all([api.get("/corpora"), api.get("/saes")]);
  const corpusList = corpora.corpora;
  if (!corpusList.length) {
    replace(status, "No corpus is indexed yet: index one (featurelens index …) and come back.");
    return;
  }
  replace(corpusSelect, corpusList.map((c) => h("option", { value: c.corpus }, `${c.corpus} (${c.documents} documents)`)));
  if (!corpusList.some((c) => c.corpus === state.corpus)) state.corpus = corpusList[0].corpus;
  corpusSelect.value = state.corpus;

  function fillSaes() {
    const corpus = corpusList.find((c) => c.corpus === state.corpus);
    const usable = saes.saes.filter((x) => corpus.sae_ids.includes(x.sae_id));
    replace(saeSelect, usable.map((x) => h("option", { value: x.sae_id }, `${x.sae_id}${x.is_default ? " (default)" : ""}`)));
    if (!usable.some((x) => x.sae_id === state.sae)) {
      state.sae = (usable.find((x) => x.is_default) || usable[0] || { sae_id: "" }).sae_id;
    }
    saeSelect.value = state.sae;
  }
  fillSaes();

  function saveUrl() {
    const query = { corpus: state.corpus, sae: state.sae, mode: state.mode, q: state.q };
    const steer = formatSteer(state.sliders);
    if (steer) query.steer = steer;
    setQuery(query);
  }

  function drawSliders() {
    if (!state.sliders.length) {
      replace(sliderList, h("li", { class: "muted small" }, state.q ? "No active features." : "Search to see the query's features."));
      return;
    }
    replace(sliderList, state.sliders.map((slider) => {
      const id = `w-${slider.kind}-${slider.id}`;
      const name = slider.kind === "family" ? `family ${slider.id}` : `feature ${slider.id}`;
      const title = slider.label || (slider.kind === "family" ? "family" : "unlabelled");
      const output = h("output", { for: id }, num(slider.weight, 2));
      const input = h("input", {
        id, type: "range", min: MIN_WEIGHT, max: MAX_WEIGHT, step: STEP, value: slider.weight,
        "aria-valuetext": `weight ${slider.weight}`,
        dataset: { kind: slider.kind, target: String(slider.id) },
      });
      const item = h("li", { class: `slider${slider.weight !== 0 ? " active" : ""}` });
      input.addEventListener("input", () => {
        slider.weight = Number(input.value);
        output.value = num(slider.weight, 2);
        input.setAttribute("aria-valuetext", `weight ${slider.weight}`);
        item.classList.toggle("active", slider.weight !== 0);
        schedule();
      });
      const link = slider.kind === "family" ? paths.family(state.sae, slider.id) : paths.feature(state.sae, slider.id);
      return fill(item,
        h("div", { class: "head" },
          h("label", { for: id }, title),
          h("a", { href: link, class: "small" }, name)),
        h("div", { class: "row" }, input, output,
          h("button", { type: "button", class: "small", "aria-label": `Set ${name} to 0`, onclick: () => {
            slider.weight = 0; drawSliders(); schedule(0);
          } }, "0")));
    }));
  }

  function interventions() {
    return state.sliders.filter((x) => x.weight !== 0).map((x) => (x.kind === "family"
      ? { family_id: x.id, weight: x.weight }
      : { feature: x.id, weight: x.weight }));
  }

  function schedule(delay = DEBOUNCE_MS) {
    clearTimeout(state.timer);
    state.timer = setTimeout(run, delay);
  }

  async function run() {
    clearTimeout(state.timer);
    saveUrl();
    if (!state.q.trim()) {
      drawSliders();
      replace(status, "Type a query and press Enter.");
      replace(hitList);
      replace(dropped);
      return;
    }
    const sequence = ++state.sequence;
    const steering = interventions();
    status.dataset.state = "loading";
    replace(status, "Searching…");
    let result;
    try {
      result = await api.post("/search", {
        corpus: state.corpus, text: state.q, sae_id: state.sae || null, mode: state.mode, top_k: TOP_K,
        interventions: steering, explain: true, with_rank_changes: steering.length > 0,
      });
    } catch (error) {
      if (sequence === state.sequence) {
        status.dataset.state = "error";
        replace(status, "The search failed.");
        showError(error);
      }
      return;
    }
    if (sequence !== state.sequence) return; // a newer search is on its way
    showError(null);
    mergeQueryFeatures(result);
    drawSliders();
    drawHits(result, steering.length > 0);
    const steeredText = steering.length
      ? ` · steered by ${steering.length} ${steering.length === 1 ? "slider" : "sliders"} (cosine to the query ${num(result.steer_cosine, 3)})`
      : " · unsteered";
    status.dataset.state = steering.length ? "steered" : "unsteered";
    replace(status, `${result.hits.length} results in ${Math.round(result.took_ms)} ms${steeredText}`);
  }

  function mergeQueryFeatures(result) {
    const known = new Map(state.sliders.map((x) => [`${x.kind}:${x.id}`, x]));
    const queryKeys = new Set(result.query_features.map((f) => `feature:${f.feature}`));
    // A slider of a former query stays only while it steers.
    state.sliders = state.sliders.filter((x) => !x.fromQuery || x.weight !== 0 || queryKeys.has(`${x.kind}:${x.id}`));
    for (const f of result.query_features) {
      const old = known.get(`feature:${f.feature}`);
      if (old) {
        old.label = old.label || f.label;
        old.fromQuery = true;
      } else {
        state.sliders.push({ kind: "feature", id: f.feature, weight: 0, label: f.label, fromQuery: true });
      }
    }
    for (const x of result.steered) {
      const slider = known.get(`feature:${x.feature}`);
      if (slider && !slider.label) slider.label = x.label;
    }
    for (const slider of state.sliders) {
      if (slider.kind === "family" && !slider.label) nameFamily(slider);
    }
  }

  async function nameFamily(slider) {
    try {
      const family = await api.get(`/saes/${encodeURIComponent(state.sae)}/families/${encodeURIComponent(slider.id)}`);
      slider.label = family.label || `family ${slider.id}`;
      drawSliders();
    } catch (error) {
      showError(error);
    }
  }

  function drawHits(result, steered) {
    replace(hitList, result.hits.map((hit) => {
      const doc = hit.document;
      const move = steered ? movement(hit) : null;
      const explainId = `explain-${hit.rank}`;
      const explanation = h("div", { class: "explain", id: explainId, hidden: true },
        hit.explanation.length
          ? h("table", {},
            h("caption", { class: "small muted" }, "Labelled features this paper shares with the query"),
            h("thead", {}, h("tr", {}, h("th", {}, "feature"), h("th", { class: "num" }, "query"), h("th", { class: "num" }, "paper"), h("th", { class: "num" }, "contribution"))),
            h("tbody", {}, hit.explanation.map((part) => h("tr", {},
              h("td", {}, h("a", { href: paths.feature(result.sae_id, part.feature) }, `#${part.feature} ${part.label || "unlabelled"}`)),
              h("td", { class: "num" }, num(part.query_activation)),
              h("td", { class: "num" }, num(part.document_activation)),
              h("td", { class: "num" }, num(part.contribution))))))
          : h("p", { class: "muted" }, "No labelled feature is shared with the query."));
      const toggle = h("button", { type: "button", class: "small", "aria-expanded": "false", "aria-controls": explainId }, "Explain");
      toggle.addEventListener("click", () => {
        const open = toggle.getAttribute("aria-expanded") !== "true";
        toggle.setAttribute("aria-expanded", String(open));
        explanation.hidden = !open;
      });
      return h("li", { class: "hit", dataset: { docId: doc.id, move: move ? move.kind : "unsteered" } },
        h("span", { class: "rank" }, `${hit.rank}.`),
        move ? h("span", { class: `move ${move.kind}`, title: move.label, "aria-label": move.label }, move.text) : h("span"),
        h("div", {},
          h("a", { class: "title", href: paths.arxiv(doc.id), rel: "noopener", target: "_blank" }, doc.title || doc.id),
          h("div", { class: "meta" }, [doc.id, doc.categories.join(", "), doc.date, `score ${num(hit.score, 4)}`].filter(Boolean).join(" · ")),
          toggle, explanation));
    }));
    if (result.dropped.length) {
      replace(dropped, h("h3", { class: "small" }, "Fell out of the top results"),
        h("ul", { class: "small" }, result.dropped.map((hit) => h("li", {},
          h("a", { href: paths.arxiv(hit.document.id), rel: "noopener", target: "_blank" }, hit.document.title || hit.document.id),
          ` (was ${hit.rank_before})`))));
    } else {
      replace(dropped);
    }
  }

  async function findByPhrase(phrase) {
    const text = phrase.trim();
    if (!text) return;
    const sae = encodeURIComponent(state.sae);
    try {
      if (state.families === null) {
        const page = await api.get(`/saes/${sae}/families`, { page_size: 1000 });
        state.families = page.families;
      }
      const found = await api.get(`/saes/${sae}/labels/search`, { q: text, top_k: 8 });
      const words = text.toLowerCase().split(/\s+/);
      const families = state.families.filter((f) => words.some((w) => f.label.toLowerCase().includes(w))).slice(0, 5);
      const options = [
        ...found.matches.map((m) => ({ kind: "feature", id: m.label.feature, label: m.label.label, note: `match ${num(m.score, 2)}` })),
        ...families.map((f) => ({ kind: "family", id: f.family_id, label: f.label, note: `${f.features.length} features` })),
      ];
      replace(matchList, options.length
        ? options.map((o) => h("li", {}, h("button", { type: "button", onclick: () => addSlider(o) },
          `Add ${o.kind} ${o.id}: ${o.label || "unlabelled"} `, h("span", { class: "muted small" }, `(${o.note})`))))
        : h("li", { class: "muted small" }, "Nothing matches that phrase."));
    } catch (error) {
      showError(error);
    }
  }

  function addSlider(option) {
    if (!state.sliders.some((x) => x.kind === option.kind && x.id === option.id)) {
      state.sliders.push({ kind: option.kind, id: option.id, label: option.label, weight: 0, fromQuery: false });
    }
    replace(matchList);
    drawSliders();
    saveUrl();
    document.getElementById(`w-${option.kind}-${option.id}`).focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.q = queryInput.value;
    run();
  });
  corpusSelect.addEventListener("change", () => {
    state.corpus = corpusSelect.value;
    fillSaes();
    state.families = null;
    run();
  });
  saeSelect.addEventListener("change", () => {
    state.sae = saeSelect.value;
    state.families = null;
    state.sliders = []; // feature ids belong to one SAE
    run();
  });
  modeSelect.addEventListener("change", () => {
    state.mode = modeSelect.value;
    run();
  });
  addForm.addEventListener("submit", (event) => {
    event.preventDefault();
    findByPhrase(phraseInput.value);
  });
  resetButton.addEventListener("click", () => {
    for (const slider of state.sliders) slider.weight = 0;
    drawSliders();
    schedule(0);
  });

  drawSliders();
  await run();
  if (!state.q) queryInput.focus();
  return { leave: () => { clearTimeout(state.timer); state.sequence++; } };
}

function fill(node, ...children) {
  node.append(...children);
  return node;
}
