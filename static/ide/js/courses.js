// Courses: the list page and a course page (the teacher's roster or a student's view),
// both clients of the public API.
import { call, h } from "./api.js";
import { ago, confirmDialog, flash } from "./page.js";
import { buildTemplate } from "./builds.js";
import { postWithProgress, ProgressView } from "./operations.js";
import { copyText } from "./ui.js";

async function busy(button, label, work) {
  const old = button.textContent;
  button.disabled = true;
  button.textContent = label;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.textContent = old;
  }
}

// ------------------------------------------------------------------ the list page

async function listPage(root) {
  const slot = document.getElementById("courses-message");
  const select = document.getElementById("course-template");
  const form = document.getElementById("course-form");

  function courseCard(c) {
    return h("article.sandbox-card", { "data-course": c.name },
      h("div.card-top", h("a.sandbox-name", { href: `/courses/${c.id}/` }, c.name),
        h("span.status-pill", { "data-status": "running" }, c.role)),
      h("div.muted.small", `template ${c.template.name}${c.role === "student" ? ` · ${c.teacher}` : ""}`),
      h("div.card-actions", h("a.btn.primary", { href: `/courses/${c.id}/` }, "Open")));
  }

  async function refresh() {
    try {
      const { teaching, enrolled } = await call("GET", "/courses");
      document.getElementById("teaching").replaceChildren(...(teaching.length ? teaching.map(courseCard)
        : [h("p.muted", {}, "You teach no course yet.")]));
      document.getElementById("enrolled").replaceChildren(...(enrolled.length ? enrolled.map(courseCard)
        : [h("p.muted", {}, "You have not joined a course: your teacher's invite link brings you here.")]));
    } catch (err) {
      flash(slot, "error", `Could not list your courses: ${err.message}`);
    }
  }

  async function loadTemplates() {
    try {
      const { templates } = await call("GET", "/templates");
      select.replaceChildren(...templates.map((t) => h("option", { value: t.id }, t.name)));
      form.querySelector("button").disabled = !templates.length;
      if (!templates.length) select.replaceChildren(h("option", { value: "" }, "no templates yet"));
      document.getElementById("template-list").replaceChildren(templates.length
        ? h("ul", {}, ...templates.map((t) => h("li", { "data-template": t.name }, h("strong", {}, t.name),
          ` · ${t.repo_url || "uploaded files"} · ${t.starter_head ? `starter ${t.starter_head.slice(0, 7)}` : "no starter yet"}`
          + (t.open_files.length ? ` · opens ${t.open_files.join(", ")}` : "")
          + (t.dockerfile ? (t.built_image ? " · own image" : " · image not built yet") : ""))))
        : "No templates yet.");
    } catch (err) {
      flash(slot, "error", `Could not list your templates: ${err.message}`);
    }
  }
  const templateForm = document.getElementById("template-form");
  templateForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = templateForm.elements;
    const body = { name: f.name.value.trim() };
    for (const key of ["repo_url", "repo_branch", "setup_command"]) {
      if (f[key].value.trim()) body[key] = f[key].value.trim();
    }
    const dockerfile = f.dockerfile.value;
    if (dockerfile.trim()) body.dockerfile = dockerfile;
    const open = f.open_files.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (open.length) body.open_files = open;
    if (f.preview_port.value) body.preview_port = Number(f.preview_port.value);
    const button = document.getElementById("template-create");
    const buildSlot = document.getElementById("template-build");
    buildSlot.replaceChildren();
    let made = null;
    try {
      await busy(button, "Creating…", async () => {
        made = await call("POST", "/templates", { json: body });
        // Each part's field name is its path in the starter; a folder's own name is
        // dropped so its contents land at the top of the workspace.
        const data = new FormData();
        for (const file of f.files.files) data.append(file.name, file, file.name);
        for (const file of f.folder.files) {
          const path = (file.webkitRelativePath || file.name).split("/").slice(1).join("/") || file.name;
          data.append(path, file, file.name);
        }
        if ([...data.keys()].length) await call("PUT", `/templates/${made.id}/files`, { body: data });
      });
      if (body.dockerfile) {
        const build = await busy(button, "Building…", () => buildTemplate(made.id, buildSlot));
        if (build.status !== "succeeded") {
          // The form keeps what was typed: fix the Dockerfile and create it again.
          await call("DELETE", `/templates/${made.id}`).catch(() => {});
          flash(slot, "error", "The template's image did not build (see the log below): fix the " +
            "Dockerfile and create the template again.");
          return;
        }
      }
      flash(slot, "success", `Template “${body.name}” is ready: start a course on it.`);
      templateForm.reset();
      document.getElementById("template-new").open = false;
      await loadTemplates();
    } catch (err) {
      flash(slot, "error", `Could not create the template: ${err.message}`);
      if (made && body.dockerfile) await call("DELETE", `/templates/${made.id}`).catch(() => {});
    }
  });
  await loadTemplates();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = document.getElementById("course-create");
    try {
      const c = await busy(button, "Creating…", () => call("POST", "/courses", {
        json: { name: form.elements.name.value.trim(), template: select.value },
      }));
      window.location.assign(`/courses/${c.id}/`);
    } catch (err) {
      flash(slot, "error", `Could not create the course: ${err.message}`);
    }
  });
  refresh();
}

