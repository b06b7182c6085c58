// Deterministic build: the CEL editor bundle plus verbatim copies of htmx and uPlot,
// written into the Python package so `pip install` needs no Node.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const out = "../policy_sidecar/console/static/vendor";
mkdirSync(out, { recursive: true });

await build({
  entryPoints: ["src/cel-editor.js"],
  bundle: true,
  minify: true,
  format: "iife",
  globalName: "CelEditor",
  target: "es2020",
  legalComments: "eof",
  sourcemap: false,
  outfile: `${out}/cel-editor.js`,
  logLevel: "warning",
});

copyFileSync("node_modules/htmx.org/dist/htmx.min.js", `${out}/htmx.min.js`);
copyFileSync("node_modules/uplot/dist/uPlot.iife.min.js", `${out}/uPlot.iife.min.js`);
copyFileSync("node_modules/uplot/dist/uPlot.min.css", `${out}/uPlot.min.css`);
