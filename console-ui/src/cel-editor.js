// The console's CEL editor: highlighting, autocomplete of the phase's variables, and
// lint through the console's /cel/validate endpoint (the admin API's ValidatePolicy).
// Mounted on a <textarea data-cel-phase="pre|post">; the textarea keeps the value, so
// the surrounding form submits it as usual.
import { EditorState } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, placeholder } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { syntaxHighlighting, defaultHighlightStyle, bracketMatching } from "@codemirror/language";
import { linter, lintGutter } from "@codemirror/lint";
import { autocompletion, completeFromList, closeBrackets } from "@codemirror/autocomplete";
import { celLanguage, CEL_FUNCTIONS } from "./cel-language.js";

const PRE = [
  ["request_size_bytes", "int"], ["estimated_tokens", "int"], ["max_tokens", "int"],
  ["model", "string"], ["org_id", "string"], ["app_id", "string"],
  ["environment", "string"], ["provider", "string"], ["stream", "bool"],
];
const POST = PRE.concat([
  ["prompt_tokens", "int"], ["completion_tokens", "int"], ["total_tokens", "int"],
  ["cached_tokens", "int"], ["reasoning_tokens", "int"], ["latency_ms", "int"],
  ["response_size_bytes", "int"], ["status_code", "int"], ["cost_usd", "double"],
]);

function completions(phase) {
  const vars = (phase === "post" ? POST : PRE).map(([label, type]) => ({
    label, type: "variable", detail: type,
  }));
  const funcs = CEL_FUNCTIONS.map((label) => ({ label, type: "function" }));
  return completeFromList(vars.concat(funcs));
}

function position(doc, line, column) {
  const l = doc.line(Math.min(Math.max(line, 1), doc.lines));
  return Math.min(l.from + Math.max(column, 1) - 1, l.to);
}

function celLinter(textarea) {
  const url = textarea.dataset.celValidateUrl;
  const phase = textarea.dataset.celPhase || "pre";
  const status = document.getElementById(textarea.dataset.celStatus || "");
  return linter(async (view) => {
    const source = view.state.doc.toString();
    if (!source.trim()) {
      if (status) { status.textContent = ""; status.dataset.state = "empty"; }
      return [];
    }
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ source, phase }),
      credentials: "same-origin",
    });
    const body = await response.json();
    const errors = body.errors || [];
    // A slower answer for older text must not overwrite the current one.
    if (view.state.doc.toString() !== source) return [];
    if (status) {
      status.dataset.state = errors.length ? "invalid" : "valid";
      status.textContent = errors.length
        ? errors.map((e) => `line ${e.line}, column ${e.column}: ${e.message}`).join("\n")
        : "valid";
    }
    return errors.map((e) => {
      const doc = view.state.doc;
      const from = e.line ? position(doc, e.line, e.column) : 0;
      // Underline the identifier or number that starts there, else one character.
      const rest = doc.sliceString(from, Math.min(from + 200, doc.length));
      const word = /^[A-Za-z0-9_.]+/.exec(rest);
      const to = Math.min(from + (word ? word[0].length : 1), doc.length);
      return { from, to: Math.max(to, from), severity: "error", message: e.message };
    });
  }, { delay: 400 });
}

export function mount(textarea) {
  const phase = textarea.dataset.celPhase || "pre";
  // Read-only sessions may not call ValidatePolicy: no lint, no editing.
  const editable = !textarea.readOnly;
  const view = new EditorView({
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        lineNumbers(), history(), bracketMatching(), closeBrackets(),
        keymap.of([...defaultKeymap, ...historyKeymap]),
        celLanguage, syntaxHighlighting(defaultHighlightStyle),
        autocompletion({ override: [completions(phase)] }),
        editable ? [celLinter(textarea), lintGutter()] : [],
        EditorState.readOnly.of(!editable), EditorView.editable.of(editable),
        placeholder(textarea.placeholder || ""),
        EditorView.lineWrapping,
        // Through the facet: CodeMirror owns the editor element's attributes.
        EditorView.editorAttributes.of({ class: "cel-editor", "data-cel-for": textarea.name }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) textarea.value = update.state.doc.toString();
        }),
      ],
    }),
  });
  textarea.style.display = "none";
  textarea.after(view.dom);
  return view;
}

export function mountAll(root) {
  for (const textarea of (root || document).querySelectorAll("textarea[data-cel-phase]")) {
    if (!textarea.dataset.celMounted) {
      textarea.dataset.celMounted = "1";
      mount(textarea);
    }
  }
}
