// Subscriber pages: login, password, apply, download + backup, import, renew, info, revoke.
import { ApiError, call, describe, logout, setToken } from "./api.js";
import * as store from "./keystore.js";
import * as pki from "./pki.js";
import { $, $$, busy, clear, clearFields, date, dnCell, dnParts, el, fieldError, page, saveFile,
  setupMenu, show, statusCell, t } from "./ui.js";

const api = (method, path, body, opts) => call("subscriber", method, path, body, opts);
const MUST_CHANGE = "ca.mustChange";
const MAX_PASSWORD = 256;  // the API's bound (API.md: invalid_field beyond it)
// API field names -> the inputs of the page that carry them
const FIELDS = { account: "#account", password: "#password", captcha_answer: "#captcha",
  old_password: "#old-password", new_password: "#new-password" };
let me = null;
const chars = (text) => [...text].length;  // Unicode characters, as the server counts

function fail(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) { location.assign("/"); return; }
    if (err.code === "password_change_required") {
      sessionStorage.setItem(MUST_CHANGE, "1");
      location.assign("/portal/password");
      return;
    }
    if (err.code === "invalid_field" && FIELDS[err.body.field] && $(FIELDS[err.body.field])) {
      fieldError($(FIELDS[err.body.field]));
      return;
    }
    show("error", describe(err));
  } else if (err && err.message === "no_webcrypto") {
    show("error", t("err_no_webcrypto"));
  } else {
    show("error", t("err_generic") + (err && err.message ? err.message : String(err)));
  }
}

async function loadMe() {
  me = await api("GET", "/api/v1/me");
  for (const k of ["id_number", "name", "subscriber_name", "email", "phone", "address"]) {
    const dd = $(`#me-${k}`);
    if (dd) dd.textContent = me[k] || "";
  }
  return me;
}

async function loadTerms() {
  const terms = await api("GET", "/api/v1/terms");
  $("#terms-text").textContent = terms.text;
  return terms;
}

const certificates = async () => (await api("GET", "/api/v1/certificates")).certificates;
const usageText = (u) => t(`usage_${u}`);

async function keyFor(cert) {
  if (!cert.certificate) return null;
  const id = await pki.certificateKeyId(pki.parseCertificate(cert.certificate));
  return (await store.get(id)) || null;
}

// ---- login ---------------------------------------------------------------------------------
async function loginPage() {
  let captchaId = "";
  let captchaOn = false;
  const player = $("#captcha-audio-player");
  const refresh = async () => {
    try {
      const c = await api("GET", "/api/v1/captcha");
      captchaId = c.captcha_id;
      captchaOn = true;
      $("#captcha-img").src = c.image;
      $("#captcha").value = "";
      $("#captcha-box").hidden = false;
      $("#captcha-audio-box").hidden = true;
      player.removeAttribute("src");
    } catch (err) {
      if (err.code === "captcha_disabled") { $("#captcha-box").hidden = true; captchaId = ""; captchaOn = false; }
      else fail(err);
    }
  };
  // the audio alternative: a challenge of its own (spoken digits), single use like the image
  const audio = async () => {
    try {
      const c = await api("GET", `/api/v1/captcha/audio?lang=${encodeURIComponent(page.lang)}`);
      captchaId = c.captcha_id;
      $("#captcha").value = "";
      player.src = c.audio;
      $("#captcha-audio-box").hidden = false;
      player.focus();
      player.play().catch(() => null);  // the user presses play when autoplay is refused
    } catch (err) {
      fail(err);
    }
  };
  $("#captcha-refresh").addEventListener("click", refresh);
  $("#captcha-audio").addEventListener("click", audio);
  await refresh();
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    clearFields();
    const account = $("#account").value.trim();
    const password = $("#password").value;
    // checked here first, so a mistake does not spend the captcha
    if (!account) return fieldError($("#account"), t("err_required", { field: t("account") }));
    if (!password) return fieldError($("#password"), t("err_required", { field: t("password") }));
    if (chars(password) > MAX_PASSWORD) return fieldError($("#password"), t("err_password_too_long"));
    if (captchaOn && !$("#captcha").value.trim()) return fieldError($("#captcha"), t("err_captcha_empty"));
    const button = $("#login-submit");
    button.disabled = true;
    try {
      const r = await api("POST", "/api/v1/session", {
        account, password, captcha_id: captchaId, captcha_answer: $("#captcha").value.trim(),
      });
      setToken("subscriber", r.csrf_token);
      if (r.must_change_password) sessionStorage.setItem(MUST_CHANGE, "1");
      else sessionStorage.removeItem(MUST_CHANGE);
      location.assign(r.must_change_password ? "/portal/password" : "/portal/");
    } catch (err) {
      $("#password").value = "";
      if (err instanceof ApiError && err.code === "invalid_field") fail(err);
      else show("error", describe(err));
      if (captchaId) await refresh();
    } finally {
      button.disabled = false;
    }
  });
}

