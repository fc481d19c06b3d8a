// The JSON API of API.md. The CSRF token from the login answer lives in sessionStorage.
import { t } from "./ui.js";

const KEYS = { subscriber: "ca.csrf", ra: "ca.ra.csrf" };

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.body = body || {};
  }
}

export function setToken(area, token) {
  if (token) sessionStorage.setItem(KEYS[area], token);
  else sessionStorage.removeItem(KEYS[area]);
}

export async function call(area, method, path, body, { accept } = {}) {
  const headers = { Accept: accept || "application/json" };
  const token = sessionStorage.getItem(KEYS[area]);
  if (token && method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", t("err_network"));
  }
  if (r.status === 204) return null;
  const type = r.headers.get("Content-Type") || "";
  if (!r.ok) {
    let err = {};
    if (type.includes("json")) err = await r.json().catch(() => ({}));
    throw new ApiError(r.status, err.error || "http_" + r.status, err.message, err);
  }
  if (type.includes("json")) return r.json();
  return r.text();
}

// The message to show for an API error: our own text for known codes, else the server's.
export function describe(err) {
  const known = `err_${err.code}`;
  const text = t(known);
  if (text !== known) return text;
  return t("err_generic") + (err.message || err.code);
}
