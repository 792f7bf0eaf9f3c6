// Dashboard: the caller's sandboxes through the API (list, create, open, sleep, delete,
// snapshot, fork, restore).
import { call, h } from "./api.js";
import { ago, confirmDialog, flash } from "./page.js";
import { postWithProgress, ProgressView } from "./operations.js";

const list = document.getElementById("sandbox-list");
const slot = document.getElementById("dash-message");
const form = document.getElementById("create-form");
const createBtn = document.getElementById("create-btn");
const templateSelect = document.getElementById("create-template");
// The caller's templates by id, to offer them and to name them on cards.
const templateNames = new Map();
const templateInfo = new Map();

async function loadTemplates() {
  try {
    const { templates } = await call("GET", "/templates");
    for (const t of templates) {
      templateNames.set(t.id, t.name);
      templateInfo.set(t.id, t);
      if (!templateSelect.querySelector(`option[value="${t.id}"]`)) {
        const label = t.description ? `${t.name} — ${t.description.slice(0, 60)}` : t.name;
        templateSelect.append(h("option", { value: t.id, "data-template": t.name }, label));
      }
    }
  } catch (err) {
    flash(slot, "error", `Could not list your templates: ${err.message}`);
  }
}

async function act(sandbox, button, work, busyLabel) {
  const old = button.textContent;
  button.disabled = true;
  button.textContent = busyLabel;
  try {
    await work();
    await refresh();
  } catch (err) {
    flash(slot, "error", `${sandbox.name}: ${err.message}`);
    button.disabled = false;
    button.textContent = old;
  }
}

function card(s) {
  const open = h("a.btn.primary", { href: `/sandboxes/${s.id}/`, "data-testid": "open" }, "Open");
  const sleep = h("button.btn", { type: "button" }, s.status === "sleeping" ? "Wake" : "Sleep");
  sleep.addEventListener("click", () =>
    act(s, sleep, () => call("POST", `/sandboxes/${s.id}/${s.status === "sleeping" ? "wake" : "sleep"}`),
      s.status === "sleeping" ? "Waking…" : "Sleeping…"));
  const del = h("button.btn.danger.ghost", { type: "button" }, "Delete");
  del.addEventListener("click", async () => {
    const ok = await confirmDialog(`Delete “${s.name}”?`,
      "Its container and every file in its workspace are destroyed. This cannot be undone.", "Delete");
    if (ok) act(s, del, () => call("DELETE", `/sandboxes/${s.id}`), "Deleting…");
  });
  // Made from a template: pull its newest starter in (nbgitpuller-style merge).
  let pull = null;
  if (s.template && s.template !== "default") {
    pull = h("button.btn.ghost", { type: "button", "data-testid": "update-starter",
      title: "Merge the template's newest starter files; your edits are kept" }, "Update starter");
    pull.addEventListener("click", () => act(s, pull, async () => {
      const r = await call("POST", `/sandboxes/${s.id}/starter/update`);
      if (r.status === "up_to_date") { flash(slot, "success", `${s.name}: the starter is up to date.`); return; }
      const kept = r.conflicts.map((c) => (c.kept_as ? `${c.path} (the starter's is in ${c.kept_as})` : c.path));
      flash(slot, kept.length ? "warning" : "success", `${s.name}: ${r.updated.length} file(s) updated` +
        (kept.length ? `; your version kept for ${kept.join(", ")}.` : "."));
    }, "Updating…"));
  }
  const [snap, fork, restore] = snapshotButtons(s);
  return h("article.sandbox-card", { "data-sandbox": s.name, "data-id": s.id },
    h("div.card-top",
      h("a.sandbox-name", { href: `/sandboxes/${s.id}/` }, s.name),
      h("span.status-pill", { "data-status": s.status }, s.status)),
    h("div.muted.small", `${templateNames.get(s.template) || s.template || "default"} · active ${ago(s.last_active_at)} · ${s.id}`),
    s.status_detail && s.status === "error" ? h("div.field-error", s.status_detail) : null,
    h("div.card-actions", open, sleep, pull, snap, fork, restore, del));
}

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

