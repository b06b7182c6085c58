// Console glue: mounts the CEL editors, shows the selected policy type's fields,
// copy buttons, and the usage charts (uPlot). No inline scripts (CSP: script-src 'self').
(function () {
  "use strict";

  function mountEditors(root) {
    if (window.CelEditor) window.CelEditor.mountAll(root);
  }

  function policyTypes(root) {
    const select = root.querySelector('#policy-form select[name="type"]');
    if (!select) return;
    const show = () => {
      for (const fs of document.querySelectorAll("#policy-form fieldset.type")) {
        fs.hidden = fs.dataset.type !== select.value;
      }
    };
    select.addEventListener("change", show);
    show();
  }

  function copyButtons(root) {
    for (const button of root.querySelectorAll("button[data-copy]")) {
      button.addEventListener("click", async () => {
        const input = document.querySelector(button.dataset.copy);
        input.select();
        try {
          await navigator.clipboard.writeText(input.value);
        } catch (e) {
          document.execCommand("copy");
        }
        button.textContent = "Copied";
      });
    }
  }

  function charts(root) {
    const data = root.querySelector("#usage-series");
    if (!data || !window.uPlot) return;
    const s = JSON.parse(data.textContent);
    const width = (el) => Math.max(280, el.clientWidth || 400);
    const cost = (v) => (v === 0 ? "0" : Math.abs(v) < 0.01 ? v.toExponential(1) : v.toFixed(2));
    const count = (v) => (Math.abs(v) >= 1000 ? (v / 1000).toFixed(1) + "k" : String(v));
    const specs = {
      requests: [["requests", "#2563eb"], ["denied", "#dc2626"]],
      tokens: [["prompt_tokens", "#7c3aed"], ["completion_tokens", "#0891b2"]],
      cost: [["cost_usd", "#059669"]],
    };
    for (const el of root.querySelectorAll("[data-chart]")) {
      el.innerHTML = "";
      const series = specs[el.dataset.chart];
      const opts = {
        width: width(el),
        height: 180,
        series: [{}].concat(series.map(([label, stroke]) => ({
          label, stroke, width: 2, fill: stroke + "22", points: { show: s.t.length < 60 },
        }))),
        scales: { x: { time: true, range: [s.start, s.end] } },
        axes: [{}, {
          size: 64,
          values: (u, vals) => vals.map(el.dataset.chart === "cost" ? cost : count),
        }],
      };
      new window.uPlot(opts, [s.t].concat(series.map(([name]) => s[name])), el);
    }
  }

  function init(root) {
    mountEditors(root);
    policyTypes(root);
    copyButtons(root);
    charts(root);
  }

  document.addEventListener("DOMContentLoaded", () => init(document));
  // After an htmx swap (auto-refresh, search): redraw charts, mount new editors.
  document.addEventListener("htmx:afterSettle", () => {
    mountEditors(document);
    charts(document);
  });
})();
