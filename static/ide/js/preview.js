// Preview pane: ports that programs listen on, offered for preview; an embedded
// page with its own address bar, reload, open in a new tab, copy the share link,
// and unexpose (the share link stops working at once).
import { h } from "./api.js";
import { isHidden, setHidden } from "./layout.js";
import { READONLY, refuse } from "./readonly.js";
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
    this.timer = setInterval(() => { if (!document.hidden && this.available) this.poll(); }, 3000);
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
    } catch (err) {
      if (err.status === 404 && err.code !== "sandbox_not_found") {
        this.available = false;
        this.error = "Previews are not available on this server yet.";
        // check again now and then: the feature may be deployed later
        setTimeout(() => { this.available = true; }, 30000);
      } else this.error = err.message;
    }
    this.renderStrip();
  }

  renderStrip() {
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

  async openPort(port, path = "/") {
    if (READONLY) return refuse("Previewing a port"); // sharing a port is the owner's call
    if (isHidden("preview")) setHidden("preview", false);
    let entry = this.exposed.find((e) => e.port === port);
    try {
      if (!entry) {
        status(`Sharing port ${port}…`);
        entry = await this.sb.expose(port);
        this.exposed = [...this.exposed.filter((e) => e.port !== port), entry];
        status(`Port ${port} is shared: anyone with its link can open it`);
      }
    } catch (err) {
      toast(`Could not preview port ${port}: ${err.message}`, "error");
      return;
    }
    const base = entry.url.replace(/\/$/, "");
    this.current = { port, url: entry.url };
    this.show(base + (path.startsWith("/") ? path : `/${path}`));
    this.renderStrip();
  }

  show(url) {
    this.address.value = url;
    this.frame.hidden = false;
    this.empty.hidden = true;
    this.frame.src = url;
  }

  navigate(value) {
    if (!value) return;
    let url = value;
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
    if (!this.current) { toast("Open a port first: its share link is copied.", "error"); return; }
    const ok = await copyText(this.current.url);
    toast(ok ? `Share link copied: anyone with it can open port ${this.current.port}.` : `Copy this link: ${this.current.url}`, ok ? "success" : "info");
  }

  async unexpose() {
    if (READONLY) return refuse("Unexposing");
    if (!this.current) return;
    const { port } = this.current;
    const ok = await confirmDialog({ title: `Stop sharing port ${port}?`, text: "The preview link stops working at once, for everyone.", ok: "Unexpose" });
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
      status(`Port ${port} is no longer shared`);
    } catch (err) {
      toast(`Could not unexpose port ${port}: ${err.message}`, "error");
    }
  }
}