// ---- password ------------------------------------------------------------------------------
function passwordPage() {
  const forced = sessionStorage.getItem(MUST_CHANGE) === "1";
  $("#pw-forced").hidden = !forced;
  $("#password-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    clearFields();
    const old = $("#old-password").value;
    const neu = $("#new-password").value;
    const again = $("#new-password2").value;
    const len = chars(neu);
    const fmt = { min: page.password_min, max: page.password_max };
    if (!old) return fieldError($("#old-password"), t("err_required", { field: t("pw_old") }));
    if (chars(old) > MAX_PASSWORD) return fieldError($("#old-password"), t("err_password_too_long"));
    // nothing is cut: an over-long password is refused with the rule, never shortened
    if (len < page.password_min || len > page.password_max) return fieldError($("#new-password"), t("pw_err_length", fmt));
    if (neu !== again) return fieldError($("#new-password2"), t("pw_err_mismatch"));
    if (neu === old) return fieldError($("#new-password"), t("pw_err_same"));
    const button = $("#password-submit");
    button.disabled = true;
    try {
      await api("POST", "/api/v1/password", { old_password: old, new_password: neu });
      sessionStorage.removeItem(MUST_CHANGE);
      $("#pw-forced").hidden = true;
      $("#password-form").reset();
      show("ok", t("pw_done"));
    } catch (err) {
      if (err.code === "invalid_credentials") fieldError($("#old-password"), t("pw_err_old"));
      else if (err.code === "password_policy") fieldError($("#new-password"), t("pw_err_length", fmt));
      else fail(err);
    } finally {
      button.disabled = false;
    }
  });
}

// ---- apply ---------------------------------------------------------------------------------
async function applyPage() {
  const [, terms] = await Promise.all([loadMe(), loadTerms()]);
  for (const u of ["signing", "encryption"]) {
    const radio = $(`#usage-${u}`);
    radio.disabled = !me.usages.includes(u);
    if (radio.disabled) radio.checked = false;
  }
  const first = $$("input[name=usage]").find((r) => !r.disabled);
  if (first && !$$("input[name=usage]").some((r) => r.checked)) first.checked = true;
  $("#apply-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    if (!$("#terms-accept").checked) return show("error", t("err_terms"));
    const usage = $$("input[name=usage]").find((r) => r.checked)?.value;
    if (!usage) return show("error", t("err_no_usage"));
    const alg = $$("input[name=alg]").find((r) => r.checked)?.value || "RSA";
    const button = $("#apply-submit");
    busy(button, true);
    try {
      // asked before a key is made, so a refusal leaves no orphan key in this browser
      const held = (await certificates()).some((c) => c.usage === usage
        && !["revoked", "superseded", "expired"].includes(c.status));
      if (held) { show("error", t("err_already_has_valid")); return; }
      const pair = await pki.generateKeyPair(alg);
      const csr = await pki.makeCsr(pair, me.subscriber_name);
      const id = await pki.keyId(pair.publicKey);
      // kept before sending, so an answer lost on the way still finds its key
      await store.put({ id, privateKey: pair.privateKey, alg, usage, account: me.account,
        created: new Date().toISOString() });
      const cert = await api("POST", "/api/v1/certificates",
        { usage, csr: csr.pem, terms_version: terms.version });
      await store.update(id, { certId: cert.id, serial: cert.serial });
      clear();
      $("#apply-form").hidden = true;
      $("#apply-result").hidden = false;
    } catch (err) {
      fail(err);
    } finally {
      busy(button, false);
      if (!$("#msg").classList.contains("error") && $("#apply-result").hidden) clear();
    }
  });
}

