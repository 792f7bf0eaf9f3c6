// Resizable panes: drag handles between side bar / editor / preview and
// editor / bottom panel. Sizes and hidden panes are remembered in localStorage
// (applied before first paint by the inline script in ide.html). Read-only views
// of others' workspaces keep their own layout (the preview pane starts closed there
// and opens once the owner's ports are known).
import { READONLY } from "./readonly.js";

const KEY = READONLY ? "ide-layout-readonly" : "ide-layout";
const root = document.documentElement;

function load() {
  try { return JSON.parse(localStorage.getItem(KEY) || "{}") || {}; } catch { return {}; }
}
function save(state) {
  try { localStorage.setItem(KEY, JSON.stringify(state)); } catch { /* ignore */ }
}

const state = load();
const listeners = new Set();
export function onLayoutChange(fn) { listeners.add(fn); }
function changed() { for (const fn of listeners) fn(); }

const LIMITS = {
  sidebar: { min: 160, max: () => Math.max(200, innerWidth * 0.45), prop: "--sidebar-w" },
  preview: { min: 240, max: () => Math.max(280, innerWidth * 0.65), prop: "--preview-w" },
  panel: { min: 90, max: () => Math.max(120, innerHeight - 200), prop: "--panel-h" },
};

function setSize(which, px) {
  const lim = LIMITS[which];
  const v = Math.round(Math.min(lim.max(), Math.max(lim.min, px)));
  root.style.setProperty(lim.prop, `${v}px`);
  state[which] = v;
}

export function isNarrow() { return innerWidth <= 900; }

export function setHidden(pane, hidden) {
  const attr = pane === "sidebar" ? "data-no-sidebar" : "data-no-preview";
  root.toggleAttribute(attr, hidden);
  if (!isNarrow() || pane !== "sidebar") {
    state[pane === "sidebar" ? "sidebarHidden" : "previewHidden"] = hidden;
    save(state);
  }
  changed();
}
export function isHidden(pane) {
  return root.hasAttribute(pane === "sidebar" ? "data-no-sidebar" : "data-no-preview");
}
export function toggle(pane) { setHidden(pane, !isHidden(pane)); }

export function initLayout() {
  for (const gutter of document.querySelectorAll("[data-gutter]")) {
    const which = gutter.dataset.gutter;
    gutter.addEventListener("pointerdown", (down) => {
      down.preventDefault();
      gutter.setPointerCapture(down.pointerId);
      gutter.classList.add("dragging");
      document.body.classList.add("resizing");
      const startX = down.clientX;
      const startY = down.clientY;
      const start = parseFloat(getComputedStyle(root).getPropertyValue(LIMITS[which].prop)) || 0;
      let frame = 0;
      const move = (e) => {
        cancelAnimationFrame(frame);
        frame = requestAnimationFrame(() => {
          if (which === "sidebar") setSize(which, start + (e.clientX - startX));
          else if (which === "preview") setSize(which, start - (e.clientX - startX));
          else setSize(which, start - (e.clientY - startY));
          changed();
        });
      };
      const up = () => {
        gutter.removeEventListener("pointermove", move);
        gutter.removeEventListener("pointerup", up);
        gutter.removeEventListener("pointercancel", up);
        gutter.classList.remove("dragging");
        document.body.classList.remove("resizing");
        save(state);
        changed();
      };
      gutter.addEventListener("pointermove", move);
      gutter.addEventListener("pointerup", up);
      gutter.addEventListener("pointercancel", up);
    });
    gutter.addEventListener("dblclick", () => {
      delete state[which];
      root.style.removeProperty(LIMITS[which].prop);
      save(state);
      changed();
    });
  }
  let wasNarrow = isNarrow();
  addEventListener("resize", () => {
    const narrow = isNarrow();
    if (narrow !== wasNarrow) {
      root.toggleAttribute("data-no-sidebar", narrow || !!state.sidebarHidden);
      wasNarrow = narrow;
    }
    changed();
  });
}

// The bottom panel: maximized (almost all of the editor column) or back to its size.
export function togglePanelMax() {
  const maxed = root.hasAttribute("data-panel-max");
  root.toggleAttribute("data-panel-max", !maxed);
  changed();
  return !maxed;
}
