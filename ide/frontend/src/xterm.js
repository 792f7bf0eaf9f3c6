// Entry point for static/ide/vendor/xterm.js (built by build.mjs).
//
// Usage in the browser (no Node.js needed at run time):
//   <link rel="stylesheet" href="/static/ide/vendor/xterm.css">
//   import {Terminal, FitAddon, WebLinksAddon} from "/static/ide/vendor/xterm.js";
export { Terminal } from "@xterm/xterm";
export { FitAddon } from "@xterm/addon-fit";
export { WebLinksAddon } from "@xterm/addon-web-links";
