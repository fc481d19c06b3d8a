// Page helpers: messages in the page's language, DOM building without innerHTML.
const data = JSON.parse(document.getElementById("page-data")?.textContent || "{}");
export const page = data;

export function t(key, fmt = {}) {
  let text = (data.messages && data.messages[key]) || key;
  for (const [k, v] of Object.entries(fmt)) text = text.replace(`{${k}}`, String(v));
  return text;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function show(kind, text) {
  const box = $("#msg");
  if (!box) return;
  box.className = `msg ${kind}`;
  box.textContent = text;
  box.hidden = !text;
  if (text) box.scrollIntoView({ block: "nearest" });
}

export const clear = () => show("", "");

export function busy(button, on) {
  if (!button) return;
  button.disabled = on;
  if (on) show("", t("working"));
}

export function statusCell(status) {
  return el("span", { class: `status-${status}`, "data-status": status, text: t(`st_${status}`) });
}

export function date(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function saveFile(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = el("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 60000);
}

// A distinguished name with a line-break chance after every comma (for narrow cells)
export function dnParts(text) {
  const parts = String(text || "").split(/(?<=,)/);
  return parts.flatMap((part, i) => (i ? [el("wbr"), part] : [part]));
}

export const dnCell = (text) => el("td", { class: "dn" }, dnParts(text));
