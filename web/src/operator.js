// Operator page: polls /operator/api/stats every 2 s and draws the series with uPlot.
// Bundled by build.mjs into gateway/operator/static/operator.js (strict CSP: no inline code).
// Texts in zh-TW (default) or English: ?lang=, else the portal's lang cookie.
import uPlot from "uplot";

const POLL_MS = 2000;
// colours with >= 4.5:1 on white, told apart by dash pattern as well as hue
const COLORS = ["#1a5fb4", "#a51d2d", "#26733a", "#8a4b00"];
const DASH = [[], [6, 3], [2, 3]];

const TEXT = {
  "zh-TW": {
    title: "憑證服務監控", heading: "憑證服務 — 維運監控", loading: "載入中…",
    login_title: "RA 人員登入", login: "帳號", password: "密碼", submit: "登入",
    login_hint: "請以 RA 人員帳號登入", login_failed: "登入失敗：帳號或密碼不正確，或帳號已鎖定。",
    issued: "已簽發憑證", rate: "每秒簽發", p99: "簽發延遲 p99", signer: "簽章服務",
    queue: "佇列長度", e5xx: "5xx 錯誤（累計）",
    c_throughput: "處理量（每秒）", c_latency: "延遲百分位（毫秒，對數刻度）",
    c_queue: "簽章佇列長度（件）", c_errors: "錯誤（每秒）",
    certs_s: "憑證/秒", req_s: "請求/秒", iss_p50: "簽發 p50", iss_p99: "簽發 p99",
    http_p99: "HTTP p99", queue_items: "佇列", e5xx_s: "5xx/秒", e4xx_s: "4xx/秒",
    signer_e_s: "簽章錯誤/秒", time: "時間", per_s: "每秒", ms: "毫秒", items: "件",
    updated: "更新時間", footer: "每 2 秒取樣本閘道的 /metrics；顯示最近 5 分鐘。",
    unreachable: "無法連線到閘道", http: "統計資料錯誤：HTTP ", other: "English",
    st_ok: "正常", st_degraded: "降級", st_down: "停止", st_unknown: "未知",
  },
  en: {
    title: "CA operator – live", heading: "Certificate service – operator view",
    loading: "loading…", login_title: "RA officer login", login: "Login",
    password: "Password", submit: "Log in", login_hint: "log in with an RA officer account",
    login_failed: "Login failed: wrong login or password, or the account is locked.",
    issued: "certificates issued", rate: "certificates/s", p99: "issuance p99",
    signer: "signer", queue: "queue depth", e5xx: "5xx (total)",
    c_throughput: "Throughput (per second)", c_latency: "Latency percentiles (ms, log scale)",
    c_queue: "Signer queue depth (items)", c_errors: "Errors (per second)",
    certs_s: "certificates/s", req_s: "requests/s", iss_p50: "issuance p50",
    iss_p99: "issuance p99", http_p99: "HTTP p99", queue_items: "queue", e5xx_s: "5xx/s",
    e4xx_s: "4xx/s", signer_e_s: "signer errors/s", time: "Time", per_s: "per second",
    ms: "ms", items: "items", updated: "updated",
    footer: "Sampled every 2 s from this gateway's own /metrics; the last 5 minutes.",
    unreachable: "gateway unreachable", http: "stats: HTTP ", other: "中文",
    st_ok: "ok", st_degraded: "degraded", st_down: "down", st_unknown: "unknown",
  },
};

function pickLang() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked in TEXT) {
    document.cookie = `lang=${asked}; path=/; max-age=${365 * 86400}; SameSite=Strict`;
    return asked;
  }
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("lang="));
  const saved = cookie ? cookie.slice(5) : "";
  return saved in TEXT ? saved : "zh-TW";
}

const lang = pickLang();
const T = TEXT[lang];
const locale = lang === "en" ? "en-GB" : "zh-TW";
const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
const clock = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
let timer = null;
const charts = {};

const $ = (id) => document.getElementById(id);

function last(arr) {
  for (let i = arr.length - 1; i >= 0; i--) if (arr[i] !== null && arr[i] !== undefined) return arr[i];
  return null;
}

const show = (v, f, unit) => (v === null || v === undefined || Number.isNaN(v) ? "–"
  : `${f.format(v)}${unit ? ` ${unit}` : ""}`);

function translate() {
  document.documentElement.lang = lang;
  document.title = T.title;
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = T[node.dataset.t];
  const other = lang === "en" ? "zh-TW" : "en";
  const link = $("lang-switch");
  link.textContent = T.other;
  link.href = `?lang=${other}`;
  link.lang = other;
}

// defs: [{label, key}] ; log: latency on a log scale so one spike does not flatten the rest
const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];

