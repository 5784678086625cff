// The gateway's JSON API: fetch, JSON in and out, and errors shown to the user with the request id.

import { h, replace } from "./dom.js";

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

async function call(method, path, { params, body } = {}) {
  const query = params ? `?${new URLSearchParams(clean(params))}` : "";
  let response;
  try {
    response = await fetch(`/api/v1${path}${query}`, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "UNAVAILABLE", `the gateway cannot be reached (${error.message})`, "");
  }
  const requestId = response.headers.get("X-Request-Id") || "";
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = payload && payload.error ? payload.error : {};
    throw new ApiError(
      response.status,
      detail.code || `HTTP ${response.status}`,
      detail.message || response.statusText,
      detail.request_id || requestId,
    );
  }
  return payload;
}

function clean(params) {
  return Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
}

export const api = {
  get: (path, params) => call("GET", path, { params }),
  post: (path, body) => call("POST", path, { body }),
};

/** Show an error at the top of the page (with the request id to quote), or clear it with null. */
export function showError(error) {
  const box = document.getElementById("errors");
  if (!error) {
    replace(box);
    return;
  }
  if (!(error instanceof ApiError)) {
    console.error(error);
  }
  const id = error.requestId ? h("span", { class: "small" }, ` (request id ${error.requestId})`) : "";
  replace(
    box,
    h("strong", {}, error.code || "Error"),
    ": ",
    error.message,
    id,
    h("button", { type: "button", class: "dismiss", onclick: () => showError(null) }, "Dismiss"),
  );
}
