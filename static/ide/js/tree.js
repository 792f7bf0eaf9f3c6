// The file tree: lazy directories, create / rename / delete, move by drag and drop,
// upload by dropping files or folders in, download (file or folder as .tar.gz), both
// with a progress card (transfers.js), and live updates from the watch stream
// (GET /files/watch as Server-Sent Events).
// Read-only (someone else's workspace): browse, open, download and live updates only.
import { ApiError, basename, dirname, h, joinPath, raw, readSSE } from "./api.js";
import { accessEnded, awake, endAccess, READONLY, refuse, stateKey } from "./readonly.js";
import * as transfers from "./transfers.js";
import { confirmDialog, contextMenu, prompt, status, toast } from "./ui.js";

export const ROOT = "/workspace";
const PAGE = 500;
const DRAG_TYPE = "application/x-sandbox-path";

// File-type badges: short text in a colour per language (no icon font needed).
const BADGES = {
  py: ["py", "#3b82f6"], pyi: ["py", "#3b82f6"], ipynb: ["nb", "#f59e0b"],
  js: ["js", "#d4a72c"], mjs: ["js", "#d4a72c"], cjs: ["js", "#d4a72c"], jsx: ["jsx", "#22b8cf"],
  ts: ["ts", "#3178c6"], tsx: ["tsx", "#3178c6"], json: ["{}", "#d4a72c"],
  html: ["<>", "#e8590c"], htm: ["<>", "#e8590c"], css: ["#", "#7950f2"], md: ["md", "#12b886"],
  sh: ["$", "#40c057"], bash: ["$", "#40c057"], txt: ["txt", ""], csv: ["csv", "#40c057"],
  yml: ["yml", "#e64980"], yaml: ["yml", "#e64980"], toml: ["tml", "#868e96"], c: ["c", "#5c7cfa"],
  go: ["go", "#15aabf"], rs: ["rs", "#e8590c"], java: ["jv", "#e03131"], rb: ["rb", "#e03131"],
  png: ["img", "#be4bdb"], jpg: ["img", "#be4bdb"], jpeg: ["img", "#be4bdb"], gif: ["img", "#be4bdb"], svg: ["svg", "#be4bdb"],
};
function iconFor(name, type) {
  const span = document.createElement("span");
  span.className = "icon";
  if (type === "directory") {
    span.innerHTML = '<svg class="i"><use href="#i-folder"/></svg>';
  } else if (type === "symlink") {
    span.innerHTML = '<svg class="i"><use href="#i-link"/></svg>';
  } else {
    const ext = name.includes(".") ? name.split(".").pop().toLowerCase() : "";
    const badge = BADGES[ext];
    if (badge) {
      span.className = "icon badge";
      span.textContent = badge[0];
      if (badge[1]) span.style.color = badge[1];
    } else span.innerHTML = '<svg class="i"><use href="#i-file"/></svg>';
  }
  return span;
}

export class Tree {
  constructor(sandbox, editors) {
    this.sb = sandbox;
    this.editors = editors;
    this.el = document.getElementById("tree");
    this.view = document.getElementById("side-files");
    this.nodes = new Map(); // path -> {path, type, size, row, children (div), loaded, open}
    this.openDirs = new Set(this.loadOpenState());
    this.selected = null;
    this.pending = new Set();
    this.pendingTimer = null;
    this.files = null; // recursive listing cache for quick open
    this.bindToolbar();
    this.bindDrops();
    this.bindKeys();
  }

  loadOpenState() {
    try { return JSON.parse(localStorage.getItem(stateKey("open", this.sb.id)) || "[]"); } catch { return []; }
  }
  saveOpenState() {
    try { localStorage.setItem(stateKey("open", this.sb.id), JSON.stringify([...this.openDirs].slice(0, 200))); } catch { /* ignore */ }
  }

  async init() {
    const root = { path: ROOT, type: "directory", depth: -1, children: this.el, loaded: false, open: true };
    this.nodes.set(ROOT, root);
    this.el.replaceChildren(h("div.tree-msg", {}, "Loading files…"));
    await this.loadDir(root);
    this.watch();
  }

