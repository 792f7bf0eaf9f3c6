// Entry point for static/ide/vendor/codemirror.js (built by build.mjs).
//
// A small wrapper around CodeMirror 6 so that the IDE's own JavaScript does
// not have to know about CodeMirror's extension system.
//
//   import {createEditor, languageForPath} from "/static/ide/vendor/codemirror.js";
//
//   // The editor fills `parent` when the parent has a height (set it in CSS).
//   const ed = createEditor(document.getElementById("editor"), {
//     doc: "print('hi')\n",      // initial text
//     path: "src/main.py",        // chooses the language (see languageForPath)
//     readOnly: false,            // optional, default false
//     dark: false,                // optional, default false (one-dark when true)
//     onChange: (doc) => {},      // optional, called with the whole text after
//                                 //   each change of the text (not for setValue)
//     onSave: () => {},           // optional, called on Ctrl-S / Cmd-S (the
//                                 //   browser's "save page" dialog is suppressed)
//   });
//   ed.getValue();                // -> string
//   ed.setValue(text);            // replace the text: fresh undo history, no onChange
//   ed.setPath(path);             // switch the language for another file name
//   ed.setReadOnly(true);
//   ed.setDark(true);
//   ed.focus();
//   ed.destroy();
//   ed.view;                      // the underlying EditorView, for anything else
//
//   languageForPath("a/b.tsx")    // -> "typescript"

import { basicSetup } from "codemirror";
import { Compartment, EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { indentWithTab } from "@codemirror/commands";
import {
  StreamLanguage,
  defaultHighlightStyle,
  indentUnit,
  syntaxHighlighting,
} from "@codemirror/language";
import { python, pythonLanguage } from "@codemirror/lang-python";
import {
  javascript,
  javascriptLanguage,
  jsxLanguage,
  tsxLanguage,
  typescriptLanguage,
} from "@codemirror/lang-javascript";
import { html, htmlLanguage } from "@codemirror/lang-html";
import { css, cssLanguage } from "@codemirror/lang-css";
import { json, jsonLanguage } from "@codemirror/lang-json";
import { markdown } from "@codemirror/lang-markdown";
import { shell } from "@codemirror/legacy-modes/mode/shell";
import { oneDark } from "@codemirror/theme-one-dark";

const shellLanguage = StreamLanguage.define(shell);

const EXTENSIONS = {
  py: "python", pyw: "python", pyi: "python",
  js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "javascript",
  ts: "typescript", tsx: "typescript", mts: "typescript", cts: "typescript",
  html: "html", htm: "html",
  css: "css",
  json: "json",
  md: "markdown", markdown: "markdown",
  sh: "shell", bash: "shell", zsh: "shell",
};

const SHELL_FILE_NAMES = new Set([
  ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".bash_aliases",
  ".profile", ".zshrc", ".zprofile", ".zshenv",
]);

function baseName(path) {
  const parts = String(path || "").split(/[\\/]/);
  return parts[parts.length - 1].toLowerCase();
}

function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1) : "";
}

/**
 * The language used for a file path, from its extension or name:
 * "python" | "javascript" | "typescript" | "html" | "css" | "json" |
 * "markdown" | "shell" | "plain".
 */
export function languageForPath(path) {
  const name = baseName(path);
  if (SHELL_FILE_NAMES.has(name)) return "shell";
  return EXTENSIONS[extensionOf(name)] || "plain";
}

// Languages for fenced code blocks inside Markdown.
const FENCE_LANGUAGES = {
  python: pythonLanguage, py: pythonLanguage,
  javascript: javascriptLanguage, js: javascriptLanguage, mjs: javascriptLanguage,
  jsx: jsxLanguage,
  typescript: typescriptLanguage, ts: typescriptLanguage, tsx: tsxLanguage,
  html: htmlLanguage, css: cssLanguage, json: jsonLanguage,
  sh: shellLanguage, bash: shellLanguage, shell: shellLanguage,
  console: shellLanguage, zsh: shellLanguage,
};

function fenceLanguage(info) {
  const word = String(info || "").trim().split(/\s+/)[0].toLowerCase();
  return FENCE_LANGUAGES[word] || null;
}

