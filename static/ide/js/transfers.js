// Uploads and downloads with a progress card: bytes, percent, speed, time left and
// a Cancel button; many files (a dropped folder) as one card with a count.
//
// Uploads: each file is its own PUT /files/content sent with XMLHttpRequest (fetch
// reports no upload progress), a few at a time. The server writes a file under its
// name only once all of it has arrived, so a cancelled or broken upload leaves the
// files finished before it and nothing of the one in flight.
// Downloads: fetch, read as a stream against Content-Length, kept as a Blob made of
// Blobs of a few MB each (the browser may keep those out of the page's memory) and
// saved under the file's name. Past BLOB_LIMIT the browser's own download manager
// takes over (it writes to disk as it goes and shows its own progress).
import { ApiError, basename, errorFrom, h, joinPath } from "./api.js";
import { formatBytes, formatDuration, ProgressCard, RateMeter } from "./progress.js";

const PARALLEL = 3; // files sent at once: small files are mostly round trips
const RENDER_MS = 100;
const PART_BYTES = 8 * 1024 * 1024;
export const BLOB_LIMIT = 2 * 1024 * 1024 * 1024;

function isAbort(err) {
  return err && err.name === "AbortError";
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

// "45 MB of 200 MB · 38 MB/s · 4 s left"
function amounts(done, total, rate) {
  const parts = [total ? `${formatBytes(done)} of ${formatBytes(total)}` : formatBytes(done)];
  if (rate !== null && rate > 0) {
    parts.push(`${formatBytes(rate)}/s`);
    if (total && done < total) parts.push(`${formatDuration((total - done) / rate)} left`);
  }
  return parts.join(" · ");
}

// ------------------------------------------------------------------ choosing files

// What a drop holds, as {files: [{file, path}], dirs: [path]} with paths relative to
// the drop target. Call it inside the drop handler: the browser empties the
// DataTransfer when the handler returns, the folders are then read asynchronously.
export function droppedItems(dataTransfer) {
  const items = [...(dataTransfer.items || [])].filter((i) => i.kind === "file");
  const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  const files = [...dataTransfer.files];
  if (!entries.some((e) => e && e.isDirectory)) {
    return Promise.resolve({ files: files.map((file) => ({ file, path: file.name })), dirs: [] });
  }
  return walkEntries(entries.filter(Boolean));
}

async function walkEntries(roots) {
  const found = { files: [], dirs: [] };
  const visit = async (entry, prefix) => {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      found.files.push({ file, path });
      return;
    }
    const reader = entry.createReader();
    let children = [];
    for (;;) { // readEntries answers in batches until an empty one
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      children = children.concat(batch);
    }
    if (!children.length) found.dirs.push(path);
    for (const child of children) await visit(child, path);
  };
  for (const entry of roots) await visit(entry, "");
  return found;
}

// What a file input chose; a folder input (webkitdirectory) gives relative paths.
export function chosenItems(fileList) {
  return [...fileList].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}

// ------------------------------------------------------------------ uploading