  // --------------------------------------------------------------- rendering
  async loadDir(node) {
    let entries;
    try {
      entries = (await this.sb.list(node.path)).entries || [];
    } catch (err) {
      if (err instanceof ApiError && err.status === 404 && node.path !== ROOT) {
        this.removeNode(node.path);
        return;
      }
      node.children.replaceChildren(h("div.tree-msg.error", { role: "alert" },
        node.path === ROOT ? `Could not list files: ${err.message}` : err.message));
      return;
    }
    entries.sort((a, b) => {
      const da = a.type === "directory" ? 0 : 1;
      const db = b.type === "directory" ? 0 : 1;
      return da - db || a.name.localeCompare(b.name, undefined, { numeric: true, sensitivity: "base" });
    });
    node.loaded = true;
    // forget stale descendants of this directory (one level)
    const keep = new Set(entries.map((e) => e.path || joinPath(node.path, e.name)));
    for (const p of [...this.nodes.keys()]) {
      if (p !== node.path && dirname(p) === node.path && !keep.has(p)) this.forget(p);
    }
    const rows = [];
    // Huge folders (node_modules...) render in pages so the page never freezes.
    const limit = node.showAll ? entries.length : PAGE;
    const hidden = entries.length - limit;
    if (hidden > 0) entries = entries.slice(0, limit);
    for (const entry of entries) {
      const path = entry.path || joinPath(node.path, entry.name);
      let child = this.nodes.get(path);
      if (!child || child.type !== entry.type) {
        child = this.makeNode(path, entry, node.depth + 1);
      } else {
        child.size = entry.size;
      }
      rows.push(child.row);
      if (child.children) rows.push(child.children);
    }
    if (hidden > 0) {
      const more = h("div.tree-empty.tree-more", { style: `padding-left:${22 + (node.depth + 1) * 14}px`, role: "button", tabindex: "0" },
        `${hidden} more items: show all`);
      more.addEventListener("click", () => { node.showAll = true; this.loadDir(node); });
      rows.push(more);
    }
    if (!entries.length) {
      rows.push(h("div.tree-empty", { style: `padding-left:${22 + (node.depth + 1) * 14}px` },
        node.path === ROOT ? (READONLY ? "Empty workspace" : "Empty workspace: create a file, or drop files here") : "empty"));
    }
    node.children.replaceChildren(...rows);
    for (const path of keep) {
      const child = this.nodes.get(path);
      if (child && child.type === "directory" && this.openDirs.has(path) && !child.open) this.expand(child);
    }
  }

  makeNode(path, entry, depth) {
    const isDir = entry.type === "directory";
    const name = basename(path);
    const row = h(`div.tree-row.${isDir ? "dir" : "file"}`, {
      role: "treeitem", draggable: READONLY ? "false" : "true", "data-path": path, title: path,
      style: `padding-left:${6 + depth * 14}px`, "aria-expanded": isDir ? "false" : null,
    },
    h("span.twisty", {}, isDir ? "▶" : ""),
    iconFor(name, entry.type),
    h("span.label", {}, name));
    const node = { path, type: entry.type, size: entry.size, depth, row, loaded: false, open: false,
      children: isDir ? h("div.tree-children", { role: "group", hidden: true }) : null };
    this.nodes.set(path, node);
    row.addEventListener("click", () => this.activateNode(node));
    row.addEventListener("contextmenu", (e) => { e.preventDefault(); this.select(node); this.menu(node, e.clientX, e.clientY); });
    row.addEventListener("dragstart", (e) => {
      if (READONLY) { e.preventDefault(); return; }
      e.dataTransfer.setData(DRAG_TYPE, path);
      e.dataTransfer.setData("text/plain", path);
      e.dataTransfer.effectAllowed = "move";
    });
    return node;
  }

  forget(path) {
    for (const p of [...this.nodes.keys()]) {
      if (p === path || p.startsWith(path + "/")) {
        const n = this.nodes.get(p);
        n.row?.remove();
        n.children?.remove();
        this.nodes.delete(p);
      }
    }
  }