// ---- backup (export) -----------------------------------------------------------------------
// The CA certificates of /ca/chain.pem (issuing CA(s), then the root), as PEM strings
async function caChain() {
  const text = await api("GET", "/ca/chain.pem", undefined, { accept: "application/x-pem-file" });
  return String(text).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) || [];
}

async function setupExport(preselect) {
  const form = $("#export-form");
  const select = $("#export-cert");
  const records = (await store.all()).filter((r) => r.certPem && r.account === me.account);
  select.replaceChildren(...records.map((r) => el("option", { value: r.id,
    text: `${usageText(r.usage)} #${r.certId ?? ""} (${r.serial ?? ""})` })));
  if (preselect) select.value = preselect;
  $("#backup").hidden = records.length === 0;
  // the legacy 3DES format is for RSA keys only (node-forge has no EC keys)
  const legacy = $("#fmt-3des");
  const syncFormat = () => {
    const rec = records.find((r) => r.id === select.value);
    const ok = !rec || pki.legacyExportable(rec.privateKey);
    legacy.disabled = !ok;
    if (!ok && legacy.checked) $("#fmt-aes").checked = true;
    $("#fmt-ec-note").hidden = ok;
  };
  syncFormat();
  select.onchange = syncFormat;
  if (form.dataset.ready) return;
  form.dataset.ready = "1";
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    const pw = $("#export-password").value;
    clearFields(form);
    if (chars(pw) < 8) return fieldError($("#export-password"), t("export_err_pw"));
    if (pw !== $("#export-password2").value) return fieldError($("#export-password2"), t("export_err_pw"));
    const button = $("#export-submit");
    busy(button, true);
    try {
      const rec = await store.get(select.value);
      const name = `${me.subscriber_name}-${rec.usage || "cert"}-${rec.serial || rec.id.slice(0, 8)}`;
      const format = $$("input[name=p12format]").find((r) => r.checked)?.value || "aes256";
      // the CA chain travels in the backup, so the other computer needs nothing else
      const chain = await caChain();
      const bytes = await pki.exportPkcs12(rec.privateKey, rec.certPem, pw, name, format, chain);
      const suffix = format === "3des" ? "-legacy" : "";
      saveFile(bytes, `${name}${suffix}.p12`, "application/x-pkcs12");
      form.reset();
      select.value = rec.id;
      select.onchange?.();
      show("ok", t("export_done"));
    } catch (err) {
      if (err && err.message === "legacy_rsa_only") show("error", t("err_legacy_rsa_only"));
      else fail(err);
    } finally {
      button.disabled = false;
    }
  });
}

// ---- download ------------------------------------------------------------------------------
const cerName = (c) => `${me.subscriber_name}-${c.usage}-${c.serial}.cer`;

// links to save each certificate again as a .cer file
function showFiles(list) {
  $("#files-list").replaceChildren(...list.filter((c) => c.certificate).map((c) => {
    const a = el("a", { href: "#", class: "cer-link", "data-id": c.id,
      text: `${t("dl_cer")}: ${usageText(c.usage)} #${c.id} (${c.serial})` });
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      saveFile(pki.unpem(c.certificate), cerName(c), "application/pkix-cert");
    });
    return el("li", {}, a);
  }));
}