// Upload files ({file, path relative to dir}) and make empty folders (dirs) under
// dir. Resolves to {state: "done"|"cancelled"|"error", paths: [uploaded paths]}.
export async function upload(sb, dir, files, dirs = []) {
  const count = files.length;
  const total = files.reduce((n, f) => n + f.file.size, 0);
  const controller = new AbortController();
  const what = count === 1 ? files[0].path : count ? plural(count, "file") : plural(dirs.length, "empty folder");
  const card = new ProgressCard({ title: `Uploading ${what} to ${dir}`, kind: "upload", onCancel: () => controller.abort() });
  const meter = new RateMeter();
  const inFlight = new Map(); // item -> bytes sent so far
  const paths = [];
  const sent = []; // aborted after their last byte was sent
  let sentBytes = 0; // of finished files
  let failure = null;
  let lastRender = 0;

  const render = (force = false) => {
    const now = performance.now();
    if (!force && now - lastRender < RENDER_MS) return;
    lastRender = now;
    let done = sentBytes;
    for (const n of inFlight.values()) done += n;
    const rate = meter.sample(done, now);
    const counted = count > 1 ? `${paths.length} of ${count} files · ` : "";
    const saving = total && done >= total ? " · saving in the sandbox…" : "";
    card.update(done, total, counted + amounts(done, total, saving ? null : rate) + saving);
  };

  const queue = [...files];
  const worker = async () => {
    while (queue.length && !failure && !controller.signal.aborted) {
      const item = queue.shift();
      const path = joinPath(dir, item.path);
      inFlight.set(item, 0);
      try {
        await sb.send(path, item.file, {
          signal: controller.signal,
          onProgress: (n) => { inFlight.set(item, n); render(); },
        });
        paths.push(path);
        sentBytes += item.file.size;
      } catch (err) {
        if (isAbort(err) && item.file.size && inFlight.get(item) >= item.file.size) sent.push(item.path);
        if (!isAbort(err) && !failure) {
          failure = { path: item.path, err };
          controller.abort(); // the others stop too: a full disk fails them all
        }
      } finally {
        inFlight.delete(item);
        render(true);
      }
    }
  };
  render(true);
  await Promise.all(Array.from({ length: Math.min(PARALLEL, count) }, worker));
  if (!failure && !controller.signal.aborted) {
    for (const d of dirs) {
      try { await sb.mkdir(joinPath(dir, d)); } catch (err) { failure = { path: d, err }; break; }
    }
  }

  const kept = paths.length ? ` ${paths.length} of ${count} files were uploaded and kept.` : "";
  // A file sent in full when the upload stopped may still be saved by the server.
  const late = sent.length ? ` ${sent.join(", ")} had been sent in full and may have been saved.` : "";
  if (failure) {
    card.finish("error", `${failure.path} could not be uploaded: ${failure.err.message}${kept}${late}`, "Upload failed");
    return { state: "error", paths };
  }
  if (controller.signal.aborted) {
    card.finish("cancelled", `${kept || (late ? "" : "Nothing was saved.")}${late}`.trim(), "Upload cancelled");
    return { state: "cancelled", paths };
  }
  card.finish("done", `Uploaded ${what} (${formatBytes(total)}) to ${dir}.`);
  return { state: "done", paths };
}

// ------------------------------------------------------------------ downloading

function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  browserDownload(url, filename);
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// Let the browser fetch and save a same-origin URL (the session cookie authenticates it).
export function browserDownload(url, filename = "") {
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

// Download a same-origin URL as `filename`, with a progress card. Resolves to
// "done", "cancelled", "browser" (handed to the browser's downloads) or "error".
export async function download(url, filename) {
  const controller = new AbortController();
  const card = new ProgressCard({ title: `Downloading ${filename}`, kind: "download", onCancel: () => controller.abort() });
  const meter = new RateMeter();
  let received = 0;
  try {
    const response = await fetch(url, { credentials: "same-origin", signal: controller.signal });
    if (!response.ok) throw await errorFrom(response);
    const total = Number(response.headers.get("Content-Length")) || 0;
    if (total > BLOB_LIMIT) {
      controller.abort();
      browserDownload(url, filename);
      card.finish("done", `${filename} is ${formatBytes(total)}: the browser's downloads show its progress.`);
      return "browser";
    }
    const type = response.headers.get("Content-Type") || "application/octet-stream";
    const reader = response.body.getReader();
    const parts = [];
    let chunks = [];
    let buffered = 0;
    let lastRender = 0;
    card.update(0, total, amounts(0, total, null));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      buffered += value.length;
      received += value.length;
      if (buffered >= PART_BYTES) { parts.push(new Blob(chunks)); chunks = []; buffered = 0; }
      const now = performance.now();
      if (now - lastRender >= RENDER_MS) {
        lastRender = now;
        card.update(received, total, amounts(received, total, meter.sample(received, now)));
      }
    }
    if (total && received !== total) {
      throw new ApiError(`The download ended after ${formatBytes(received)} of ${formatBytes(total)}: try again.`, { code: "incomplete" });
    }
    parts.push(new Blob(chunks));
    save(new Blob(parts, { type }), filename);
    card.finish("done", `Downloaded ${filename} (${formatBytes(received)}).`);
    return "done";
  } catch (err) {
    if (isAbort(err)) {
      card.finish("cancelled", "Nothing was saved.", "Download cancelled");
      return "cancelled";
    }
    const reason = err instanceof ApiError ? err.message : "The connection broke: check it and try again.";
    card.finish("error", `${basename(filename)} could not be downloaded: ${reason}`, "Download failed");
    return "error";
  }
}