  removeNode(path) {
    this.forget(path);
    this.openDirs.delete(path);
  }

  select(node) {
    this.selected?.row?.classList.remove("selected");
    this.selected = node;
    node.row?.classList.add("selected");
  }

  activateNode(node) {
    this.select(node);
    if (node.type === "directory") this.toggleDir(node);
    else this.editors.open(node.path, { size: node.size });
  }

  async expand(node) {
    node.open = true;
    node.row.classList.add("open");
    node.row.setAttribute("aria-expanded", "true");
    node.children.hidden = false;
    this.openDirs.add(node.path);
    this.saveOpenState();
    if (!node.loaded) {
      node.children.replaceChildren(h("div.tree-empty", { style: `padding-left:${22 + (node.depth + 1) * 14}px` }, "loading…"));
      await this.loadDir(node);
    }
  }

  collapse(node) {
    node.open = false;
    node.row.classList.remove("open");
    node.row.setAttribute("aria-expanded", "false");
    node.children.hidden = true;
    this.openDirs.delete(node.path);
    this.saveOpenState();
  }

  toggleDir(node) { node.open ? this.collapse(node) : this.expand(node); }

  collapseAll() {
    for (const n of this.nodes.values()) if (n.type === "directory" && n.path !== ROOT && n.open) this.collapse(n);
  }

  // Refresh a directory that is on screen (after an action or a watch event).
  async refresh(dir) {
    const node = this.nodes.get(dir);
    if (!node || !node.loaded) return;
    await this.loadDir(node);
    this.files = null;
  }

  async refreshAll() {
    const dirs = [...this.nodes.values()].filter((n) => n.type === "directory" && n.loaded);
    for (const d of dirs) if (this.nodes.has(d.path)) await this.loadDir(d);
    this.files = null;
  }

  // Where "new file" goes: the selected directory, or the selected file's directory.
  targetDir() {
    const n = this.selected;
    if (!n) return ROOT;
    return n.type === "directory" ? n.path : dirname(n.path);
  }

  // --------------------------------------------------------------- actions
  async newFile(dir = this.targetDir()) {
    if (READONLY) return refuse("Creating files");
    const name = await prompt({ title: "New file", label: `In ${dir}`, help: "A name, or a relative path like src/app.py", ok: "Create" });
    if (!name) return;
    const path = joinPath(dir, name);
    try {
      await this.sb.write(path, "");
      await this.reveal(path);
      await this.editors.open(path, { size: 0 });
    } catch (err) { toast(`Could not create ${name}: ${err.message}`, "error"); }
  }

  async newFolder(dir = this.targetDir()) {
    if (READONLY) return refuse("Creating folders");
    const name = await prompt({ title: "New folder", label: `In ${dir}`, ok: "Create" });
    if (!name) return;
    const path = joinPath(dir, name);
    try {
      await this.sb.mkdir(path);
      await this.reveal(path);
    } catch (err) { toast(`Could not create ${name}: ${err.message}`, "error"); }
  }

  async rename(node) {
    if (READONLY) return refuse("Renaming");
    const name = basename(node.path);
    const dot = name.lastIndexOf(".");
    const value = await prompt({ title: "Rename", label: node.path, value: name, ok: "Rename", select: [0, dot > 0 ? dot : name.length] });
    if (!value || value === name) return;
    const dest = value.startsWith("/") ? value : joinPath(dirname(node.path), value);
    await this.move(node.path, dest);
  }

  async move(source, destination) {
    if (READONLY) return refuse("Moving files");
    if (source === destination) return;
    if (destination.startsWith(source + "/")) { toast("A folder cannot move into itself.", "error"); return; }
    try {
      await this.sb.move(source, destination);
      this.editors.renamed(source, destination);
      if (this.openDirs.has(source)) { this.openDirs.delete(source); this.openDirs.add(destination); }
      this.forget(source);
      await this.refresh(dirname(source));
      await this.reveal(destination);
      status(`Moved ${basename(source)} to ${dirname(destination)}`);
    } catch (err) { toast(`Could not move ${basename(source)}: ${err.message}`, "error"); }
  }