async function downloadPage() {
  await loadMe();
  const render = async () => {
    const list = (await certificates()).filter((c) => ["issued", "valid", "expiring"].includes(c.status));
    const rows = [];
    for (const c of list) {
      const key = await keyFor(c);
      rows.push(el("tr", { "data-id": c.id },
        el("td", {}, el("input", { type: "checkbox", name: "cert", value: c.id, id: `dl-${c.id}`,
          "aria-label": t("pick_cert", { id: `${c.id} ${usageText(c.usage)} ${c.serial}` }),
          checked: c.status === "issued" })),
        el("td", { text: c.id }), el("td", { class: "serial", text: c.serial }),
        el("td", { text: usageText(c.usage) }), el("td", {}, statusCell(c.status)),
        el("td", { class: "date", text: date(c.not_before) }),
        el("td", { class: "date", text: date(c.not_after) }), dnCell(c.subject),
        el("td", { text: key ? t("answer_yes") : t("answer_no") })));
    }
    $("#download-table tbody").replaceChildren(...rows);
    showFiles(list.filter((c) => c.downloaded));
    if (!rows.length) show("", t("dl_none"));
    $("#download-submit").hidden = !rows.length;
  };
  await render();
  await setupExport();
  $("#download-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    const picked = $$("input[name=cert]:checked").map((i) => i.value);
    if (!picked.length) return show("error", t("dl_pick"));
    const button = $("#download-submit");
    busy(button, true);
    try {
      let paired = 0;
      let last = null;
      const saved = [];
      for (const id of picked) {
        const pemText = await api("GET", `/api/v1/certificates/${id}/certificate`, undefined,
          { accept: "application/x-pem-file" });
        const cert = pki.parseCertificate(pemText);
        const keyId = await pki.certificateKeyId(cert);
        const info = await api("GET", `/api/v1/certificates/${id}`);
        const rec = await store.update(keyId, { certPem: pemText, certId: info.id,
          serial: info.serial, usage: info.usage });
        if (rec) { paired += 1; last = keyId; }
        saved.push(info);
        // the certificate as a file too (DER, .cer: what Windows and most tools open)
        saveFile(pki.unpem(pemText), cerName(info), "application/pkix-cert");
      }
      showFiles(saved);
      await render();
      await setupExport(last);
      show(paired === picked.length ? "ok" : "warn", paired === picked.length ? t("dl_done") : t("dl_nokey"));
    } catch (err) {
      fail(err);
    } finally {
      button.disabled = false;
    }
  });
}

// ---- import --------------------------------------------------------------------------------
async function importPage() {
  await loadMe();
  $("#import-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    const file = $("#import-file").files[0];
    if (!file) return show("error", t("import_err"));
    const button = $("#import-submit");
    busy(button, true);
    try {
      let found;
      try {
        found = await pki.importPkcs12(new Uint8Array(await file.arrayBuffer()), $("#import-password").value);
      } catch {
        found = [];
      }
      if (!found.length) return show("error", t("import_err"));
      const own = await certificates().catch(() => []);
      const names = [];
      for (const f of found) {
        const serial = f.cert.serialNumber.valueBlock.valueHexView;
        const serialHex = pki.hex(serial).replace(/^0+/, "");
        const match = own.find((c) => c.serial === serialHex);
        await store.put({ id: f.id, privateKey: f.privateKey, certPem: f.certPem,
          alg: f.privateKey.algorithm.name === "ECDSA" ? "EC" : "RSA", account: me.account,
          usage: match?.usage, certId: match?.id, serial: serialHex,
          created: new Date().toISOString(), imported: true });
        names.push(`${match ? usageText(match.usage) : ""} ${serialHex}`.trim());
      }
      $("#import-form").reset();
      show("ok", t("import_done") + names.join(", "));
    } catch (err) {
      fail(err);
    } finally {
      button.disabled = false;
    }
  });
}

