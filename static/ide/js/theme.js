// Dark / light theme: remembered in localStorage, default follows the system.
// Other modules listen for the "themechange" event on document.

const KEY = "ide-theme";

export function currentTheme() {
  return document.documentElement.dataset.theme === "light" ? "light" : "dark";
}

export function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try { localStorage.setItem(KEY, theme); } catch { /* private mode */ }
  document.dispatchEvent(new CustomEvent("themechange", { detail: { theme } }));
}

export function toggleTheme() {
  setTheme(currentTheme() === "dark" ? "light" : "dark");
}

for (const button of document.querySelectorAll("[data-theme-toggle]")) {
  button.addEventListener("click", toggleTheme);
}

const media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: light)") : null;
if (media) {
  media.addEventListener("change", (e) => {
    let stored = null;
    try { stored = localStorage.getItem(KEY); } catch { /* ignore */ }
    if (!stored) {
      document.documentElement.dataset.theme = e.matches ? "light" : "dark";
      document.dispatchEvent(new CustomEvent("themechange", { detail: { theme: currentTheme() } }));
    }
  });
}
