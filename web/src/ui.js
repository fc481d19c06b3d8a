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

// ---- fields in error: aria-invalid + a message tied to the field by aria-describedby ----------
export function markField(input, text) {
  if (!input) return;
  const id = `${input.id}-error`;
  let note = document.getElementById(id);
  if (!note) {
    note = el("p", { class: "field-error", id });
    input.insertAdjacentElement("afterend", note);
  }
  note.textContent = text;
  input.setAttribute("aria-invalid", "true");
  const described = new Set((input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
  described.add(id);
  input.setAttribute("aria-describedby", [...described].join(" "));
}

export function clearFields(root = document) {
  for (const input of $$("[aria-invalid=true]", root)) {
    input.removeAttribute("aria-invalid");
    const id = `${input.id}-error`;
    const rest = (input.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && x !== id);
    if (rest.length) input.setAttribute("aria-describedby", rest.join(" "));
    else input.removeAttribute("aria-describedby");
  }
  for (const note of $$(".field-error", root)) note.remove();
}

// The field's visible label (in the page's language), for "欄位內容不正確：<label>"
export function labelOf(input) {
  const label = input && input.id ? $(`label[for="${input.id}"]`) : null;
  return label ? label.textContent.replace(/\s*\*\s*$/, "").trim() : "";
}

// Marks ``input`` and shows the page message for an invalid field.
export function fieldError(input, text) {
  const message = text || t("err_invalid_field_named", { field: labelOf(input) });
  markField(input, message);
  show("error", message);
  if (input) input.focus();
}

// ---- the menu collapses behind a button on narrow screens ------------------------------------
export function setupMenu() {
  const button = $("#menu-toggle");
  const nav = $("nav.menu");
  if (!button || !nav) return;
  button.hidden = false;
  button.addEventListener("click", () => {
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    nav.classList.toggle("open", open);
  });
}

// "簽章憑證、加密憑證" in Chinese, "Signing certificate, Encryption certificate" in English
export const joinList = (items) => items.join(page.lang === "en" ? ", " : "、");
