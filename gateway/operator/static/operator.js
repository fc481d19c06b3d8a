// Operator page: polls /operator/api/stats every 2 s and draws line charts on <canvas>.
// No inline script, no libraries; the CSP allows scripts from this origin only.
"use strict";

const POLL_MS = 2000;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"];
let timer = null;

function $(id) { return document.getElementById(id); }

function fmt(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const n = Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
  return unit ? `${n} ${unit}` : n;
}

function last(arr) {
  for (let i = arr.length - 1; i >= 0; i--) if (arr[i] !== null) return arr[i];
  return null;
}

// lines: [{label, values}] with values aligned to times (seconds)
function draw(canvas, times, lines) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  const left = 48, right = 8, top = 8, bottom = 36;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif";
  let max = 0;
  for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.1 : 1;
  const t0 = times.length ? times[0] : 0, t1 = times.length ? times[times.length - 1] : 1;
  const span = Math.max(t1 - t0, 1);
  const x = (t) => left + ((t - t0) / span) * (w - left - right);
  const y = (v) => top + (1 - v / max) * (h - top - bottom);
  ctx.strokeStyle = "#e1e4ea"; ctx.fillStyle = "#5b6577"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4, yy = y(v);
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - right, yy); ctx.stroke();
    ctx.fillText(fmt(v), 2, yy + 4);
  }
  ctx.fillText(`${Math.round(span)} s`, w - right - 30, h - bottom + 14);
  lines.forEach((l, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.lineWidth = 2; ctx.beginPath();
    let pen = false;
    l.values.forEach((v, j) => {
      if (v === null) { pen = false; return; }
      if (pen) ctx.lineTo(x(times[j]), y(v)); else ctx.moveTo(x(times[j]), y(v));
      pen = true;
    });
    ctx.stroke();
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillRect(left + i * 130, h - 14, 10, 10);
    ctx.fillStyle = "#1c2330";
    ctx.fillText(`${l.label} ${fmt(last(l.values))}`, left + 14 + i * 130, h - 5);
  });
}

function render(data) {
  const s = data.series;
  $("t-issued").textContent = fmt(data.totals.certificates_issued);
  $("t-rate").textContent = fmt(last(s.certs_per_s));
  $("t-p99").textContent = fmt(last(s.issuance_p99_ms), "ms");
  const sig = data.signer;
  const tile = $("t-signer");
  tile.textContent = sig.workers ? `${sig.status} (${sig.workers_ready}/${sig.workers})` : sig.status;
  tile.className = "value " + (sig.status === "ok" ? "ok" : sig.status === "degraded" ? "warn" : "bad");
  $("t-queue").textContent = fmt(sig.queue_depth);
  $("t-5xx").textContent = fmt(data.totals.http_5xx);
  draw($("c-throughput"), s.t, [
    { label: "certificates/s", values: s.certs_per_s },
    { label: "requests/s", values: s.requests_per_s },
  ]);
  draw($("c-latency"), s.t, [
    { label: "issuance p50", values: s.issuance_p50_ms },
    { label: "issuance p99", values: s.issuance_p99_ms },
    { label: "http p99", values: s.http_p99_ms },
  ]);
  draw($("c-queue"), s.t, [{ label: "queue", values: s.queue_depth }]);
  draw($("c-errors"), s.t, [
    { label: "5xx/s", values: s.errors_5xx_per_s },
    { label: "4xx/s", values: s.errors_4xx_per_s },
    { label: "signer errors/s", values: s.signer_errors_per_s },
  ]);
  $("status").textContent = `updated ${new Date(data.now * 1000).toLocaleTimeString()}`;
}

function showLogin() {
  $("board").hidden = true;
  $("login").hidden = false;
  $("status").textContent = "log in with an RA officer account";
  if (timer !== null) { clearInterval(timer); timer = null; }
}

async function poll() {
  try {
    const r = await fetch("/operator/api/stats", { credentials: "same-origin" });
    if (r.status === 401) { showLogin(); return; }
    if (!r.ok) { $("status").textContent = `stats: HTTP ${r.status}`; return; }
    $("login").hidden = true;
    $("board").hidden = false;
    render(await r.json());
  } catch (e) {
    $("status").textContent = "gateway unreachable";
  }
}

function start() {
  poll();
  if (timer === null) timer = setInterval(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const r = await fetch("/api/v1/ra/session", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ login: form.login.value, password: form.password.value }),
    });
    if (r.ok) {
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
    let msg = `HTTP ${r.status}`;
    try { msg = (await r.json()).message || msg; } catch (e) { /* not JSON */ }
    $("login-error").textContent = msg;
  });
  start();
});