// ---- renew ---------------------------------------------------------------------------------
async function renewPage() {
  const [, terms] = await Promise.all([loadMe(), loadTerms()]);
  const list = (await certificates()).filter((c) => c.renewable);
  $("#renew-table tbody").replaceChildren(...list.map((c) => el("tr", { "data-id": c.id },
    el("td", {}, el("input", { type: "radio", name: "renew-cert", value: c.id, id: `renew-${c.id}`,
      "aria-label": t("pick_cert", { id: `${c.id} ${usageText(c.usage)} ${c.serial}` }) })),
    el("td", { text: c.id }), el("td", { class: "dn", text: me.subscriber_name }),
    el("td", { class: "serial", text: c.serial }),
    el("td", {}, statusCell(c.status)), el("td", { text: usageText(c.usage) }),
    el("td", { class: "date", text: date(c.not_before) }), el("td", { class: "date", text: date(c.not_after) }),
    dnCell(c.subject), dnCell(c.issuer))));
  if (!list.length) show("", t("renew_none"));
  $("#renew-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear();
    const picked = $$("input[name=renew-cert]").find((r) => r.checked);
    if (!picked) return show("error", t("renew_pick"));
    if (!$("#terms-accept").checked) return show("error", t("err_terms"));
    const cert = list.find((c) => String(c.id) === picked.value);
    const old = await keyFor(cert);
    if (!old) return show("error", t("renew_nokey"));
    const alg = $$("input[name=alg]").find((r) => r.checked)?.value || "RSA";
    const button = $("#renew-submit");
    busy(button, true);
    try {
      const pair = await pki.generateKeyPair(alg);
      const csr = await pki.makeCsr(pair, me.subscriber_name);
      const id = await pki.keyId(pair.publicKey);
      await store.put({ id, privateKey: pair.privateKey, alg, usage: cert.usage,
        account: me.account, created: new Date().toISOString(), renews: cert.id });
      const ch = await api("GET", `/api/v1/certificates/${cert.id}/renewal`);
      const challenge = pki.fromBase64(ch.challenge);
      const data = new Uint8Array(challenge.length + csr.der.length);
      data.set(challenge, 0);
      data.set(csr.der, challenge.length);
      const signature = await pki.signChallenge(old.privateKey, data);
      const neu = await api("POST", `/api/v1/certificates/${cert.id}/renewal`, {
        csr: csr.pem, challenge: ch.challenge, signature: pki.toBase64(signature),
        terms_version: terms.version,
      });
      await store.update(id, { certId: neu.id, serial: neu.serial });
      clear();
      $("#renew-form").hidden = true;
      $("#renew-result").hidden = false;
    } catch (err) {
      fail(err);
    } finally {
      button.disabled = false;
      if ($("#msg").textContent === t("working")) clear();
    }
  });
}

