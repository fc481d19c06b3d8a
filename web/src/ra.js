// RA officer pages: login, registration + password slip, search, subscriber view (reset,
// revoke), audit log.
import { ApiError, call, describe, setToken } from "./api.js";
import { $, busy, clear, date, el, show, statusCell, t } from "./ui.js";
import { factorsPage, verifyPage } from "./ra_factors.js";

const api = (method, path, body) => call("ra", method, path, body);
const REASONS = ["unspecified", "keyCompromise", "affiliationChanged", "superseded",
  "cessationOfOperation", "privilegeWithdrawn"];

function fail(err) {
  if (err instanceof ApiError && err.status === 401) { location.assign("/ra/"); return; }
  if (err instanceof ApiError && err.code === "second_factor_required") {
    location.assign("/ra/verify");
    return;
  }
  if (err instanceof ApiError && err.code === "duplicate") return show("error", t("ra_dup"));
  if (err instanceof ApiError && err.code === "invalid_field") {
    return show("error", t("ra_invalid") + (err.body.field || "") + " " + (err.message || ""));
  }
  show("error", err instanceof ApiError ? describe(err) : t("err_generic") + err.message);
}

function showSlip({ account, initial_password: password, name, cn, reset }) {
  $("#slip-title").textContent = reset ? t("slip_reset_title") : t("slip_title");
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
    try {
      const r = await api("POST", "/api/v1/ra/session",
        { login: $("#ra-login").value.trim(), password: $("#ra-password").value });
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

async function registerPage() {
  $("#register-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    const v = (id) => $(id).value.trim();
    const usages = ["signing", "encryption"].filter((u) => $(`#r-usage-${u}`).checked);
    const body = {
      id_number: v("#r-id_number"), name: v("#r-name"), email: v("#r-email"),
      phone: v("#r-phone"), address: v("#r-address"),
      subject: { cn: v("#r-cn"), ou: v("#r-ou").split(",").map((s) => s.trim()).filter(Boolean),
        o: v("#r-o"), c: v("#r-c") || "TW" },
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
      el("td", { text: s.subject.cn }), el("td", { text: s.email }),
      el("td", { text: s.locked ? t("ra_locked") : t("ra_active") }),
      el("td", {}, el("a", { href: `/ra/subscriber?id=${s.subscriber_id}`, text: t("ra_view") })))));
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
    set("#s-usages", s.usages.map((u) => t(`usage_${u}`)).join("、"));
    set("#s-state", s.locked ? t("ra_locked") : t("ra_active"));
    $("#s-state").className = s.locked ? "status-revoked" : "status-valid";
    set("#s-failed", String(s.failed_attempts));
    set("#s-must", s.must_change_password ? t("yes") : t("no"));
    $("#sub-certs tbody").replaceChildren(...s.certificates.map((c) => {
      const action = el("td");
      if (c.status !== "revoked") {
        const select = el("select", { "aria-label": t("ra_reason"), id: `reason-${c.serial}` },
          ...REASONS.map((r) => el("option", { value: r, text: t(`r_${r}`) })));
        const button = el("button", { type: "button", class: "danger", id: `revoke-${c.serial}`,
          text: t("ra_revoke"), onclick: () => revoke(c.serial, select.value, button) });
        action.append(select, button);
      }
      return el("tr", { "data-serial": c.serial },
        el("td", { text: c.id }), el("td", { class: "serial", text: c.serial }), el("td", { text: t(`usage_${c.usage}`) }),
        el("td", {}, statusCell(c.status)), el("td", { text: date(c.not_before) }),
        el("td", { text: date(c.not_after) }), action);
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

async function auditPage() {
  let after = 0;
  const more = async () => {
    const r = await api("GET", `/api/v1/ra/audit?after_id=${after}&limit=100`);
    $("#audit-table tbody").append(...r.events.map((e) => el("tr", { "data-action": e.action },
      el("td", { text: e.id }), el("td", { text: e.at }), el("td", { text: e.actor }),
      el("td", { text: e.action }), el("td", { text: e.target || "" }),
      el("td", { class: "dn", text: JSON.stringify(e.details) }))));
    if (r.events.length) after = r.events[r.events.length - 1].id;
    $("#audit-more").hidden = r.events.length < 100;
  };
  $("#audit-more").addEventListener("click", () => more().catch(fail));
  await more();
}

const PAGES = { "ra-login": loginPage, "ra-register": registerPage, "ra-subscribers": searchPage,
  "ra-subscriber": subscriberPage, "ra-audit": auditPage, "ra-factors": factorsPage,
  "ra-verify": verifyPage };

export async function start(name) {
  const logout = $("#logout");
  if (logout) {
    logout.addEventListener("click", async (ev) => {
      ev.preventDefault();
      await api("DELETE", "/api/v1/ra/session").catch(() => null);
      setToken("ra", null);
      location.assign("/ra/");
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
