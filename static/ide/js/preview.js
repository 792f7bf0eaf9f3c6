// Preview pane: ports that programs listen on, offered for preview; an embedded
// page with its own address bar, reload, open in a new tab, and unexpose (its links
// stop working at once). A port opened here is private (the owner and those who may
// look at the sandbox); sharing it is a separate act in the share panel: a level,
// an optional expiry, the sentence saying who can open it, a short link and its QR
// code, and "Stop sharing", which revokes the link at once.
// Read-only (someone else's workspace): the owner's exposed ports only, to open here
// or in a new tab; ports that listen unshared are named, never exposed from here.
import { h } from "./api.js";
import { isHidden, setHidden } from "./layout.js";
import { accessEnded, endAccess, isAsleep, READONLY } from "./readonly.js";
import { confirmDialog, copyText, status, toast } from "./ui.js";

export class Preview {
  constructor(sandbox) {
    this.sb = sandbox;
    this.exposed = [];
    this.listening = [];
    this.current = null; // {port, url}
    this.available = true;
    this.frame = document.getElementById("preview-frame");
    this.address = document.getElementById("preview-address");
    this.strip = document.getElementById("port-strip");
    this.empty = document.getElementById("preview-empty");
    this.sharePanel = document.getElementById("preview-share");
    document.getElementById("preview-reload").addEventListener("click", () => this.reload());
    document.getElementById("preview-open").addEventListener("click", () => this.openTab());
    document.getElementById("preview-copy").addEventListener("click", () => this.copy());
    document.getElementById("preview-close").addEventListener("click", () => this.unexpose());
    this.address.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); this.navigate(this.address.value.trim()); }
    });
    this.renderStrip();
  }

  start() {
    this.poll();
    this.timer = setInterval(() => {
      if (accessEnded) clearInterval(this.timer);
      else if (!document.hidden && this.available && !isAsleep()) this.poll(); // listing wakes it
    }, 3000);
  }

  async poll() {
    try {
      const data = await this.sb.ports();
      this.exposed = data.exposed || [];
      // Ephemeral ports (kernels, language servers) are not offered unless shared.
      this.listening = (data.listening || []).map((p) => (typeof p === "object" ? p.port : p))
        .filter((p) => p < 32768);
      this.available = true;
      this.error = null;
      // A viewer's pane opens by itself the first time there is something to see.
      if (READONLY && !this.autoOpened && (this.exposed.length || this.listening.length)) {
        this.autoOpened = true;
        if (isHidden("preview")) setHidden("preview", false);
      }
      if (READONLY && this.current) this.followShared();
      else if (this.current) this.renderShare();
    } catch (err) {
      if (READONLY && err.status === 404) {
        endAccess(); // the view was taken away
        this.error = "No longer shared with you.";
      } else if (err.status === 404 && err.code !== "sandbox_not_found") {
        this.available = false;
        this.error = "Previews are not available on this server yet.";
        // check again now and then: the feature may be deployed later
        setTimeout(() => { this.available = true; }, 30000);
      } else this.error = err.message;
    }
    this.renderStrip();
  }

  renderStrip() {
    if (READONLY) { this.renderViewerStrip(); return; }
    const ports = new Set([...this.listening, ...this.exposed.map((e) => e.port)]);
    const chips = [...ports].sort((a, b) => a - b).map((port) => {
      const shared = this.exposed.some((e) => e.port === port);
      const live = this.listening.includes(port);
      const chip = h(`button.port-chip${shared ? ".shared" : ""}${this.current?.port === port ? ".active" : ""}`, {
        type: "button", "data-port": port,
        title: `${live ? "Listening" : "Not listening now"}${shared ? " · shared" : ""}: click to preview`,
        style: live ? null : "opacity:.6",
      }, h("span.dot"), String(port));
      chip.addEventListener("click", () => this.openPort(port));
      return chip;
    });
    if (this.error) chips.unshift(h("span.muted", { role: "status" }, this.error));
    else if (!chips.length) chips.push(h("span.muted", {}, "No ports open yet: start a server in a terminal."));
    else chips.unshift(h("span.muted", {}, "Ports:"));
    this.strip.replaceChildren(...chips);
  }

  // Read-only: a chip per exposed port; those listening unshared are only named.
  renderViewerStrip() {
    const shared = [...this.exposed].sort((a, b) => a.port - b.port).map(({ port, private: own }) => {
      const live = this.listening.includes(port);
      const chip = h(`button.port-chip.shared${this.current?.port === port ? ".active" : ""}`, {
        type: "button", "data-port": port,
        title: `${live ? "Listening" : "Not listening now"} · shared${own ? " privately" : ""}: click to preview`,
        style: live ? null : "opacity:.6",
      }, h("span.dot"), String(port));
      chip.addEventListener("click", () => this.openPort(port));
      return chip;
    });
    const unshared = this.listening.filter((p) => !this.exposed.some((e) => e.port === p)).sort((a, b) => a - b);
    const items = [];
    if (this.error) items.push(h("span.muted", { role: "status" }, this.error));
    else if (shared.length) items.push(h("span.muted", {}, "Shared:"), ...shared);
    else if (!unshared.length) items.push(h("span.muted", {}, "Nothing shared yet: ports the owner exposes show up here."));
    if (!this.error && unshared.length) {
      items.push(h("span.port-note.muted", { role: "note" }, unsharedText(unshared)));
    }
    this.strip.replaceChildren(...items);
  }

  async openPort(port, path = "/") {
    if (READONLY) return this.openShared(port, path);
    if (isHidden("preview")) setHidden("preview", false);
    let entry = this.exposed.find((e) => e.port === port);
    try {
      if (!entry) {
        status(`Opening port ${port}…`);
        entry = await this.sb.expose(port, "private");
        this.exposed = [...this.exposed.filter((e) => e.port !== port), entry];
        status(`Port ${port} is private: only you and people who may look at this sandbox can open it`);
      }
    } catch (err) {
      toast(`Could not preview port ${port}: ${err.message}`, "error");
      return;
    }
    const base = entry.url.replace(/\/$/, "");
    this.current = { port, url: entry.url };
    this.show(base + (path.startsWith("/") ? path : `/${path}`), entry);
    this.renderStrip();
    this.renderShare();
  }

  entry() {
    return this.current && this.exposed.find((e) => e.port === this.current.port);
  }

  // The share panel of the open port: level, expiry, who can open it, link and QR.
  renderShare() {
    const entry = READONLY ? null : this.entry();
    this.sharePanel.hidden = !entry;
    if (!entry) { this.sharePanel.replaceChildren(); return; }
    const key = [entry.port, entry.token, entry.visibility, entry.expires_at, entry.ended].join("|");
    if (this.shareKey === key) return; // unchanged: keep the open menus as they are
    this.shareKey = key;
    const level = h("select", { id: "preview-share-level", "aria-label": "Who can open this port" },
      ...LEVELS.map(([value, label]) => h("option", { value, selected: value === entry.visibility }, label)));
    level.addEventListener("change", () => this.setShare({ visibility: level.value, expires_in: null }));
    const running = entry.expires_at && !entry.ended
      ? [["keep", `until ${new Date(entry.expires_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`]] : [];
    const expiry = h("select", { id: "preview-share-expiry", "aria-label": "For how long", disabled: entry.visibility === "private" },
      ...[...running, ...EXPIRIES].map(([value, label]) => h("option", { value }, label)));
    expiry.value = running.length ? "keep" : "";
    expiry.addEventListener("change", () => {
      if (expiry.value !== "keep") this.setShare({ expires_in: expiry.value ? Number(expiry.value) : null });
    });
    const link = h("a.share-link", { id: "preview-share-link", href: entry.share_url, target: "_blank", rel: "noopener" },
      entry.share_url.replace(/^https?:\/\//, ""));
    const copy = h("button.btn.small", { type: "button", onclick: () => this.copy() }, "Copy link");
    const revoke = entry.visibility === "private" ? null
      : h("button.btn.small.danger", { id: "preview-share-revoke", type: "button", onclick: () => this.setShare({ visibility: "private", expires_in: null }) }, "Stop sharing");
    const qr = h("img.share-qr", {
      id: "preview-share-qr",
      src: `${this.sb.portQrUrl(entry.port)}?v=${encodeURIComponent(entry.token)}`,
      alt: `QR code of ${entry.share_url}`, width: 112, height: 112,
    });
    const state = shareState(entry);
    this.sharePanel.replaceChildren(
      h("div.share-row", {}, h("label", {}, "Shared with ", level), h("label", {}, " for ", expiry)),
      h("p.share-audience", { id: "preview-share-audience", role: "status" }, entry.audience),
      ...(state ? [h("p.share-state.muted", { id: "preview-share-state" }, state)] : []),
      h("div.share-body", {}, qr, h("div.share-link-box", {}, link, h("div", {}, copy, " ", revoke))),
    );
  }

  async setShare(body) {
    const entry = this.entry();
    if (!entry) return;
    try {
      const updated = await this.sb.sharePort(entry.port, body);
      this.exposed = [...this.exposed.filter((e) => e.port !== entry.port), updated];
      status(`Port ${entry.port}: ${updated.audience}`);
      if ((updated.visibility === "public") !== (entry.visibility === "public")) {
        this.show(this.address.value || updated.url, updated); // a login is now needed, or no more
      }
    } catch (err) {
      toast(`Could not change who can open port ${entry.port}: ${err.message}`, "error");
    }
    this.shareKey = null;
    this.renderShare();
    this.renderStrip();
  }

  // Read-only: open what the owner shared; sharing a port is the owner's call.
  openShared(port, path = "/") {
    const entry = this.exposed.find((e) => e.port === port);
    if (!entry) {
      const open = this.listening.includes(port);
      toast(open ? `${unsharedText([port])}.` : `Port ${port} is not shared — only its owner can expose it.`, "info");
      return false;
    }
    if (isHidden("preview")) setHidden("preview", false);
    this.current = { port, url: entry.url };
    const url = entry.url.replace(/\/$/, "") + (path.startsWith("/") ? path : `/${path}`);
    if (entry.private) this.showPrivate(port, url);
    else this.show(url);
    this.renderStrip();
    return true;
  }

  // A private preview checks the viewer's login on the IDE's origin and then sets its
  // own cookie, which a browser refuses inside a pane of another site (the preview
  // domain usually is one): it opens in a tab of its own instead.
  showPrivate(port, url) {
    this.emptyDefault ??= [...this.empty.childNodes];
    const open = h("button.btn.primary", { type: "button", id: "preview-private-open" }, "Open in a new tab");
    open.addEventListener("click", () => this.openTab());
    this.empty.replaceChildren(
      h("p", {}, h("strong", {}, `Port ${port} is shared privately`)),
      h("p.muted", {}, "It opens in a new tab, where your login is checked."),
      h("p", {}, open),
    );
    this.address.value = url;
    this.frame.src = "about:blank";
    this.frame.hidden = true;
    this.empty.hidden = false;
  }

  // Read-only: the owner unexposed the open port (or exposed it again: a new URL).
  followShared() {
    const entry = this.exposed.find((e) => e.port === this.current.port);
    if (entry && entry.url !== this.current.url) this.openShared(entry.port);
    if (entry) return;
    status(`Port ${this.current.port} is no longer shared`);
    if (this.emptyDefault) this.empty.replaceChildren(...this.emptyDefault);
    this.current = null;
    this.frame.src = "about:blank";
    this.frame.hidden = true;
    this.empty.hidden = false;
    this.address.value = "";
  }

  // A port that is not public is opened through the IDE's own sign-in, which sends
  // the frame on to the preview with a ticket for it.
  show(url, entry = null) {
    if (this.emptyDefault) this.empty.replaceChildren(...this.emptyDefault);
    this.address.value = url;
    this.frame.hidden = false;
    this.empty.hidden = true;
    const viaLogin = entry && entry.visibility !== "public" && url.startsWith(entry.url);
    this.frame.src = viaLogin ? `/preview-auth/?next=${encodeURIComponent(url)}` : url;
  }

  navigate(value) {
    if (!value) return;
    let url = value;
    const entry = this.exposed.find((e) => value.startsWith(e.url));
    if (entry) { this.show(value, entry); return; }
    if (/^\d+(\/.*)?$/.test(value)) { // "8000/path": a port number
      const [port, ...rest] = value.split("/");
      this.openPort(Number(port), "/" + rest.join("/"));
      return;
    }
    if (!/^https?:\/\//i.test(url)) url = "http://" + url;
    this.show(url);
  }

  reload() {
    if (this.frame.hidden || !this.frame.src) return;
    const src = this.frame.src;
    this.frame.src = "about:blank";
    requestAnimationFrame(() => { this.frame.src = src; });
  }

  openTab() {
    const url = this.address.value.trim();
    if (url) window.open(url, "_blank", "noopener");
  }

  async copy() {
    const entry = this.entry();
    if (!entry) { toast("Open a port first: its share link is copied.", "error"); return; }
    const ok = await copyText(entry.share_url);
    toast(ok ? `Share link copied. ${entry.audience}` : `Copy this link: ${entry.share_url}`, ok ? "success" : "info");
  }

  async unexpose() {
    if (READONLY || !this.current) return; // the button is not there for a viewer
    const { port } = this.current;
    const ok = await confirmDialog({ title: `Close port ${port}?`, text: "Its preview and share links stop working at once, for everyone.", ok: "Unexpose" });
    if (!ok) return;
    try {
      await this.sb.unexpose(port);
      this.exposed = this.exposed.filter((e) => e.port !== port);
      this.current = null;
      this.frame.src = "about:blank";
      this.frame.hidden = true;
      this.empty.hidden = false;
      this.address.value = "";
      this.renderStrip();
      this.renderShare();
      status(`Port ${port} is closed: its links no longer work`);
    } catch (err) {
      toast(`Could not unexpose port ${port}: ${err.message}`, "error");
    }
  }
}

const LEVELS = [
  ["private", "only me (private)"],
  ["course", "my course"],
  ["authenticated", "anyone logged in"],
  ["public", "anyone with the link"],
];
const EXPIRIES = [["", "no end"], ["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"]];

// When a share ends, or why it did.
function shareState(entry) {
  if (entry.ended === "expired") return "The shared link expired: it is private again.";
  if (entry.ended === "revoked") return "Sharing was stopped: the link now answers that it was revoked.";
  if (entry.expires_at) return `Shared until ${new Date(entry.expires_at).toLocaleString()}.`;
  return "";
}

function unsharedText(ports) {
  if (ports.length === 1) return `Port ${ports[0]} is open but not shared — only its owner can expose it`;
  return `Ports ${ports.slice(0, -1).join(", ")} and ${ports.at(-1)} are open but not shared — only their owner can expose them`;
}
