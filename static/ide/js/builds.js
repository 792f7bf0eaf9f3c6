// A template image build in the browser: start it, then show its progress line
// ("step 2 of 5: RUN …") and its live log from the build's SSE stream
// (docs/api.md, "Template images"). The log keeps its last MAX_LINES lines.
import { ApiError, call, h, raw, readSSE } from "./api.js";
import { ProgressView } from "./operations.js";

const MAX_LINES = 400;

// Build template `id`, showing the build in `slot`; resolves with the finished build
// (status "succeeded" or "failed"), throws an ApiError when it cannot be started
// or followed.
export async function buildTemplate(id, slot) {
  const view = new ProgressView({ title: "Building the template's image", testid: "build" });
  const log = h("pre.op-log", { "data-testid": "build-log", "aria-label": "Build log" });
  view.el.append(log);
  slot.replaceChildren(view.el);
  const build = await call("POST", `/templates/${id}/build`);
  view.text.textContent = build.status === "queued" ? "Waiting for a free builder…" : "Starting…";
  const response = await raw("GET", `/builds/${build.id}/logs`, { headers: { Accept: "text/event-stream" } });
  let result = null;
  let failure = null;
  let lines = [];
  await readSSE(response, (name, data) => {
    if (name === "log") {
      lines = lines.concat(data.text.replace(/\n$/, "").split("\n")).slice(-MAX_LINES);
      const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = lines.join("\n");
      if (follow) log.scrollTop = log.scrollHeight;
    } else if (name === "progress") {
      view.step({ stage: "build", message: data.message, current: data.step, total: data.steps });
      view.count.textContent = `step ${data.step} of ${data.steps}`;
    } else if (name === "done") {
      result = data;
    } else if (name === "error") {
      failure = new ApiError(data.message, { code: data.code, status: 200 });
    }
  });
  if (failure) throw failure;
  if (!result) {
    throw new ApiError("The connection broke while the image was building; the build goes on " +
      "on the server.", { code: "network" });
  }
  if (result.status === "succeeded") {
    view.finish(result.reused ? "The image was built before from the same Dockerfile: reused."
      : "The image is built.");
  } else {
    view.fail(result.error);
    if (result.last_lines.length) {
      view.items.append(h("li", { "data-ok": "false", "data-testid": "build-failed-step" },
        `${result.failed_step} — its last lines:`),
      h("li", {}, h("pre.op-log", {}, result.last_lines.join("\n"))));
    }
  }
  return result;
}
