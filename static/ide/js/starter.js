// A sandbox made from a template: the first time it is opened here, the
// template's files open in the editor and the preview pane follows its port as soon
// as something listens there.
import { call } from "./api.js";
import { status } from "./ui.js";

const WAIT_FOR_PORT_MS = 10 * 60 * 1000;

export async function applyTemplate({ sb, editors, preview, readonly }) {
  let hints;
  try {
    hints = await call("GET", `${sb.base}/starter`);
  } catch {
    return; // an older server, or no access: nothing to do
  }
  if (!hints || !hints.template) return;
  document.getElementById("ide")?.setAttribute("data-template", hints.name);
  const key = `ide-template-opened:${sb.id}`;
  let opened = false;
  try { opened = localStorage.getItem(key) === hints.template; } catch { /* private mode */ }
  if (!opened && hints.open_files?.length) {
    for (const [i, path] of hints.open_files.entries()) {
      await editors.open(`/workspace/${path}`, { quiet: true, activate: i === 0 });
    }
    try { localStorage.setItem(key, hints.template); } catch { /* ignore */ }
  }
  const port = hints.preview_port;
  if (!port || readonly) return;
  const ide = document.getElementById("ide");
  ide?.setAttribute("data-preview-port", String(port));
  status(`Preview follows port ${port} once something listens there`);
  const started = Date.now();
  const timer = setInterval(() => {
    if (preview.current) { clearInterval(timer); return; } // the user chose already
    if (preview.listening.includes(port)) {
      clearInterval(timer);
      preview.openPort(port);
    } else if (Date.now() - started > WAIT_FOR_PORT_MS) clearInterval(timer);
  }, 1000);
}
