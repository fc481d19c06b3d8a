// The JSON API of API.md. The CSRF token lives in this tab's sessionStorage; a tab that has
// none (a second or restored tab) asks GET /api/v1/session (or /api/v1/ra/session) for the
// session's token, and a change refused with csrf_failed is retried once with a fresh token.
import { t } from "./ui.js";

const KEYS = { subscriber: "ca.csrf", ra: "ca.ra.csrf" };
const SESSION = { subscriber: "/api/v1/session", ra: "/api/v1/ra/session" };

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

async function send(method, path, body, headers) {
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

// The session's CSRF token from the server (any tab holding the cookie may ask)
async function refreshToken(area) {
  const r = await send("GET", SESSION[area], undefined, { Accept: "application/json" });
  setToken(area, r.csrf_token);
  return r.csrf_token;
}

export async function call(area, method, path, body, { accept } = {}) {
  const headers = { Accept: accept || "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method === "GET" || method === "HEAD") return send(method, path, body, headers);
  const isLogin = method === "POST" && path === SESSION[area];
  let token = sessionStorage.getItem(KEYS[area]);
  if (!token && !isLogin) token = await refreshToken(area).catch(() => null);
  if (token) headers["X-CSRF-Token"] = token;
  try {
    return await send(method, path, body, headers);
  } catch (err) {
    if (isLogin || !(err instanceof ApiError) || err.code !== "csrf_failed") throw err;
    headers["X-CSRF-Token"] = await refreshToken(area);  // another tab logged in again
    return send(method, path, body, headers);
  }
}

// Ends the server session. true when it is over (also when it had already ended); false when
// the server could not be told, so the page must say the session may still be alive.
export async function logout(area) {
  try {
    await call(area, "DELETE", SESSION[area]);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) return false;
  }
  setToken(area, null);
  return true;
}

// The message to show for an API error, always in the page's language: our own text for every
// code of API.md, the generic text + the code for one we do not know; never the server's
// (English) message.
export function describe(err) {
  const known = `err_${err.code}`;
  const text = t(known);
  if (text !== known) return text;
  return t("err_generic") + (err.code || err.status);
}
