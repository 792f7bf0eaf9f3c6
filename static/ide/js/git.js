// Git: a clone dialog (URL, branch, folder) with git's own progress and clear
// errors, and a status view of the changed files of a repository in the workspace.
import { basename, h, joinPath } from "./api.js";
import { postWithProgress, ProgressView } from "./operations.js";
import { READONLY, refuse, stateKey } from "./readonly.js";
import { status, toast } from "./ui.js";

function repoName(url) {
  const name = basename(url.replace(/[?#].*$/, "").replace(/\/+$/, "")).replace(/\.git$/, "");
  return name.replace(/[^\w.-]/g, "") || "repo";
}

export class Git {
  constructor(sandbox, { tree, editors, showSide }) {
    this.sb = sandbox;
    this.tree = tree;
    this.editors = editors;
    this.showSide = showSide;
    this.dialog = document.getElementById("clone-dialog");
    this.form = document.getElementById("clone-form");
    this.pathInput = document.getElementById("git-path");
    this.view = document.getElementById("git-status");
    try { this.pathInput.value = localStorage.getItem(stateKey("git", sandbox.id)) || "/workspace"; } catch { /* ignore */ }
    document.getElementById("clone-btn").addEventListener("click", () => this.openDialog());
    document.getElementById("clone-cancel").addEventListener("click", () => this.dialog.close());
    document.getElementById("git-refresh").addEventListener("click", () => this.refresh());
    this.pathInput.addEventListener("keydown", (e) => { if (e.key === "Enter") this.refresh(); });
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.clone(); });
    // Keep the status view current while it is on screen.
    let timer = null;
    document.addEventListener("fschange", (e) => {
      const repo = this.pathInput.value.trim();
      if (this.view.closest(".side-view").hidden || !e.detail.path.startsWith(repo)) return;
      if (e.detail.path.includes("/.git/") && !/\/\.git\/(index|HEAD)$/.test(e.detail.path)) return;
      clearTimeout(timer);
      timer = setTimeout(() => this.refresh(true), 600);
    });
  }

  openDialog() {
    if (READONLY) return refuse("Cloning");
    document.getElementById("clone-error").hidden = true;
    document.getElementById("clone-progress").hidden = true;
    document.getElementById("clone-submit").disabled = false;
    this.dialog.showModal();
    document.getElementById("clone-url").focus();
  }

  async clone() {
    if (READONLY) return refuse("Cloning");
    const url = document.getElementById("clone-url").value.trim();
    const branch = document.getElementById("clone-branch").value.trim();
    const path = document.getElementById("clone-path").value.trim() || joinPath("/workspace", repoName(url));
    const errorBox = document.getElementById("clone-error");
    const progress = document.getElementById("clone-progress");
    const submit = document.getElementById("clone-submit");
    if (!url) return;
    errorBox.hidden = true;
    // Counting, receiving, resolving, checking out: git's own stages and counts.
    const view = new ProgressView({ title: `Cloning into ${path}`, testid: "clone-progress" });
    progress.replaceChildren(view.el);
    progress.hidden = false;
    let transferred = false;
    submit.disabled = true;
    try {
      const body = { url, path };
      if (branch) body.branch = branch;
      const result = await postWithProgress(`${this.sb.base}/git/clone`, body, (step) => {
        transferred ||= step.stage === "clone";
        view.step(step);
      });
      this.dialog.close();
      this.form.reset();
      progress.hidden = true;
      const where = result.path || path;
      toast(`Cloned into ${where}${result.branch ? ` (branch ${result.branch}${result.commit ? ` @ ${result.commit.slice(0, 7)}` : ""})` : ""}`, "success");
      this.setPath(where);
      await this.tree.reveal(where);
      const node = this.tree.nodes.get(where);
      if (node && !node.open) await this.tree.expand(node);
      this.refresh();
    } catch (err) {
      // Where a transfer stopped stays on screen; the reason is in the error box.
      if (transferred) view.fail(`Stopped at ${view.text.textContent}`);
      else progress.hidden = true;
      errorBox.textContent = `Clone failed: ${err.message}`;
      errorBox.hidden = false;
    } finally {
      submit.disabled = false;
    }
  }

  setPath(path) {
    this.pathInput.value = path;
    try { localStorage.setItem(stateKey("git", this.sb.id), path); } catch { /* ignore */ }
  }

  async refresh(quiet = false) {
    const path = this.pathInput.value.trim() || "/workspace";
    this.setPath(path);
    if (!quiet) this.view.replaceChildren(h("p.muted.pad", {}, h("span.spinner"), " Reading status…"));
    let s;
    try {
      s = await this.sb.gitStatus(path);
    } catch (err) {
      this.view.replaceChildren(h("p.pad.field-error", { role: "alert" }, err.message),
        h("p.muted.pad.small", {}, READONLY ? "Type the folder of a repository above." : "Type the folder of a repository above, or clone one."));
      return;
    }
    const files = s.files || [];
    const head = h("div.git-head", {},
      h("span.git-branch", {}, `⎇ ${s.branch || "(detached)"}`),
      s.commit ? h("code.muted", {}, s.commit.slice(0, 7)) : null,
      s.ahead ? h("span.muted.small", {}, `↑${s.ahead}`) : null,
      s.behind ? h("span.muted.small", {}, `↓${s.behind}`) : null,
      h("span.grow"),
      h("span.muted.small", {}, files.length ? `${files.length} changed` : "clean"));
    const rows = files.map((f) => {
      const full = joinPath(path, f.path);
      const row = h("div.git-file", { title: `${f.status}: ${full}`, "data-path": f.path },
        h("span.git-badge", { "data-s": f.status }, badge(f.status)),
        h("span.path", {}, f.path));
      row.addEventListener("click", () => {
        if (!/delet/i.test(f.status) && !f.path.endsWith("/")) this.editors.open(full);
      });
      return row;
    });
    this.view.replaceChildren(head, ...(rows.length ? rows : [h("p.muted.pad", {}, "No changes: the working tree is clean.")]));
    status(`Git status of ${path}: ${files.length} changed`);
  }
}

function badge(s) {
  const map = { modified: "M", added: "A", deleted: "D", untracked: "U", renamed: "R", copied: "C", conflicted: "!", "??": "U" };
  return map[s] || String(s).trim().slice(0, 2).toUpperCase();
}