  async remove(node) {
    if (READONLY) return refuse("Deleting");
    const isDir = node.type === "directory";
    const ok = await confirmDialog({ title: `Delete ${basename(node.path)}?`, text: isDir ? "The folder and everything in it is deleted for good." : "The file is deleted for good.", ok: "Delete" });
    if (!ok) return;
    try {
      await this.sb.remove(node.path, isDir);
      this.editors.deleted(node.path);
      this.removeNode(node.path);
      await this.refresh(dirname(node.path));
    } catch (err) { toast(`Could not delete ${basename(node.path)}: ${err.message}`, "error"); }
  }

  download(node) {
    if (node.type === "directory") transfers.download(this.sb.archiveUrl(node.path), `${basename(node.path)}.tar.gz`);
    else transfers.download(this.sb.contentUrl(node.path), basename(node.path));
  }

  // Upload {file, path relative to dir} items (and make the empty folders `dirs`).
  async upload(dir, files, dirs = []) {
    if (READONLY) return refuse("Uploading");
    if (!files.length && !dirs.length) return;
    const result = await transfers.upload(this.sb, dir, files, dirs);
    const node = this.nodes.get(dir);
    if (node && node.type === "directory" && node.path !== ROOT && !node.open) await this.expand(node);
    await this.refresh(dir);
    if (result.state === "done" && files.length === 1 && !dirs.length) await this.reveal(result.paths[0]);
  }

  // Make a path visible: expand its parents, refresh, select it.
  async reveal(path) {
    const parts = [];
    for (let d = dirname(path); d.length > ROOT.length && d.startsWith(ROOT); d = dirname(d)) parts.unshift(d);
    await this.refresh(ROOT);
    for (const d of parts) {
      const n = this.nodes.get(d);
      if (n && !n.open) await this.expand(n);
      else if (n) await this.refresh(d);
    }
    const node = this.nodes.get(path);
    if (node) { this.select(node); node.row.scrollIntoView({ block: "nearest" }); }
  }

  menu(node, x, y) {
    const isDir = node.type === "directory";
    const dir = isDir ? node.path : dirname(node.path);
    if (READONLY) {
      contextMenu(x, y, [
        ...(isDir ? [] : [{ label: "Open", run: () => this.editors.open(node.path, { size: node.size }) }]),
        { label: isDir ? "Download as .tar.gz" : "Download", run: () => this.download(node) },
        { label: "Copy path", run: () => navigator.clipboard?.writeText(node.path) },
      ]);
      return;
    }
    contextMenu(x, y, [
      ...(isDir ? [] : [{ label: "Open", run: () => this.editors.open(node.path, { size: node.size }) }]),
      { label: "New file…", run: () => this.newFile(dir) },
      { label: "New folder…", run: () => this.newFolder(dir) },
      { label: "Upload files here…", run: () => this.pickUpload(dir) },
      { label: "Upload a folder here…", run: () => this.pickUpload(dir, true) },
      "-",
      { label: "Rename…", run: () => this.rename(node) },
      { label: isDir ? "Download as .tar.gz" : "Download", run: () => this.download(node) },
      { label: "Copy path", run: () => navigator.clipboard?.writeText(node.path) },
      "-",
      { label: "Delete", danger: true, run: () => this.remove(node) },
    ]);
  }

  pickUpload(dir, folder = false) {
    if (READONLY) return refuse("Uploading");
    this.uploadTarget = dir;
    document.getElementById(folder ? "upload-folder-input" : "upload-input").click();
  }