// CodeMirror extensions (language support + indentation unit) for a path.
function languageExtensions(path) {
  const ext = extensionOf(baseName(path));
  switch (languageForPath(path)) {
    case "python":
      return [python(), indentUnit.of("    ")];
    case "javascript":
      return javascript({ jsx: ext === "jsx" || ext === "js" });
    case "typescript":
      return javascript({ typescript: true, jsx: ext === "tsx" });
    case "html":
      return html();
    case "css":
      return css();
    case "json":
      return json();
    case "markdown":
      return markdown({ codeLanguages: fenceLanguage });
    case "shell":
      return shellLanguage;
    default:
      return [];
  }
}

// Light default theme (CodeMirror's base styling is light; this just makes the
// colours explicit so the editor does not inherit odd page colours).
const lightTheme = [
  EditorView.theme(
    {
      "&": { color: "#1f2328", backgroundColor: "#ffffff" },
      ".cm-content": { caretColor: "#1f2328" },
      ".cm-gutters": {
        color: "#6e7781",
        backgroundColor: "#f6f8fa",
        borderRight: "1px solid #d0d7de",
      },
      ".cm-activeLine": { backgroundColor: "#f3f6fa" },
      ".cm-activeLineGutter": { backgroundColor: "#e7ecf2" },
    },
    { dark: false },
  ),
  syntaxHighlighting(defaultHighlightStyle),
];

// Always applied: the editor fills its parent when the parent has a height
// (give the parent element a height, e.g. via flex or CSS), and scrolls inside.
const layoutTheme = EditorView.theme({
  "&": { height: "100%" },
  ".cm-scroller": { overflow: "auto" },
});

function themeExtensions(dark) {
  return dark ? oneDark : lightTheme;
}

function readOnlyExtensions(readOnly) {
  return EditorState.readOnly.of(!!readOnly);
}

/**
 * Create an editor inside `parent`. See the comment at the top of this file.
 */
export function createEditor(parent, options = {}) {
  const { doc = "", onChange, onSave } = options;
  // Current settings; kept so that setValue() can rebuild the state with them.
  let path = options.path || "";
  let dark = !!options.dark;
  let readOnly = !!options.readOnly;

  const language = new Compartment();
  const theme = new Compartment();
  const readOnlyCompartment = new Compartment();

  const saveKeymap = Prec.highest(
    keymap.of([
      {
        key: "Mod-s",
        preventDefault: true,
        run: () => {
          if (onSave) onSave();
          return true;
        },
      },
    ]),
  );

  const changeListener = EditorView.updateListener.of((update) => {
    if (onChange && update.docChanged) onChange(update.state.doc.toString());
  });

  function makeState(text) {
    return EditorState.create({
      doc: text,
      extensions: [
        saveKeymap,
        basicSetup,
        keymap.of([indentWithTab]),
        layoutTheme,
        language.of(languageExtensions(path)),
        theme.of(themeExtensions(dark)),
        readOnlyCompartment.of(readOnlyExtensions(readOnly)),
        changeListener,
      ],
    });
  }

  const view = new EditorView({ parent, state: makeState(String(doc ?? "")) });

  return {
    view,
    getValue() {
      return view.state.doc.toString();
    },
    // Replaces the whole text with a fresh state: the undo history is cleared,
    // the cursor goes to the start, and onChange is not called.
    setValue(text) {
      view.setState(makeState(String(text ?? "")));
    },
    // Switches the language (e.g. after a rename) without touching the text.
    setPath(newPath) {
      path = String(newPath || "");
      view.dispatch({ effects: language.reconfigure(languageExtensions(path)) });
    },
    setReadOnly(value) {
      readOnly = !!value;
      view.dispatch({ effects: readOnlyCompartment.reconfigure(readOnlyExtensions(readOnly)) });
    },
    setDark(value) {
      dark = !!value;
      view.dispatch({ effects: theme.reconfigure(themeExtensions(dark)) });
    },
    focus() {
      view.focus();
    },
    destroy() {
      view.destroy();
    },
  };
}