// ------------------------------------------------------------------ a course page

async function coursePage(root) {
  const id = root.dataset.courseId;
  const teacher = root.dataset.role === "teacher";
  const slot = document.getElementById("course-message");

  async function shares() {
    const table = document.getElementById("shares");
    try {
      const { shares: items } = await call("GET", `/courses/${id}/shares`);
      if (!items.length) {
        table.replaceChildren(h("tbody", {}, h("tr", {}, h("td.muted", {}, "Nothing shared yet."))));
        return;
      }
      table.replaceChildren(h("tbody", {}, ...items.map((s) => {
        const link = s.url ? h("a", { href: s.url, target: s.kind === "preview" ? "_blank" : null, rel: "noopener" },
          s.kind === "preview" ? `preview of port ${s.port}` : "read-only view") : h("span.muted", {}, "unavailable");
        const mine = root.dataset.sandboxId === s.sandbox;
        const revoke = teacher || mine ? h("button.btn.danger.small", { type: "button", "data-testid": "revoke-share" },
          mine ? "Stop sharing" : "Revoke") : null;
        revoke?.addEventListener("click", async () => {
          try {
            await busy(revoke, "…", () => call("DELETE", `/courses/${id}/shares/${s.id}`));
            shares();
          } catch (err) { flash(slot, "error", err.message); }
        });
        return h("tr", { "data-share": s.kind },
          h("td", {}, h("strong", {}, s.owner)), h("td", {}, link), h("td.muted", {}, ago(s.created_at, "never")),
          h("td.right", {}, revoke));
      })));
    } catch (err) {
      table.replaceChildren(h("tbody", {}, h("tr", {}, h("td", {}, `Could not list shares: ${err.message}`))));
    }
  }

  if (teacher) {
    const invitesTable = document.getElementById("invites");
    async function invites() {
      const { invites: items } = await call("GET", `/courses/${id}/invites`);
      if (!items.length) {
        invitesTable.replaceChildren(h("tbody", {}, h("tr", {}, h("td.muted", {}, "No invite links yet."))));
        return;
      }
      invitesTable.replaceChildren(h("tbody", {}, ...items.map((i) => {
        const url = new URL(i.path, window.location.origin).href;
        const code = h("code", { "data-testid": "invite-url" }, url);
        const copy = h("button.btn.small", { type: "button" }, "Copy");
        copy.addEventListener("click", () => copyText(url));
        const revoke = h("button.btn.danger.small", { type: "button", "data-testid": "revoke-invite" }, "Revoke");
        revoke.addEventListener("click", async () => {
          await call("DELETE", `/courses/${id}/invites/${i.id}`).catch((err) => flash(slot, "error", err.message));
          invites();
        });
        return h("tr", { "data-state": i.state },
          h("td", {}, i.state === "active" ? code : h("s.muted", {}, url)),
          h("td", {}, h("span.status-pill", { "data-status": i.state === "active" ? "running" : "error" }, i.state)),
          h("td.muted.small", {}, `${i.uses} joined · expires ${i.expires_at ? new Date(i.expires_at).toLocaleDateString() : "never"}`),
          h("td.right", {}, i.state === "active" ? copy : null, i.state === "active" ? revoke : null));
      })));
    }
    document.getElementById("invite-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const days = Number(e.target.elements.days.value) || undefined;
      try {
        await call("POST", `/courses/${id}/invites`, { json: days ? { expires_in_days: days } : {} });
        invites();
      } catch (err) { flash(slot, "error", `Could not create the link: ${err.message}`); }
    });

    const rosterTable = document.getElementById("roster");
    async function roster() {
      const { students, tutorial } = await call("GET", `/courses/${id}/students`);
      if (!students.length) {
        rosterTable.replaceChildren(h("tbody", {}, h("tr", {}, h("td.muted", {}, "No students yet: share an invite link."))));
        return;
      }
      rosterTable.replaceChildren(
        h("thead", {}, h("tr", {}, h("th", {}, "Student"), h("th", {}, "Sandbox"), h("th", {}, "Last active"),
          h("th", {}, "Starter"), tutorial ? [h("th", {}, "Step"), h("th", {}, "Last check")] : null, h("th", {}))),
        h("tbody", {}, ...students.map((st) => {
          const box = st.sandbox;
          const update = st.last_update || {};
          const conflicts = (update.conflicts || []).length;
          const view = box ? h("a.btn.small", { href: `/sandboxes/${box.id}/`, "data-testid": "view-student" }, "View") : null;
          const reset = box ? h("button.btn.danger.small", { type: "button", "data-testid": "reset-student" }, "Reset") : null;
          reset?.addEventListener("click", async () => {
            const ok = await confirmDialog(`Reset ${st.student.username}'s workspace?`,
              "Their files are saved as an archive you can download, then the workspace is restored to the template.", "Reset");
            if (!ok) return;
            try {
              const archive = await busy(reset, "Resetting…", () =>
                call("POST", `/courses/${id}/students/${st.student.id}/reset`));
              slot.replaceChildren(h("div.flash.flash-success", { role: "status" },
                `${st.student.username}'s workspace was reset. `,
                h("a", { href: archive.path, "data-testid": "archive-link" }, "Download the old workspace")));
              roster();
            } catch (err) { flash(slot, "error", `Could not reset: ${err.message}`); }
          });
          return h("tr", { "data-student": st.student.username },
            h("td", {}, h("strong", {}, st.student.username)),
            h("td", {}, box ? h("span.status-pill", { "data-status": box.status }, box.status) : h("span.muted", {}, "none")),
            h("td.muted", {}, box ? ago(box.last_active_at, "never") : ""),
            h("td.small", {}, update.status ? `${update.status}${conflicts ? ` · ${conflicts} conflict${conflicts > 1 ? "s" : ""} kept aside` : ""}` : (st.starter_head || "").slice(0, 7)),
            tutorial ? tutorialCells(st.tutorial, tutorial) : null,
            h("td.right", {}, view, " ", reset));
        })));
    }
    // The tutorial's columns: the step a student reached and their last check.
    function tutorialCells(progress, tutorial) {
      const step = !progress ? h("span.muted", {}, "not started")
        : progress.finished ? h("strong", {}, "finished") : `${progress.current} of ${tutorial.total}`;
      const last = progress?.last_check;
      const check = last ? h(`span.${last.passed ? "check-passed" : "check-failed"}`, {},
        `step ${last.step} ${last.passed ? "passed" : "failed"} · ${ago(last.at, "")}`) : h("span.muted", {}, "none");
      return [h("td.small", { "data-testid": "tutorial-step" }, step),
        h("td.small", { "data-testid": "tutorial-last-check" }, check)];
    }
    tutorialCard(id, root.dataset.templateId).catch(() => {});
    // Whole-class operations: one line per student as each one ends ("12 of 30
    // students"); a student's failure is shown for that student and the rest go on.
    const report = document.getElementById("update-report");
    async function forTheClass(button, { path, title, busyLabel, testid, verb, line }) {
      const view = new ProgressView({ title, testid });
      report.replaceChildren(view.el);
      const old = button.textContent;
      button.disabled = true;
      button.textContent = busyLabel;
      try {
        const result = await postWithProgress(path, {}, (step) => {
          view.step(step);
          if (step.stage === "student") {
            const d = step.detail;
            view.item(d.error ? `${d.student}: failed: ${d.error}` : line(d), !d.error,
              { "data-student": d.student, "data-testid": `${testid}-student` });
          }
        });
        const failed = result.students.filter((st) => st.status === "failed").length;
        const total = result.students.length;
        if (!total) view.finish("No student has a workspace yet.");
        else if (!failed) view.finish(`All ${total} students ${verb}.`);
        else view.finish(`${total - failed} of ${total} students ${verb}; ${failed} failed (see below).`,
          failed === total ? "failed" : "partial");
        return result;
      } catch (err) {
        view.fail(`Could not finish: ${err.message}`);
        return null;
      } finally {
        button.disabled = false;
        button.textContent = old;
        roster().catch(() => {});
      }
    }

    const push = document.getElementById("push-update");
    push.addEventListener("click", () => forTheClass(push, {
      path: `/courses/${id}/update`, title: "Pushing the starter update", busyLabel: "Updating…",
      testid: "update", verb: "updated",
      line: (d) => `${d.student}: ${d.status.replace("_", " ")}${(d.conflicts || []).length
        ? ` (${d.conflicts.map((c) => `${c.path} → ${c.kept_as}`).join(", ")})` : ""}`,
    }));

    const resetAll = document.getElementById("reset-class");
    resetAll.addEventListener("click", async () => {
      const ok = await confirmDialog("Reset every student's workspace?",
        "Each workspace is saved as an archive you can download, then restored to the template.", "Reset all");
      if (!ok) return;
      const result = await forTheClass(resetAll, {
        path: `/courses/${id}/reset`, title: "Resetting every workspace", busyLabel: "Resetting…",
        testid: "class-reset", verb: "reset", line: (d) => `${d.student}: reset`,
      });
      for (const st of result?.students || []) {
        if (!st.archive) continue;
        const item = report.querySelector(`li[data-student="${CSS.escape(st.student)}"]`);
        item?.append(" · ", h("a", { href: st.archive.path }, "old workspace"));
      }
    });
    const safe = (f) => f().catch((err) => flash(slot, "error", err.message));
    safe(invites);
    safe(roster);
    setInterval(() => { if (!document.hidden) roster().catch(() => {}); }, 5000);
  } else {
    const form = document.getElementById("share-form");
    form?.addEventListener("submit", async (e) => {
      e.preventDefault();
      const kind = e.submitter?.value || "view";
      const body = { sandbox: root.dataset.sandboxId, kind };
      if (kind === "preview") {
        body.port = Number(form.elements.port.value);
        if (!body.port) { flash(slot, "error", "Which port? Type the port your server listens on."); return; }
      }
      try {
        await call("POST", `/courses/${id}/shares`, { json: body });
        flash(slot, "success", kind === "view" ? "Your class can now look at your workspace (read-only)." : `Port ${body.port} is shared with your class.`);
        shares();
      } catch (err) { flash(slot, "error", `Could not share: ${err.message}`); }
    });
    const archives = document.getElementById("my-archives");
    if (archives) {
      call("GET", `/courses/${id}/students/${root.dataset.userId}/archives`).then(({ archives: items }) => {
        if (items.length) archives.replaceChildren(h("p.muted.small", {}, "Your workspace was reset: ",
          ...items.map((a) => h("a", { href: a.path }, `download the ${new Date(a.created_at).toLocaleString()} copy `))));
      }).catch(() => {});
    }
  }
  shares();
}

