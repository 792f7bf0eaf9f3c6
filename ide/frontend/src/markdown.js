// Entry point for static/ide/vendor/markdown.js (built by build.mjs).
//
// Markdown to safe HTML for the tutorial panel: markdown-it renders (raw HTML in
// the markdown allowed, as tutorials use it), then DOMPurify removes anything that
// could run script or reach out (event handlers, javascript: URLs, forms, iframes).
//
//   import {renderMarkdown} from "/static/ide/vendor/markdown.js";
//   element.innerHTML = renderMarkdown("# Title\n\n`ls`");
import MarkdownIt from "markdown-it";
import DOMPurify from "dompurify";

const md = new MarkdownIt({ html: true, linkify: true, typographer: false });

const PURIFY = {
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
  FORBID_ATTR: ["style"],
};

// Links open in a new tab, never with access to this page.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.getAttribute("href") && !node.getAttribute("href").startsWith("#")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

export function renderMarkdown(text) {
  return DOMPurify.sanitize(md.render(text || ""), PURIFY);
}
