// Client-side routing with the History API: each page is a URL the gateway answers with index.html.

import { showError } from "./api.js";

const routes = [];
let current = null;

/** Register a page: pattern is a RegExp over the path, render(main, match, url) draws it. */
export function route(pattern, render) {
  routes.push({ pattern, render });
}

/** Go to a URL inside the explorer (push a history entry unless replace). */
export function navigate(url, { replace: replaceEntry = false } = {}) {
  if (replaceEntry) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

/** Change the URL's query without drawing the page again (the page keeps its own state). */
export function setQuery(params) {
  const url = `${location.pathname}?${new URLSearchParams(params)}`;
  if (url !== `${location.pathname}${location.search}`) history.replaceState(null, "", url);
}

async function render() {
  const main = document.getElementById("app");
  const url = new URL(location.href);
  showError(null);
  if (current && current.leave) current.leave();
  current = null;
  for (const { pattern, render: draw } of routes) {
    const match = url.pathname.match(pattern);
    if (!match) continue;
    main.replaceChildren();
    try {
      current = (await draw(main, match, url)) || null;
    } catch (error) {
      showError(error);
    }
    return;
  }
  main.replaceChildren();
  main.append(`No page at ${url.pathname}.`);
}

function internal(anchor) {
  const href = anchor.getAttribute("href");
  if (!href || !href.startsWith("/") || href.startsWith("//") || href.startsWith("/api")) return null;
  if (anchor.target || anchor.hasAttribute("download")) return null;
  return href;
}

/** Start: follow same-origin links in the page, and the browser's back and forward. */
export function start() {
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const anchor = event.target.closest("a");
    const href = anchor && internal(anchor);
    if (!href) return;
    event.preventDefault();
    navigate(href);
    window.scrollTo(0, 0);
    document.getElementById("app").focus({ preventScroll: true });
  });
  window.addEventListener("popstate", render);
  render();
}