// ------------------------------------------------------------------ the tutorial
// The course's tutorial for its teacher: the validator's report (every problem with
// its file and line), a preview of every page as students will see it, and the
// class's progress as CSV.
async function tutorialCard(courseId, templateId) {
  const card = document.getElementById("tutorial-card");
  if (!card || !templateId) return;
  const report = await call("GET", `/templates/${templateId}/tutorial/validate`);
  if (!report.found) return;
  card.hidden = false;
  const problems = report.problems.map((p) => h(`li.${p.level}`, { "data-testid": "tutorial-problem" },
    h("code", {}, p.line ? `${p.file}:${p.line}` : p.file), ` ${p.level}: ${p.message}`));
  const preview = h("div.tutorial-preview", { id: "tutorial-preview", hidden: true });
  const show = h("button.btn.small", { type: "button", "data-testid": "tutorial-preview-button", disabled: !report.valid }, "Preview");
  show.addEventListener("click", async () => {
    if (!preview.hidden) { preview.hidden = true; return; }
    const { renderMarkdown } = await import("../vendor/markdown.js");
    const data = await call("GET", `/templates/${templateId}/tutorial/preview`);
    preview.replaceChildren(...data.pages.map((page) => {
      const body = h("div.markdown");
      body.innerHTML = renderMarkdown(page.markdown);
      const label = page.kind === "step" ? `Step ${page.index}: ${page.title}` : page.kind === "intro" ? "Introduction" : "Finish";
      return h("section.tutorial-page", {}, h("h3", {}, label, page.verify ? h("span.muted.small", {}, " · checked") : null), body);
    }));
    preview.hidden = false;
  });
  card.replaceChildren(
    h("div.row", {}, h("h2.grow", {}, `Tutorial: ${report.title || "(untitled)"}`), show, " ",
      h("a.btn.small", { href: `/api/v1/courses/${courseId}/progress?format=csv`, "data-testid": "progress-csv" }, "Progress (CSV)")),
    h("p.muted", {}, `${report.steps} step${report.steps === 1 ? "" : "s"}`
      + (report.valid ? "" : " · students cannot start it until the errors below are fixed")
      + (report.unsupported.length ? ` · not available here: ${report.unsupported.join(", ")}` : "")),
    problems.length ? h("ul.tutorial-problems", {}, ...problems) : h("p.muted.small", {}, "No problems found."),
    preview);
}

const list = document.getElementById("courses");
const course = document.getElementById("course");
if (list) listPage(list);
if (course) coursePage(course);