function chart(id, defs, unit, { log = false, integers = false } = {}) {
  const box = $(id);
  const opts = {
    width: Math.max(box.clientWidth, 240), height: 220,
    scales: { x: { time: true }, y: log ? { distr: 3 } : { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [
      { label: T.time, stroke: "#1c2330", grid: { stroke: "#e1e4ea" },
        values: (u, ticks) => ticks.map((s) => clock.format(new Date(s * 1000))) },
      { label: unit, stroke: "#1c2330", grid: { stroke: "#e1e4ea" }, size: 60,
        ...(integers ? { incrs: INTEGER_STEPS } : {}),
        ...(log ? { values: (u, ticks) => ticks.map((v) => (Math.log10(v) % 1 === 0 ? integer.format(v) : "")) } : {}) },
    ],
    series: [{ label: T.time, value: (u, s) => (s === null ? "–" : clock.format(new Date(s * 1000))) },
      ...defs.map((d, i) => ({ label: d.label, stroke: COLORS[i % COLORS.length], width: 2,
        dash: DASH[i % DASH.length], spanGaps: false,
        value: (u, v) => (v === null || v === undefined ? "–" : decimal.format(v)) }))],
    legend: { live: false },  // series names and colours; the tiles carry the current values
  };
  const plot = new uPlot(opts, [[], ...defs.map(() => [])], box);
  charts[id] = { plot, defs, log };
}

function feed(id, s) {
  const c = charts[id];
  const data = [s.t, ...c.defs.map((d) => (c.log ? s[d.key].map((v) => (v > 0 ? v : null)) : s[d.key]))];
  c.plot.setData(data);
}

function render(data) {
  const s = data.series;
  $("t-issued").textContent = show(data.totals.certificates_issued, integer);
  $("t-rate").textContent = show(last(s.certs_per_s), decimal);
  $("t-p99").textContent = show(last(s.issuance_p99_ms), decimal, T.ms);
  const sig = data.signer;
  const tile = $("t-signer");
  const state = T[`st_${sig.status}`] || sig.status;
  tile.textContent = sig.workers ? `${state} (${integer.format(sig.workers_ready)}/${integer.format(sig.workers)})` : state;
  tile.className = "value " + (sig.status === "ok" ? "ok" : sig.status === "degraded" ? "warn" : "bad");
  $("t-queue").textContent = show(sig.queue_depth, integer);
  $("t-5xx").textContent = show(data.totals.http_5xx, integer);
  for (const id of Object.keys(charts)) feed(id, s);
  $("status").textContent = `${T.updated} ${clock.format(new Date(data.now * 1000))}`;
}

function showLogin() {
  $("board").hidden = true;
  $("login").hidden = false;
  $("status").textContent = T.login_hint;
  if (timer !== null) { clearInterval(timer); timer = null; }
}

function setupCharts() {
  if (Object.keys(charts).length) return;
  chart("c-throughput", [{ label: T.certs_s, key: "certs_per_s" }, { label: T.req_s, key: "requests_per_s" }], T.per_s);
  chart("c-latency", [{ label: T.iss_p50, key: "issuance_p50_ms" }, { label: T.iss_p99, key: "issuance_p99_ms" },
    { label: T.http_p99, key: "http_p99_ms" }], T.ms, { log: true });
  chart("c-queue", [{ label: T.queue_items, key: "queue_depth" }], T.items, { integers: true });
  chart("c-errors", [{ label: T.e5xx_s, key: "errors_5xx_per_s" }, { label: T.e4xx_s, key: "errors_4xx_per_s" },
    { label: T.signer_e_s, key: "signer_errors_per_s" }], T.per_s);
  window.addEventListener("resize", () => {
    for (const [id, c] of Object.entries(charts)) c.plot.setSize({ width: Math.max($(id).clientWidth, 240), height: 220 });
  });
}

async function poll() {
  try {
    const r = await fetch("/operator/api/stats", { credentials: "same-origin" });
    if (r.status === 401) { showLogin(); return; }
    if (!r.ok) { $("status").textContent = T.http + r.status; return; }
    $("login").hidden = true;
    $("board").hidden = false;
    setupCharts();
    render(await r.json());
  } catch {
    $("status").textContent = T.unreachable;
  }
}

function start() {
  poll();
  if (timer === null) timer = setInterval(poll, POLL_MS);
}

function main() {
  translate();
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const r = await fetch("/api/v1/ra/session", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ login: form.login.value, password: form.password.value }),
    }).catch(() => null);
    if (r && r.ok) {
      form.password.value = "";
      $("login-error").textContent = "";
      const body = await r.json();
      if (body.second_factor) { // the RA pages complete the login, then come back here
        sessionStorage.setItem("ca.ra.csrf", body.csrf_token);
        location.assign(body.second_factor === "verify" ? "/ra/verify?next=/operator/"
          : "/ra/factors");
        return;
      }
      start();
      return;
    }
    $("login-error").textContent = r ? T.login_failed : T.unreachable;
  });
  start();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