// Snapshot (keep the files now), fork (a running copy) and restore (back to the
// newest snapshot), each saying what happened in the message slot.
function snapshotButtons(s) {
  const button = (testid, label, title) =>
    h("button.btn.ghost", { type: "button", "data-testid": testid, title }, label);
  const snap = button("snapshot", "Snapshot", "Keep the workspace and installed packages as they are now");
  snap.addEventListener("click", () => act(s, snap, async () => {
    const r = await call("POST", `/sandboxes/${s.id}/snapshots`, { json: {} });
    flash(slot, "success", `${s.name}: snapshot “${r.name}” saved (${megabytes(r.size_bytes)}, ` +
      `paused ${Math.round(r.paused_ms)} ms).`);
  }, "Saving…"));
  const fork = button("fork", "Fork", "Snapshot this sandbox and start a copy of it");
  fork.addEventListener("click", () => act(s, fork, async () => {
    const r = await call("POST", `/sandboxes/${s.id}/fork`, { json: { count: 1 } });
    if (r.errors.length) throw new Error(`the copy was not made: ${r.errors[0].message}`);
    flash(slot, "success", `${s.name}: forked into “${r.sandboxes[0].name}”.`);
  }, "Forking…"));
  const restore = button("restore", "Restore", "Roll back to this sandbox's newest snapshot");
  restore.addEventListener("click", async () => {
    let snapshots;
    try {
      ({ snapshots } = await call("GET", `/sandboxes/${s.id}/snapshots`));
    } catch (err) {
      flash(slot, "error", `${s.name}: ${err.message}`);
      return;
    }
    if (!snapshots.length) {
      flash(slot, "warning", `${s.name}: there is no snapshot to restore yet; take one with Snapshot.`);
      return;
    }
    const newest = snapshots[0];
    const ok = await confirmDialog(`Restore “${s.name}” to “${newest.name}”?`,
      `Its files and installed packages go back to the snapshot of ${ago(newest.created_at)}; ` +
      "running programs end and later changes are lost.", "Restore");
    if (ok) act(s, restore, async () => {
      await call("POST", `/sandboxes/${s.id}/restore`, { json: { snapshot: newest.id } });
      flash(slot, "success", `${s.name}: restored to snapshot “${newest.name}”.`);
    }, "Restoring…");
  });
  return [snap, fork, restore];
}

async function refresh() {
  try {
    const { sandboxes } = await call("GET", "/sandboxes");
    list.removeAttribute("aria-busy");
    if (!sandboxes.length) {
      list.replaceChildren(h("div.empty-card", {},
        h("p", {}, h("strong", {}, "No sandboxes yet.")),
        h("p.muted", {}, "Create one above: a Linux box with Python, Node.js and git, a terminal, an editor and live previews.")));
      return;
    }
    list.replaceChildren(...sandboxes.map(card));
  } catch (err) {
    list.replaceChildren(h("div.flash.flash-error", { role: "alert" }, `Could not list your sandboxes: ${err.message}`));
  }
}

// The stages a sandbox from this template goes through (those it has).
function templateStages(t) {
  const stages = [["container", "Container"]];
  if (!t || t.starter_head) stages.push(["starter", "Starter files"]);
  if (!t || t.setup_command) stages.push(["setup", "Setup command"]);
  return stages;
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = form.elements.name.value.trim();
  const template = form.elements.template.value;
  createBtn.disabled = true;
  createBtn.textContent = "Creating…";
  slot.replaceChildren();
  const body = { template };
  if (name) body.name = name;
  // From a template: container, starter files and setup command, each shown as it
  // happens (the setup command's latest output line too).
  const fromTemplate = template && template !== "default";
  const view = fromTemplate ? new ProgressView({
    title: `Creating ${name ? `“${name}”` : "a sandbox"} from ${templateNames.get(template) || template}`,
    stages: templateStages(templateInfo.get(template)),
    testid: "create-progress",
  }) : null;
  if (view) slot.replaceChildren(view.el);
  try {
    const s = fromTemplate
      ? await postWithProgress("/sandboxes", body, (step) => view.step(step))
      : await call("POST", "/sandboxes", { json: body });
    if (view) view.finish(`Sandbox “${s.name}” is ${s.status}.`);
    else flash(slot, "success", `Sandbox “${s.name}” is ${s.status}.`);
    form.reset();
    await refresh();
  } catch (err) {
    if (view) view.fail(`Could not create the sandbox: ${err.message}`);
    else flash(slot, "error", `Could not create the sandbox: ${err.message}`);
  } finally {
    createBtn.disabled = false;
    createBtn.textContent = "Create sandbox";
  }
});

loadTemplates().then(refresh);
setInterval(() => { if (!document.hidden) refresh(); }, 15000);
