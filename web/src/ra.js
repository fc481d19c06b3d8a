// RA officer pages: login, registration + password slip, search, subscriber view (reset,
// revoke), audit log.
import { ApiError, call, describe, logout, setToken } from "./api.js";
import { idNumberOk } from "./identity.js";
import { $, busy, clear, clearFields, date, el, fieldError, joinList, setupMenu, show, statusCell, t } from "./ui.js";
import { factorsPage, verifyPage } from "./ra_factors.js";

const api = (method, path, body) => call("ra", method, path, body);
const REASONS = ["unspecified", "keyCompromise", "affiliationChanged", "superseded",
  "cessationOfOperation", "privilegeWithdrawn"];
// API field names of POST /api/v1/ra/subscribers -> the inputs of the registration form
const FIELDS = { id_number: "#r-id_number", name: "#r-name", email: "#r-email", phone: "#r-phone",
  address: "#r-address", subject: "#r-cn", "subject.cn": "#r-cn", "subject.ou": "#r-ou",
  "subject.o": "#r-o", "subject.c": "#r-c", usages: "#r-usage-signing" };

function fail(err) {
  if (err instanceof ApiError && err.status === 401) { location.assign("/ra/"); return; }
  if (err instanceof ApiError && err.code === "second_factor_required") {
    location.assign("/ra/verify");
    return;
  }
  if (err instanceof ApiError && err.code === "duplicate") return show("error", t("ra_dup"));
  if (err instanceof ApiError && err.code === "invalid_field") {
    const input = FIELDS[err.body.field] ? $(FIELDS[err.body.field]) : null;
    if (input) return fieldError(input);
  }
  show("error", err instanceof ApiError ? describe(err) : t("err_generic") + err.message);
}

function showSlip({ account, initial_password: password, name, cn, reset }) {
  $("#slip-title").textContent = reset ? t("slip_reset_title") : t("slip_title");
  $("#slip-password-label").textContent = reset ? t("slip_reset_password") : t("slip_password");
  $("#slip-name").textContent = name || "";
  $("#slip-cn").textContent = cn || "";
  $("#slip-account").textContent = account;
  $("#slip-password").textContent = password;
  $("#slip-at").textContent = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  $("#slip").hidden = false;
  $("#slip").scrollIntoView();
}

async function loginPage() {
  $("#ra-login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    clearFields();
    const login = $("#ra-login").value.trim();
    const password = $("#ra-password").value;
    if (!login) return fieldError($("#ra-login"), t("err_required", { field: t("ra_login") }));
    if (!password) return fieldError($("#ra-password"), t("err_required", { field: t("password") }));
    if ([...password].length > 256) return fieldError($("#ra-password"), t("err_password_too_long"));
    try {
      const r = await api("POST", "/api/v1/ra/session", { login, password });
      setToken("ra", r.csrf_token);
      // the second factor, when due, is the next step (ra_factors.js)
      const next = { verify: "/ra/verify", enrol: "/ra/factors" }[r.second_factor];
      location.assign(next || "/ra/register");
    } catch (err) {
      $("#ra-password").value = "";
      show("error", describe(err));
    }
  });
}

// What the form can tell before the server is asked; the server checks everything again.
function checkRegistration() {
  for (const sel of ["#r-id_number", "#r-name", "#r-email", "#r-cn"]) {
    if (!$(sel).value.trim()) return fieldError($(sel), t("err_required", { field: $(sel).labels[0].textContent.replace(/\s*\*\s*$/, "") }));
  }
  if (!idNumberOk($("#r-id_number").value)) return fieldError($("#r-id_number"), t("err_id_number"));
  if (!$("#r-email").checkValidity()) return fieldError($("#r-email"), t("err_email"));
  if (!/^[A-Za-z]{2}$/.test($("#r-c").value.trim() || "TW")) return fieldError($("#r-c"), t("err_country"));
  if (!$("#r-usage-signing").checked && !$("#r-usage-encryption").checked) {
    return fieldError($("#r-usage-signing"), t("err_usages"));
  }
  return true;
}

async function registerPage() {
  $("#register-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    clearFields();
    if (checkRegistration() !== true) return;
    const v = (id) => $(id).value.trim();
    const usages = ["signing", "encryption"].filter((u) => $(`#r-usage-${u}`).checked);
    const body = {
      id_number: v("#r-id_number").toUpperCase(), name: v("#r-name"), email: v("#r-email"),
      phone: v("#r-phone"), address: v("#r-address"),
      subject: { cn: v("#r-cn"), ou: v("#r-ou").split(",").map((s) => s.trim()).filter(Boolean),
        o: v("#r-o"), c: (v("#r-c") || "TW").toUpperCase() },
      usages,
    };
    const button = $("#register-submit");
    button.disabled = true;
    try {
      const slip = await api("POST", "/api/v1/ra/subscribers", body);
      $("#register-form").hidden = true;
      showSlip({ ...slip, name: body.name, cn: body.subject.cn });
      $("#slip").dataset.subscriberId = slip.subscriber_id;
    } catch (err) {
      fail(err);
    } finally {
      button.disabled = false;
    }
  });
}

async function searchPage() {
  const run = async (q) => {
    const r = await api("GET", `/api/v1/ra/subscribers?q=${encodeURIComponent(q)}`);
    $("#search-table tbody").replaceChildren(...r.subscribers.map((s) => el("tr", { "data-id": s.subscriber_id },
      el("td", { text: s.account }), el("td", { text: s.id_number }), el("td", { text: s.name }),
      el("td", { class: "dn", text: s.subject.cn }), el("td", { class: "dn", text: s.email }),
      el("td", { text: s.locked ? t("ra_locked") : t("ra_active") }),
      el("td", {}, el("a", { href: `/ra/subscriber?id=${s.subscriber_id}`,
        "aria-label": `${t("ra_view")} ${s.account}`, text: t("ra_view") })))));
    if (!r.subscribers.length) show("", t("ra_none")); else clear();
  };
  const q = new URLSearchParams(location.search).get("q") || "";
  $("#q").value = q;
  $("#search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    run($("#q").value.trim()).catch(fail);
  });
  await run(q);
}

