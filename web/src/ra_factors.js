// RA officers' second factor: the login step after the password (/ra/verify) and the
// enrolment page (/ra/factors) for WebAuthn authenticators and TOTP apps.
// The server keeps every challenge (single use, bound to the session); this code only carries
// WebAuthn options in and credentials out, base64url-encoding the binary fields.
import { ApiError, call, describe, setToken } from "./api.js";
import { $, busy, clear, date, el, show, t } from "./ui.js";

const api = (method, path, body) => call("ra", method, path, body);
const HOME = "/ra/register";

function fromB64url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
}

function toB64url(buffer) {
  let bin = "";
  for (const b of new Uint8Array(buffer)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const withIds = (list) => (list || []).map((c) => ({ ...c, id: fromB64url(c.id) }));

function creationOptions(o) {
  return { ...o, challenge: fromB64url(o.challenge), user: { ...o.user, id: fromB64url(o.user.id) },
    excludeCredentials: withIds(o.excludeCredentials) };
}

function requestOptions(o) {
  return { ...o, challenge: fromB64url(o.challenge), allowCredentials: withIds(o.allowCredentials) };
}

// PublicKeyCredential -> the JSON form the server parses (as PublicKeyCredential.toJSON())
function credentialJson(cred) {
  const r = cred.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    if (r.getTransports) response.transports = r.getTransports();
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  }
  return { id: cred.id, rawId: toB64url(cred.rawId), type: cred.type, response,
    clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
    authenticatorAttachment: cred.authenticatorAttachment || undefined };
}

const hasWebAuthn = () => typeof window.PublicKeyCredential === "function"
  && !!navigator.credentials;

function fail(err) {
  if (err instanceof ApiError && err.status === 401 && err.code === "unauthenticated") {
    location.assign("/ra/");
    return;
  }
  if (err instanceof ApiError && err.code === "bad_challenge") return show("error", t("f_retry"));
  if (err instanceof ApiError) return show("error", describe(err));
  // a WebAuthn ceremony the user cancelled, timed out or the authenticator refused
  show("error", t("f_webauthn_error") + (err && err.name ? ` (${err.name})` : ""));
}

// where a completed login goes: the RA home, or back to the operator page that sent us here
const NEXT = new Set(["/operator/"]);

function done(r) {
  setToken("ra", r.csrf_token);
  const next = new URLSearchParams(location.search).get("next");
  location.assign(NEXT.has(next) ? next : HOME);
}

export async function verifyPage() {
  const state = await api("GET", "/api/v1/ra/factors");
  if (state.second_factor === null) return location.assign(HOME);
  if (state.second_factor === "enrol") return location.assign("/ra/factors");
  const kinds = new Set(state.factors.map((f) => f.kind));
  const keyButton = $("#f-webauthn-login");
  $("#f-webauthn-box").hidden = !kinds.has("webauthn");
  $("#f-totp-form").hidden = !kinds.has("totp");
  if (kinds.has("webauthn") && !hasWebAuthn()) show("error", t("f_no_webauthn"));
  keyButton.addEventListener("click", async () => {
    busy(keyButton, true);
    try {
      const { challenge_id: id, options } = await api("POST", "/api/v1/ra/session/webauthn-options");
      const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
      done(await api("POST", "/api/v1/ra/session/second-factor",
        { challenge_id: id, credential: credentialJson(cred) }));
    } catch (err) {
      fail(err);
    } finally {
      keyButton.disabled = false;
    }
  });
  $("#f-totp-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    try {
      done(await api("POST", "/api/v1/ra/session/second-factor",
        { totp_code: $("#f-totp-code").value.trim() }));
    } catch (err) {
      $("#f-totp-code").value = "";
      fail(err);
    }
  });
}

export async function factorsPage() {
  let state;
  const load = async () => {
    state = await api("GET", "/api/v1/ra/factors");
    if (state.second_factor === "verify") return location.assign("/ra/verify");
    $("#f-enrol-required").hidden = state.second_factor !== "enrol";
    $("#f-table tbody").replaceChildren(...state.factors.map((f) => el("tr",
      { "data-kind": f.kind, "data-id": f.id },
      el("td", { text: t(`f_kind_${f.kind}`) }), el("td", { text: f.name }),
      el("td", { text: date(f.created_at) }), el("td", { text: date(f.last_used_at) }))));
    $("#f-none").hidden = state.factors.length > 0;
  };
  const enrolled = (r) => {
    if (r.csrf_token) { // the enrolment completed an enrol-only login
      setToken("ra", r.csrf_token);
      location.assign(HOME);
      return;
    }
    show("ok", t("f_enrolled"));
    return load();
  };
  const name = () => $("#f-name").value.trim();

  const addKey = $("#f-add-webauthn");
  if (!hasWebAuthn()) { addKey.disabled = true; show("", t("f_no_webauthn")); }
  addKey.addEventListener("click", async () => {
    busy(addKey, true);
    try {
      const { challenge_id: id, options } = await api("POST", "/api/v1/ra/factors/webauthn/options");
      const cred = await navigator.credentials.create({ publicKey: creationOptions(options) });
      await enrolled(await api("POST", "/api/v1/ra/factors/webauthn",
        { challenge_id: id, credential: credentialJson(cred), name: name() }));
    } catch (err) {
      fail(err);
    } finally {
      addKey.disabled = !hasWebAuthn();
    }
  });

  let totpChallenge = null;
  $("#f-add-totp").addEventListener("click", async () => {
    clear();
    try {
      const r = await api("POST", "/api/v1/ra/factors/totp/secret");
      totpChallenge = r.challenge_id;
      $("#f-totp-secret").textContent = r.secret.replace(/(.{4})/g, "$1 ").trim();
      $("#f-totp-uri").textContent = r.uri;
      $("#f-totp-enrol").hidden = false;
      $("#f-totp-enrol-code").focus();
    } catch (err) {
      fail(err);
    }
  });
  $("#f-totp-enrol").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    try {
      const r = await api("POST", "/api/v1/ra/factors/totp", { challenge_id: totpChallenge,
        code: $("#f-totp-enrol-code").value.trim(), name: name() });
      $("#f-totp-enrol").hidden = true;
      await enrolled(r);
    } catch (err) {
      $("#f-totp-enrol").hidden = true; // the secret was single use: ask for a new one
      fail(err);
    }
  });
  await load();
}