// ---- info and revoke -----------------------------------------------------------------------
async function infoPage() {
  await loadMe();
  const list = await certificates();
  if (!list.length) show("", t("info_none"));
  const cards = [];
  for (const c of list) {
    const key = await keyFor(c);
    const exportable = key && key.certPem;
    cards.push(el("section", { class: "card", "data-id": c.id, "data-status": c.status },
      el("h2", {}, `${usageText(c.usage)} #${c.id} `, statusCell(c.status)),
      el("dl", { class: "regdata" },
        el("dt", { text: t("c_serial") }), el("dd", { text: c.serial }),
        el("dt", { text: t("c_status") }), el("dd", {}, statusCell(c.status)),
        el("dt", { text: t("c_from") }), el("dd", { text: date(c.not_before) }),
        el("dt", { text: t("c_to") }), el("dd", { text: date(c.not_after) }),
        el("dt", { text: t("c_subject") }), el("dd", {}, dnParts(c.subject)),
        el("dt", { text: t("c_issuer") }), el("dd", {}, dnParts(c.issuer)),
        el("dt", { text: t("c_key") }), el("dd", { text: key ? t("answer_yes") : t("answer_no") }),
        ...(c.status === "revoked" ? [el("dt", { text: t("rv_revoked_at") }), el("dd", { class: "revoked-at", text: date(c.revoked_at) }),
          el("dt", { text: t("rv_reason") }), el("dd", { class: "revocation-reason", text: c.revocation_reason ? t(`r_${c.revocation_reason}`) : "" })] : [])),
      c.certificate ? el("details", {}, el("summary", { text: t("show_pem") }),
        el("pre", { class: "pem", text: c.certificate })) : null,
      exportable ? el("button", { type: "button", class: "export-open", "data-key": key.id,
        text: t("export"), onclick: () => setupExport(key.id).then(() => $("#backup").scrollIntoView()) }) : null));
  }
  $("#info-list").replaceChildren(...cards);
  await setupExport();
  $("#backup").hidden = true;
}

async function revokePage() {
  await loadMe();
  const list = await certificates();
  const revocation = (c) => (c.status === "revoked"
    ? `${date(c.revoked_at)} ${c.revocation_reason ? t(`r_${c.revocation_reason}`) : ""}`.trim() : "");
  $("#revoke-table tbody").replaceChildren(...list.map((c) => el("tr", { "data-id": c.id },
    el("td", { text: c.id }), el("td", { class: "serial", text: c.serial }), el("td", { text: usageText(c.usage) }),
    el("td", {}, statusCell(c.status)), el("td", { class: "date", text: date(c.not_after) }),
    el("td", { class: "revocation", text: revocation(c) }),
    dnCell(c.subject),
    el("td", {}, ["revoked", "superseded", "expired"].includes(c.status) ? null
      : el("button", { type: "button", class: "rv-open", id: `rv-${c.id}`,
        "aria-label": `${t("rv_print")} ${c.serial}`, text: t("rv_print"), onclick: () => revocationForm(c) })))));
  $("#rv-print-now").addEventListener("click", () => window.print());
}

// The pre-filled 憑證廢止申請單: the subscriber ticks a reason, signs and sends it to the RA
function revocationForm(c) {
  const set = (id, text) => { $(`#rv-${id}`).textContent = text || ""; };
  for (const k of ["name", "id_number", "subscriber_name", "account", "email", "phone", "address"]) set(k, me[k]);
  set("serial", c.serial); set("usage", usageText(c.usage)); set("subject", c.subject);
  set("from", date(c.not_before)); set("to", date(c.not_after));
  set("date", date(new Date().toISOString()).slice(0, 10));
  $("#rv-sheet").hidden = false;
  document.body.classList.add("printing-rv");
  $("#rv-sheet").scrollIntoView();
  window.print();
}

async function homePage() {
  await loadMe();
}

const PAGES = { login: loginPage, home: homePage, password: passwordPage, apply: applyPage,
  download: downloadPage, import: importPage, renew: renewPage, info: infoPage,
  revoke: revokePage };

export async function start(name) {
  setupMenu();
  const out = $("#logout");
  if (out) {
    out.addEventListener("click", async (ev) => {
      ev.preventDefault();
      // the server session must end; if it cannot be told, the page says so and stays
      if (!(await logout("subscriber"))) return show("error", t("err_logout_failed"));
      sessionStorage.removeItem(MUST_CHANGE);
      location.assign("/");
    });
  }
  if (name !== "login" && name !== "password" && sessionStorage.getItem(MUST_CHANGE) === "1") {
    location.assign("/portal/password");
    return;
  }
  try {
    await PAGES[name]();
    document.body.dataset.ready = "1";
  } catch (err) {
    fail(err);
    document.body.dataset.ready = "1";
  }
}
