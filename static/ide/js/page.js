// Pieces shared by the pages outside the IDE (dashboard, courses): an inline
// message slot, relative times and the page's confirm dialog (#confirm-dialog).
import { h } from "./api.js";

export function flash(slot, kind, text) {
  slot.replaceChildren(h(`div.flash.flash-${kind}`, { role: kind === "error" ? "alert" : "status" }, text));
}

export function ago(iso, never = "") {
  if (!iso) return never;
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function confirmDialog(title, text, okLabel) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}
