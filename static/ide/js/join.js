// The invite landing page: join through the API, then open the IDE.
import { call, h } from "./api.js";

const root = document.getElementById("join");
const button = document.getElementById("join-btn");
const slot = document.getElementById("join-message");

button?.addEventListener("click", async () => {
  button.disabled = true;
  button.textContent = "Preparing your sandbox…";
  slot.replaceChildren();
  try {
    const joined = await call("POST", `/invites/${encodeURIComponent(root.dataset.token)}/join`);
    window.location.assign(joined.ide_path);
  } catch (err) {
    slot.replaceChildren(h("div.flash.flash-error", { role: "alert" }, `Could not join: ${err.message}`));
    button.disabled = false;
    button.textContent = "Try again";
  }
});