export function revocationText(c) {
  if (c.status !== "revoked" || !c.revoked_at) return "";
  const reason = c.revocation_reason ? t(`r_${c.revocation_reason}`) : "";
  return `${date(c.revoked_at)}${reason ? " " + reason : ""}`;
}

async function subscriberPage() {
  const id = new URLSearchParams(location.search).get("id");
  if (!id || !/^\d+$/.test(id)) { location.assign("/ra/subscribers"); return; }
  let current;
  const load = async () => {
    const s = await api("GET", `/api/v1/ra/subscribers/${id}`);
    current = s;
    const set = (sel, text) => { $(sel).textContent = text; };
    set("#s-account", s.account); set("#s-id_number", s.id_number); set("#s-name", s.name);
    set("#s-cn", s.subject.cn); set("#s-email", s.email); set("#s-phone", s.phone || "");
    set("#s-address", s.address || "");
    set("#s-usages", joinList(s.usages.map((u) => t(`usage_${u}`))));
    set("#s-state", s.locked ? t("ra_locked") : t("ra_active"));
    $("#s-state").className = s.locked ? "status-revoked" : "status-valid";
    set("#s-failed", String(s.failed_attempts));
    set("#s-must", s.must_change_password ? t("answer_yes") : t("answer_no"));
    $("#sub-certs tbody").replaceChildren(...s.certificates.map((c) => {
      const action = el("td");
      if (c.status !== "revoked") {
        const select = el("select", { "aria-label": `${t("ra_reason")} ${c.serial}`, id: `reason-${c.serial}` },
          ...REASONS.map((r) => el("option", { value: r, text: t(`r_${r}`) })));
        const button = el("button", { type: "button", class: "danger", id: `revoke-${c.serial}`,
          "aria-label": `${t("ra_revoke")} ${c.serial}`,
          text: t("ra_revoke"), onclick: () => revoke(c.serial, select.value, button) });
        action.append(select, button);
      }
      return el("tr", { "data-serial": c.serial },
        el("td", { text: c.id }), el("td", { class: "serial", text: c.serial }), el("td", { text: t(`usage_${c.usage}`) }),
        el("td", {}, statusCell(c.status)), el("td", { class: "date", text: date(c.not_before) }),
        el("td", { class: "date", text: date(c.not_after) }),
        el("td", { class: "revocation", text: revocationText(c) }), action);
    }));
  };
  const revoke = async (serial, reason, button) => {
    if (!window.confirm(t("ra_revoke_confirm"))) return;
    busy(button, true);
    try {
      await api("POST", `/api/v1/ra/certificates/${serial}/revocation`, { reason });
      await load();
      show("ok", t("ra_revoked_done"));
    } catch (err) {
      fail(err);
    }
  };
  $("#reset-password").addEventListener("click", async () => {
    if (!window.confirm(t("ra_reset_confirm"))) return;
    try {
      const slip = await api("POST", `/api/v1/ra/subscribers/${id}/password-reset`);
      await load();
      showSlip({ ...slip, name: current.name, cn: current.subject.cn, reset: true });
    } catch (err) {
      fail(err);
    }
  });
  await load();
}

// One audit detail object as "key: value" lines a person reads (not raw JSON)
function detailText(details) {
  return Object.entries(details || {}).map(([k, v]) => {
    const value = Array.isArray(v) ? v.join(", ") : v !== null && typeof v === "object" ? JSON.stringify(v) : String(v);
    return `${k}: ${value}`;
  }).join("\n");
}

const actionText = (a) => { const text = t(`act_${a}`); return text === `act_${a}` ? a : text; };

async function auditPage() {
  // newest first: pages are read from the newest end (before_id), 100 at a time
  let before = 0;
  const more = async () => {
    const r = await api("GET", `/api/v1/ra/audit?order=desc&limit=100${before ? `&before_id=${before}` : ""}`);
    $("#audit-table tbody").append(...r.events.map((e) => el("tr", { "data-action": e.action },
      el("td", { text: e.id }), el("td", { class: "date", text: String(e.at).replace("T", " ").replace("Z", " UTC") }), el("td", { text: e.actor }),
      el("td", { title: e.action, text: actionText(e.action) }), el("td", { class: "dn", text: e.target || "" }),
      el("td", { class: "details", text: detailText(e.details) }))));
    if (r.events.length) before = r.events[r.events.length - 1].id;
    $("#audit-more").hidden = r.events.length < 100 || before <= 1;
  };
  $("#audit-more").addEventListener("click", () => more().catch(fail));
  await more();
}

const PAGES = { "ra-login": loginPage, "ra-register": registerPage, "ra-subscribers": searchPage,
  "ra-subscriber": subscriberPage, "ra-audit": auditPage, "ra-factors": factorsPage,
  "ra-verify": verifyPage };

export async function start(name) {
  setupMenu();
  const out = $("#logout");
  if (out) {
    out.addEventListener("click", async (ev) => {
      ev.preventDefault();
      if (await logout("ra")) location.assign("/ra/");
      else show("error", t("err_logout_failed"));
    });
  }
  const print = $("#slip-print");
  if (print) print.addEventListener("click", () => window.print());
  try {
    await PAGES[name]();
  } catch (err) {
    fail(err);
  }
  document.body.dataset.ready = "1";
}
