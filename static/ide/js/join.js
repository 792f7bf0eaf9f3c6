// The invite landing page: join through the API (watching the sandbox being made:
// container, starter files, setup command), then open the IDE.
import { h } from "./api.js";
import { postWithProgress, ProgressView } from "./operations.js";

const root = document.getElementById("join");
const button = document.getElementById("join-btn");
const slot = document.getElementById("join-message");

button?.addEventListener("click", async () => {
  button.disabled = true;
  button.textContent = "Preparing your sandbox…";
  const view = new ProgressView({ title: "Preparing your sandbox", testid: "join-progress" });
  slot.replaceChildren(view.el);
  try {
    const joined = await postWithProgress(`/invites/${encodeURIComponent(root.dataset.token)}/join`, {},
      (step) => view.step(step));
    view.finish("Ready: opening your workspace…");
    window.location.assign(joined.ide_path);
  } catch (err) {
    slot.replaceChildren(h("div.flash.flash-error", { role: "alert" }, `Could not join: ${err.message}`));
    button.disabled = false;
    button.textContent = "Try again";
  }
});