  bindToolbar() {
    for (const input of [document.getElementById("upload-input"), document.getElementById("upload-folder-input")]) {
      input?.addEventListener("change", () => {
        const files = transfers.chosenItems(input.files);
        input.value = "";
        this.upload(this.uploadTarget || this.targetDir(), files);
        this.uploadTarget = null;
      });
    }
    for (const b of document.querySelectorAll("[data-tree-action]")) {
      b.addEventListener("click", () => {
        const a = b.dataset.treeAction;
        if (a === "new-file") this.newFile();
        else if (a === "new-folder") this.newFolder();
        else if (a === "upload") this.pickUpload(this.targetDir());
        else if (a === "refresh") this.refreshAll();
        else if (a === "collapse") this.collapseAll();
      });
    }
    this.el.addEventListener("contextmenu", (e) => {
      if (e.target.closest(".tree-row")) return;
      e.preventDefault();
      const downloadAll = { label: "Download workspace as .tar.gz", run: () => transfers.download(this.sb.archiveUrl(ROOT), "workspace.tar.gz") };
      if (READONLY) { contextMenu(e.clientX, e.clientY, [downloadAll]); return; }
      contextMenu(e.clientX, e.clientY, [
        { label: "New file…", run: () => this.newFile(ROOT) },
        { label: "New folder…", run: () => this.newFolder(ROOT) },
        { label: "Upload files here…", run: () => this.pickUpload(ROOT) },
        { label: "Upload a folder here…", run: () => this.pickUpload(ROOT, true) },
        downloadAll,
      ]);
    });
  }

  bindKeys() {
    this.el.addEventListener("keydown", (e) => {
      const rows = [...this.el.querySelectorAll(".tree-row")].filter((r) => r.offsetParent !== null);
      const node = this.selected;
      const i = node ? rows.indexOf(node.row) : -1;
      const pick = (row) => { if (row) { this.select(this.nodes.get(row.dataset.path)); row.scrollIntoView({ block: "nearest" }); } };
      if (e.key === "ArrowDown") { e.preventDefault(); pick(rows[i + 1] || rows[0]); }
      else if (e.key === "ArrowUp") { e.preventDefault(); pick(rows[i - 1] || rows[rows.length - 1]); }
      else if (!node) return;
      else if (e.key === "Enter") { e.preventDefault(); this.activateNode(node); }
      else if (e.key === "ArrowRight" && node.type === "directory" && !node.open) this.expand(node);
      else if (e.key === "ArrowLeft" && node.type === "directory" && node.open) this.collapse(node);
      else if (e.key === "F2") { e.preventDefault(); this.rename(node); }
      else if (e.key === "Delete") { e.preventDefault(); this.remove(node); }
    });
  }

  dropDir(target) {
    const row = target.closest?.(".tree-row");
    if (!row) return ROOT;
    const node = this.nodes.get(row.dataset.path);
    if (!node) return ROOT;
    return node.type === "directory" ? node.path : dirname(node.path);
  }

  bindDrops() {
    let highlighted = null;
    const clear = () => { highlighted?.classList.remove("drop-target"); highlighted = null; this.view.classList.remove("dragover"); };
    if (READONLY) {
      // Nothing lands here; a dropped file must not navigate the page away either.
      this.view.addEventListener("dragover", (e) => {
        if (![...e.dataTransfer.types].includes("Files")) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = "none";
      });
      this.view.addEventListener("drop", (e) => {
        e.preventDefault();
        if (e.dataTransfer.files.length) refuse("Uploading");
      });
      return;
    }
    this.view.addEventListener("dragover", (e) => {
      const types = [...e.dataTransfer.types];
      const internal = types.includes(DRAG_TYPE);
      if (!internal && !types.includes("Files")) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = internal ? "move" : "copy";
      const dir = this.dropDir(e.target);
      const row = dir === ROOT ? null : this.nodes.get(dir)?.row;
      if (row !== highlighted) { highlighted?.classList.remove("drop-target"); highlighted = row; row?.classList.add("drop-target"); }
      this.view.classList.toggle("dragover", !internal);
    });
    this.view.addEventListener("dragleave", (e) => { if (!this.view.contains(e.relatedTarget)) clear(); });
    this.view.addEventListener("drop", (e) => {
      e.preventDefault();
      const dir = this.dropDir(e.target);
      clear();
      const source = e.dataTransfer.getData(DRAG_TYPE);
      if (source) {
        if (dirname(source) !== dir) this.move(source, joinPath(dir, basename(source)));
      } else if (e.dataTransfer.files.length) {
        transfers.droppedItems(e.dataTransfer).then(
          ({ files, dirs }) => this.upload(dir, files, dirs),
          (err) => toast(`Could not read the dropped files: ${err.message}`, "error"));
      }
    });
  }

