// Small shared UI pieces: toasts, status messages, prompt / confirm dialogs, context menu.
import { h } from "./api.js";

export function toast(message, kind = "info", ms = 4500) {
  const box = document.getElementById("toasts");
  const el = h(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, message);
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? Math.max(ms, 8000) : ms);
  return el;
}

let statusTimer = null;
export function status(message, kind = "") {
  const el = document.getElementById("status-msg");
  if (!el) return;
  el.textContent = message;
  el.className = kind;
  clearTimeout(statusTimer);
  if (message) statusTimer = setTimeout(() => { el.textContent = ""; }, 6000);
}

// prompt({title, label, value, help, ok, select}) -> Promise<string|null>
export function prompt({ title, label = "", value = "", help = "", ok = "OK", select = null }) {
  const dialog = document.getElementById("prompt-dialog");
  const input = document.getElementById("prompt-input");
  document.getElementById("prompt-title").textContent = title;
  document.getElementById("prompt-label").textContent = label;
  document.getElementById("prompt-help").textContent = help;
  document.getElementById("prompt-ok").textContent = ok;
  input.value = value;
  input.hidden = false;
  dialog.showModal();
  input.focus();
  if (select) input.setSelectionRange(select[0], select[1]);
  else input.select();
  return new Promise((resolve) => {
    const form = document.getElementById("prompt-form");
    const cancel = document.getElementById("prompt-cancel");
    const done = (v) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      resolve(v);
    };
    const onSubmit = (e) => { e.preventDefault(); done(input.value.trim() || null); };
    const onCancel = (e) => { e.preventDefault(); done(null); };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
  });
}

export function confirmDialog({ title, text = "", ok = "OK" }) {
  const dialog = document.getElementById("prompt-dialog");
  const input = document.getElementById("prompt-input");
  document.getElementById("prompt-title").textContent = title;
  document.getElementById("prompt-label").textContent = "";
  document.getElementById("prompt-help").textContent = text;
  const okBtn = document.getElementById("prompt-ok");
  okBtn.textContent = ok;
  okBtn.classList.add("danger");
  okBtn.classList.remove("primary");
  input.hidden = true;
  dialog.showModal();
  okBtn.focus();
  return new Promise((resolve) => {
    const form = document.getElementById("prompt-form");
    const cancel = document.getElementById("prompt-cancel");
    const done = (v) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      okBtn.classList.remove("danger");
      okBtn.classList.add("primary");
      input.hidden = false;
      if (dialog.open) dialog.close();
      resolve(v);
    };
    const onSubmit = (e) => { e.preventDefault(); done(true); };
    const onCancel = (e) => { e.preventDefault(); done(false); };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
  });
}

// contextMenu(x, y, [{label, run, danger} | "-"])
export function contextMenu(x, y, items) {
  const menu = document.getElementById("context-menu");
  menu.replaceChildren(...items.map((item) => {
    if (item === "-") return h("hr");
    const b = h(`button${item.danger ? ".danger" : ""}`, { type: "button", role: "menuitem" }, item.label);
    b.addEventListener("click", () => { hideMenu(); item.run(); });
    return b;
  }));
  menu.hidden = false;
  const r = menu.getBoundingClientRect();
  menu.style.left = `${Math.min(x, innerWidth - r.width - 6)}px`;
  menu.style.top = `${Math.min(y, innerHeight - r.height - 6)}px`;
  menu.querySelector("button")?.focus();
}

export function hideMenu() {
  document.getElementById("context-menu").hidden = true;
}

document.addEventListener("pointerdown", (e) => {
  const menu = document.getElementById("context-menu");
  if (menu && !menu.hidden && !menu.contains(e.target)) hideMenu();
});
document.addEventListener("keydown", (e) => { if (e.key === "Escape") hideMenu(); });

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h("textarea", { style: "position:fixed;left:-9999px" });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch { ok = false; }
    ta.remove();
    return ok;
  }
}

export function humanSize(n) {
  if (n === undefined || n === null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
