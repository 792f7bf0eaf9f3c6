// Read-only mode: the page of someone who may only look at a workspace (a course's
// teacher, a classmate the student shared a view with). The server marks it with
// data-readonly="1" data-owner="<username>" on #ide and refuses every write with
// 403 read_only; the page hides what writes and says why when something is refused.
import { status, toast } from "./ui.js";

const root = document.getElementById("ide");

export const READONLY = root?.dataset.readonly === "1";
export const OWNER = root?.dataset.owner || "";

// localStorage keys: a viewer's tabs, folders and terminals of a workspace they only
// look at never mix with an owner's state for the same sandbox in this browser.
export function stateKey(name, sandboxId) {
  return `ide-${name}-${READONLY ? "ro-" : ""}${sandboxId}`;
}

const lastRefusal = new Map(); // what -> when it was last said
let shown = null; // one refusal on screen at a time
// Say that an action is not available here (the same thing at most every few
// seconds: a held key must not pile up toasts). Returns false so callers can
// `return refuse(...)`.
export function refuse(what = "This") {
  const message = `${what} is not possible: you are viewing ${OWNER ? `${OWNER}'s` : "this"} workspace read-only.`;
  status(`Read-only: ${what.toLowerCase()} is off`);
  const now = Date.now();
  if (now - (lastRefusal.get(what) || 0) > 3000) {
    lastRefusal.set(what, now);
    shown?.remove();
    shown = toast(message, "info");
  }
  return false;
}

// A write the server refused (403 read_only) reads like any other message; this
// catches those no panel handled itself.
export function isReadOnlyError(err) {
  return !!err && (err.code === "read_only" || err.status === 403);
}

// ------------------------------------------------------------------ sleep
// Opening a view wakes a sleeping sandbox (any file read does); merely keeping the
// view open must not keep the owner's sandbox from sleeping. So a viewer that lost
// its streams reconnects only once the sandbox is running again (its status is a
// database read that wakes nothing), and says it is paused meanwhile.
let sandboxStatus = "running";
let waiting = null;

export function setSandboxStatus(status) {
  if (status === sandboxStatus) return;
  sandboxStatus = status;
  document.dispatchEvent(new CustomEvent("sandboxstatus", { detail: { status } }));
}

export function isAsleep() { return READONLY && sandboxStatus === "sleeping"; }

// The view was taken away (the share revoked, the student left the course): the
// API answers 404 like for any sandbox one may not see. Say so once; stop following.
export let accessEnded = false;
export function endAccess() {
  if (!READONLY || accessEnded) return;
  accessEnded = true;
  document.dispatchEvent(new CustomEvent("accessended"));
}

// Resolves at once for an owner; for a viewer, when the sandbox is not asleep.
export function awake(sb) {
  if (!READONLY) return Promise.resolve();
  if (!waiting) {
    waiting = (async () => {
      for (;;) {
        try { setSandboxStatus((await sb.get()).status); } catch { /* keep the last known */ }
        if (sandboxStatus !== "sleeping") break;
        await new Promise((r) => setTimeout(r, 5000));
      }
    })().finally(() => { waiting = null; });
  }
  return waiting;
}

if (READONLY) {
  addEventListener("unhandledrejection", (e) => {
    if (isReadOnlyError(e.reason)) {
      e.preventDefault();
      toast(e.reason.message || "Only the owner can change this workspace.", "error");
    }
  });
}
