// Command palette (Ctrl/Cmd-Shift-P, Ctrl-K) and quick open (Ctrl/Cmd-P):
// one fuzzy list; a leading ">" switches from files to commands.
import { h } from "./api.js";

// Fuzzy subsequence match: returns {score, marks} or null. Consecutive letters,
// word starts and matches in the file name score higher.
export function fuzzy(query, text) {
  if (!query) return { score: 0, marks: [] };
  const q = query.toLowerCase();
  const t = text.toLowerCase();
  const marks = [];
  let score = 0;
  let ti = 0;
  let prev = -2;
  const nameStart = t.lastIndexOf("/") + 1;
  for (const ch of q) {
    if (ch === " ") continue;
    const i = t.indexOf(ch, ti);
    if (i < 0) return null;
    score += 1;
    if (i === prev + 1) score += 3;
    if (i === 0 || "/_-. ".includes(t[i - 1])) score += 2;
    if (i >= nameStart) score += 1;
    marks.push(i);
    prev = i;
    ti = i + 1;
  }
  score -= text.length / 200;
  return { score, marks };
}

function highlight(text, marks) {
  const out = [];
  let last = 0;
  for (const m of marks) {
    if (m > last) out.push(text.slice(last, m));
    out.push(h("mark", {}, text[m]));
    last = m + 1;
  }
  out.push(text.slice(last));
  return out;
}

export class Palette {
  constructor({ commands, files, openFile }) {
    this.commands = commands; // () => [{title, hint, run}]
    this.files = files;       // async () => [{path}]
    this.openFile = openFile;
    this.el = document.getElementById("palette");
    this.input = document.getElementById("palette-input");
    this.list = document.getElementById("palette-list");
    this.items = [];
    this.index = 0;
    this.fileList = [];
    this.input.addEventListener("input", () => this.render());
    this.input.addEventListener("keydown", (e) => this.key(e));
    // While it is open the palette keeps the keyboard: an editor or a terminal that
    // finishes loading behind it must not catch what is being typed.
    this.input.addEventListener("blur", () => {
      if (this.isOpen()) requestAnimationFrame(() => { if (this.isOpen()) this.input.focus(); });
    });
    this.el.addEventListener("pointerdown", (e) => { if (e.target === this.el) this.close(); });
  }

  isOpen() { return !this.el.hidden; }

  async open(mode) {
    this.returnFocus = document.activeElement;
    this.el.hidden = false;
    this.input.value = mode === "commands" ? ">" : "";
    this.input.placeholder = mode === "commands" ? "Type a command" : "Search files by name (type > for commands)";
    this.input.focus();
    this.render();
    if (mode !== "commands") {
      this.list.replaceChildren(h("li.empty", {}, "Listing files…"));
      try {
        this.fileList = await this.files();
      } catch (err) {
        this.fileList = [];
        this.list.replaceChildren(h("li.empty", {}, `Could not list files: ${err.message}`));
        return;
      }
      this.render();
    }
  }

  close(restore = true) {
    this.el.hidden = true;
    if (restore && this.returnFocus?.focus) this.returnFocus.focus();
  }

  render() {
    const value = this.input.value;
    let results;
    if (value.startsWith(">")) {
      const q = value.slice(1).trim();
      results = this.commands()
        .map((c) => ({ c, m: fuzzy(q, c.title) }))
        .filter((x) => x.m)
        .sort((a, b) => b.m.score - a.m.score)
        .slice(0, 50)
        .map(({ c, m }) => ({ label: highlight(c.title, m.marks), hint: c.hint, run: c.run }));
    } else {
      const q = value.trim().replace(/^\/workspace\/?/, "");
      results = this.fileList
        .map((f) => ({ f, rel: f.path.replace(/^\/workspace\//, ""), }))
        .map((x) => ({ ...x, m: fuzzy(q, x.rel) }))
        .filter((x) => x.m)
        .sort((a, b) => b.m.score - a.m.score || a.rel.length - b.rel.length)
        .slice(0, 60)
        .map(({ f, rel, m }) => ({
          label: highlight(rel, m.marks), run: () => this.openFile(f.path, f.size), testid: f.path,
        }));
    }
    this.items = results;
    this.index = 0;
    if (!results.length) {
      this.list.replaceChildren(h("li.empty", {}, value.startsWith(">") ? "No matching command" : (this.fileList.length ? "No matching file" : "No files yet")));
      return;
    }
    this.list.replaceChildren(...results.map((r, i) => {
      const li = h(`li${i === 0 ? ".active" : ""}`, { role: "option", "data-path": r.testid || null },
        h("span", {}, ...r.label), r.hint ? h("span.hint", {}, h("kbd", {}, r.hint)) : null);
      li.addEventListener("pointerenter", () => this.select(i));
      li.addEventListener("click", () => this.choose(i));
      return li;
    }));
  }

  select(i) {
    const lis = this.list.children;
    lis[this.index]?.classList.remove("active");
    this.index = Math.max(0, Math.min(i, this.items.length - 1));
    lis[this.index]?.classList.add("active");
    lis[this.index]?.scrollIntoView({ block: "nearest" });
  }

  choose(i) {
    const item = this.items[i];
    if (!item) return;
    this.close(false);
    item.run();
  }

  key(e) {
    if (e.key === "ArrowDown") { e.preventDefault(); this.select(this.index + 1); }
    else if (e.key === "ArrowUp") { e.preventDefault(); this.select(this.index - 1); }
    else if (e.key === "Enter") { e.preventDefault(); this.choose(this.index); }
    else if (e.key === "Escape") { e.preventDefault(); this.close(); }
  }
}