  // --------------------------------------------------------------- live updates
  schedule(dir) {
    this.pending.add(dir);
    clearTimeout(this.pendingTimer);
    this.pendingTimer = setTimeout(async () => {
      const dirs = [...this.pending];
      this.pending.clear();
      for (const d of dirs) await this.refresh(d);
    }, 150);
  }

  onChange(event) {
    if (!event || !event.path) return;
    this.files = null;
    document.dispatchEvent(new CustomEvent("fschange", { detail: event }));
    this.schedule(dirname(event.path));
    if (event.from) this.schedule(dirname(event.from));
    // Event types as the watch API sends them: create, modify, delete, move.
    if (event.type === "delete") this.editors.deleted(event.path);
    else if (!event.is_dir && (event.type === "modify" || event.type === "create")) this.editors.changedOnDisk(event.path);
    if (event.type === "move" && event.from) this.editors.renamed(event.from, event.path);
  }

  // A hidden browser tab lets go of its watch stream (browsers allow only a few
  // connections per host), and catches up when it is shown again.
  async visible() {
    if (!document.hidden) return;
    await new Promise((resolve) => {
      const on = () => { if (!document.hidden) { document.removeEventListener("visibilitychange", on); resolve(); } };
      document.addEventListener("visibilitychange", on);
    });
    await awake(this.sb);
    await this.refreshAll().catch(() => {});
  }

  async watch() {
    let delay = 1000;
    for (;;) {
      await this.visible();
      if (accessEnded) return;
      const controller = new AbortController();
      const onHide = () => { if (document.hidden) controller.abort(); };
      document.addEventListener("visibilitychange", onHide);
      const onEnded = () => controller.abort(); // a view taken away stops following
      document.addEventListener("accessended", onEnded);
      try {
        const response = await raw("GET", this.sb.base + "/files/watch", {
          query: { path: ROOT, recursive: 1 }, headers: { Accept: "text/event-stream" }, signal: controller.signal,
        });
        delay = 1000;
        this.setWatching(true);
        await readSSE(response, (name, data) => { if (name === "change") this.onChange(data); });
      } catch (err) {
        this.setWatching(false);
        if (READONLY && err instanceof ApiError && err.status === 404) {
          endAccess();
          return;
        }
        if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
          status("Live file updates are not available on this server: polling instead");
          this.poll();
          return;
        }
      } finally {
        document.removeEventListener("visibilitychange", onHide);
        document.removeEventListener("accessended", onEnded);
      }
      if (accessEnded) { this.setWatching(false); return; }
      this.setWatching(false);
      if (controller.signal.aborted) continue; // hidden: wait for the tab to come back
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
      await awake(this.sb); // a viewer does not wake a sandbox that went to sleep
      await this.refreshAll().catch(() => {});
    }
  }

  // Others (the read-only banner) show whether changes arrive live.
  setWatching(on) {
    if (this.watching === on) return;
    this.watching = on;
    document.dispatchEvent(new CustomEvent("watchstate", { detail: { live: on, hidden: document.hidden } }));
  }

  poll() {
    setInterval(() => { if (!document.hidden) this.refreshAll().catch(() => {}); }, 4000);
  }

  // --------------------------------------------------------------- quick open
  async allFiles() {
    if (this.files) return this.files;
    const { entries } = await this.sb.list(ROOT, true);
    this.files = (entries || [])
      .filter((e) => e.type !== "directory" && !/\/(\.git|node_modules|__pycache__|\.venv)\//.test(e.path))
      .slice(0, 20000);
    return this.files;
  }
}
