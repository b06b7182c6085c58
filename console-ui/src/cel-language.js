// A CodeMirror StreamLanguage tokenizer for CEL (https://github.com/google/cel-spec,
// doc/langdef.md): comments, string and bytes literals (single, double, triple quoted,
// raw), numbers (int, uint, double, hex), keywords, operators, identifiers.
import { StreamLanguage } from "@codemirror/language";

const KEYWORDS = new Set(["true", "false", "null", "in"]);
const BUILTINS = new Set([
  "size", "has", "int", "uint", "double", "string", "bytes", "bool", "type", "dyn",
  "matches", "startsWith", "endsWith", "contains", "all", "exists", "exists_one",
  "map", "filter", "duration", "timestamp",
]);

function readString(stream, quote, raw) {
  const triple = quote.repeat(3);
  const closing = stream.match(triple) ? triple : (stream.next(), quote);
  while (!stream.eol()) {
    if (stream.match(closing)) return "string";
    if (stream.next() === "\\" && !raw) stream.next();
  }
  return "string";
}

export const celLanguage = StreamLanguage.define({
  name: "cel",
  token(stream) {
    if (stream.eatSpace()) return null;
    if (stream.match("//")) { stream.skipToEnd(); return "comment"; }
    const prefix = stream.match(/^[rRbB]{1,2}(?=["'])/);
    const ch = stream.peek();
    if (ch === '"' || ch === "'") {
      return readString(stream, ch, Boolean(prefix && /r/i.test(prefix[0])));
    }
    if (prefix) stream.backUp(prefix[0].length);
    if (stream.match(/^0x[0-9a-fA-F]+u?/) || stream.match(/^\d+\.\d*([eE][+-]?\d+)?/) ||
        stream.match(/^\.\d+([eE][+-]?\d+)?/) || stream.match(/^\d+[eE][+-]?\d+/) ||
        stream.match(/^\d+u?/)) {
      return "number";
    }
    if (stream.match(/^(&&|\|\||==|!=|<=|>=|[<>!+\-*/%?:])/)) return "operator";
    if (stream.match(/^[()[\]{}.,]/)) return "punctuation";
    const word = stream.match(/^[A-Za-z_][A-Za-z0-9_]*/);
    if (word) {
      if (KEYWORDS.has(word[0])) return word[0] === "in" ? "keyword" : "atom";
      if (BUILTINS.has(word[0]) && stream.peek() === "(") return "builtin";
      return "variableName";
    }
    stream.next();
    return "invalid";
  },
  languageData: { commentTokens: { line: "//" } },
});

export const CEL_FUNCTIONS = [...BUILTINS];
