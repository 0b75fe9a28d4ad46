"""The report's stylesheet and script, inlined into the page (plain CSS and JavaScript).

The script reads the JSON embedded in ``<script id="mg-data">`` and: draws every static
figure (``[data-fig]``); fills the trace viewer (one ``<span class="sent">`` per
sentence, coloured by the mode of ``#colour-by``, a tooltip ``#mg-tooltip`` on hover, a
token-weight view behind ``#token-view``); and, when a trace is picked in
``#trace-select`` (or a row of the corpus table is clicked), redraws that trace's
matrices, graph and trajectory (``[data-tfig]``). Trace text is inserted as text, never
as markup.
"""

from __future__ import annotations

__all__ = ["CSS", "JS"]

CSS = """
:root { --fg: #1a1a1a; --muted: #5a5a5a; --line: #d9d9d9; --bg: #ffffff; --soft: #f5f6f7; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header.top { position: sticky; top: 0; z-index: 10; background: #fff;
  border-bottom: 1px solid var(--line); padding: 8px 24px; display: flex; gap: 18px;
  align-items: baseline; flex-wrap: wrap; }
header.top h1 { font-size: 17px; margin: 0 12px 0 0; }
header.top a { color: #0072B2; text-decoration: none; font-size: 13px; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 24px 60px; }
section { border-bottom: 1px solid var(--line); padding: 18px 0 26px; }
section h2 { font-size: 18px; margin: 4px 0 6px; }
section h3 { font-size: 15px; margin: 18px 0 6px; }
p.lead { color: var(--muted); margin: 0 0 12px; max-width: 960px; }
.empty, .why { color: #7a4b00; background: #fff8e6; border-left: 3px solid #E69F00;
  padding: 8px 12px; margin: 8px 0; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 10px; }
.card { background: var(--soft); border-radius: 6px; padding: 10px 12px; }
.card b { display: block; font-size: 12px; color: var(--muted); font-weight: 600; }
.card span { font-variant-numeric: tabular-nums; word-break: break-all; }
table.tbl { border-collapse: collapse; font-size: 12.5px; font-variant-numeric: tabular-nums; }
table.tbl th, table.tbl td { border-bottom: 1px solid var(--line); padding: 4px 8px;
  text-align: right; white-space: nowrap; }
table.tbl th { background: var(--soft); position: sticky; top: 0; }
table.tbl td.l, table.tbl th.l { text-align: left; }
table.tbl td.w { white-space: normal; min-width: 240px; text-align: left; }
table.tbl tr.pick { cursor: pointer; }
table.tbl tr.pick:hover { background: #eef6fb; }
table.tbl tr.sel { background: #dcecf7; }
.scroll { overflow: auto; max-height: 460px; border: 1px solid var(--line); }
details { margin: 4px 0; } summary { cursor: pointer; color: #0072B2; }
pre.json { background: var(--soft); padding: 8px; font-size: 12px; overflow: auto; max-height: 320px; }
.controls { display: flex; gap: 18px; flex-wrap: wrap; align-items: center; margin: 6px 0 10px; }
.controls label { font-weight: 600; font-size: 13px; }
.controls select { font-size: 13px; padding: 2px 4px; max-width: 340px; }
#trace-meta { color: var(--muted); font-size: 13px; margin-bottom: 6px; }
#legend { display: flex; gap: 8px; flex-wrap: wrap; margin: 6px 0 10px; font-size: 12px; }
#legend .chip { padding: 1px 8px; border-radius: 3px; border: 1px solid #bbb; }
#legend .bar { width: 160px; height: 12px; border: 1px solid #bbb; display: inline-block;
  vertical-align: middle; margin: 0 6px; }
.textbox { white-space: pre-wrap; font: 14px/1.9 ui-serif, Georgia, serif; background: #fff;
  border: 1px solid var(--line); border-radius: 6px; padding: 14px 16px; max-height: 560px;
  overflow: auto; }
.sent { border-radius: 3px; padding: 1px 0; cursor: default; }
.sent.plan { text-decoration: underline; text-decoration-thickness: 2px; text-underline-offset: 3px; }
.sent.na { outline: 1px dashed #bbb; }
.sent:hover, .tok:hover { outline: 2px solid #000; }
.tok { border-right: 1px solid #e4e4e4; }
.tok.plan { background: rgb(245, 197, 102); text-decoration: underline; text-underline-offset: 3px; }
#mg-tooltip { position: fixed; z-index: 50; pointer-events: none; background: #fff;
  border: 1px solid #888; border-radius: 5px; box-shadow: 0 2px 8px rgba(0,0,0,.2);
  padding: 6px 9px; font-size: 12.5px; max-width: 420px; line-height: 1.45; }
#mg-tooltip div:first-child { font-weight: 600; }
.figbox { min-height: 60px; }
.note { color: var(--muted); font-size: 12.5px; }
"""

JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("mg-data").textContent);
  var CONF = { responsive: true, displaylogo: false };
  var current = null;

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  function plot(box, spec, why) {
    var el = $(".plot", box), msg = $(".why", box);
    if (spec) {
      msg.hidden = true; el.hidden = false;
      var layout = Object.assign({}, spec.layout, { template: D.template });
      Plotly.react(el, spec.data, layout, CONF);
    } else {
      if (el.data) { Plotly.purge(el); }
      el.hidden = true; msg.hidden = false; msg.textContent = why || "Nothing to show.";
    }
  }

  $$("[data-fig]").forEach(function (box) {
    var k = box.getAttribute("data-fig");
    plot(box, D.figs[k], (D.why || {})[k]);
  });

  // ------------------------------------------------------------------ colours
  function rgb(hex) { return [1, 3, 5].map(function (i) { return parseInt(hex.slice(i, i + 2), 16); }); }
  function mix(hex, t) {
    t = Math.max(0, Math.min(1, t));
    var c = rgb(hex);
    return "rgb(" + c.map(function (v) { return Math.round(255 + (v - 255) * t); }).join(", ") + ")";
  }
  var PS = "#E69F00", IMP = "#56B4E9";

  function fmt(v) {
    if (v === null || v === undefined) { return "—"; }
    if (typeof v !== "number") { return String(v); }
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e4)) { return v.toExponential(2); }
    return String(Number(v.toPrecision(3)));
  }

  function modeOf() { var s = $("#colour-by"); return s ? s.value : "tag"; }

  function colourSentences() {
    if (!current) { return; }
    var mode = modeOf(), t = current, max = 0, key = null;
    if (mode.indexOf("imp:") === 0) {
      key = mode.slice(4);
      t.sents.forEach(function (s) { var v = s.imp && s.imp[key]; if (typeof v === "number" && v > max) { max = v; } });
    }
    $$("#trace-text .sent").forEach(function (el) {
      var s = t.sents[+el.getAttribute("data-k")], bg = "transparent", na = false;
      if (mode === "tag") {
        if (s.tag) { bg = mix(D.tags[s.tag] || D.tags.unknown, 0.5); } else { na = true; }
      } else if (mode === "ps") {
        if (typeof s.ps === "number") { bg = mix(PS, 0.9 * s.ps); } else { na = true; }
      } else if (key) {
        var v = s.imp ? s.imp[key] : null;
        if (typeof v === "number" && max > 0) { bg = mix(IMP, Math.max(v, 0) / max); } else { na = true; }
      }
      el.style.backgroundColor = bg;
      el.classList.toggle("na", na);
      el.classList.toggle("plan", mode === "tag" && !!s.plan);
    });
    legend(mode, max);
  }

  function legend(mode, max) {
    var box = $("#legend"); if (!box) { return; }
    box.textContent = "";
    function chip(text, bg, extra) {
      var c = document.createElement("span"); c.className = "chip"; c.textContent = text;
      c.style.backgroundColor = bg; if (extra) { c.style.textDecoration = extra; }
      box.appendChild(c);
    }
    function bar(hex, lo, hi, what) {
      var w = document.createElement("span");
      w.appendChild(document.createTextNode(what + ": " + lo));
      var b = document.createElement("span"); b.className = "bar";
      b.style.background = "linear-gradient(to right, " + mix(hex, 0) + ", " + mix(hex, 1) + ")";
      w.appendChild(b); w.appendChild(document.createTextNode(hi));
      box.appendChild(w);
    }
    if (mode === "tag") {
      var seen = {};
      current.sents.forEach(function (s) { if (s.tag) { seen[s.tag] = 1; } });
      Object.keys(D.tags).forEach(function (k) { if (seen[k]) { chip(k.replace(/_/g, " "), mix(D.tags[k], 0.5)); } });
      chip("underlined: planning sentence", "#fff", "underline");
    } else if (mode === "ps") {
      bar(PS, "0", "1", "planning score");
    } else {
      bar(IMP, "0", fmt(max) + " (this trace's maximum)", (D.modeLabels || {})[mode] || mode);
    }
    var na = document.createElement("span"); na.className = "chip"; na.style.outline = "1px dashed #bbb";
    na.textContent = "dashed: no value"; box.appendChild(na);
  }

  // ------------------------------------------------------------------ tooltip
  var tip = $("#mg-tooltip");
  function showTip(lines, ev) {
    if (!tip) { return; }
    tip.textContent = "";
    lines.forEach(function (l) { var d = document.createElement("div"); d.textContent = l; tip.appendChild(d); });
    tip.hidden = false; moveTip(ev);
  }
  function moveTip(ev) {
    if (!tip || tip.hidden) { return; }
    var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) { x = ev.clientX - w - 14; }
    if (y + h > window.innerHeight - 8) { y = ev.clientY - h - 14; }
    tip.style.left = Math.max(4, x) + "px"; tip.style.top = Math.max(4, y) + "px";
  }
  function hideTip() { if (tip) { tip.hidden = true; } }

  function sentLines(s) {
    var out = ["sentence " + s.i + (s.node !== undefined ? " · node " + s.node + (s.rev ? " (a revisit)" : "") : " · node —")];
    out.push("tag: " + (s.tag ? s.tag : "— (no label)") + " · planning: " + (s.plan === undefined ? "—" : (s.plan ? "yes" : "no")));
    out.push("planning score: " + fmt(s.ps));
    var parts = (D.imp || []).map(function (p) {
      var v = s.imp ? s.imp[p[0]] : undefined;
      return p[0] + ": " + (v === undefined ? "not scored" : fmt(v));
    });
    out.push(parts.length ? "importance: " + parts.join(" · ") : "importance: not computed in this run");
    return out;
  }

  function bindHover(box, linesOf) {
    box.addEventListener("mouseover", function (ev) {
      var el = ev.target.closest ? ev.target.closest("[data-k]") : null;
      if (!el || !box.contains(el)) { return; }
      showTip(linesOf(+el.getAttribute("data-k")), ev);
    });
    box.addEventListener("mousemove", moveTip);
    box.addEventListener("mouseout", function (ev) {
      var to = ev.relatedTarget;
      if (!to || !to.closest || !to.closest("[data-k]")) { hideTip(); }
    });
    box.addEventListener("mouseleave", hideTip);
  }

  // ------------------------------------------------------------------ viewer
  function piece(parent, text) { if (text) { parent.appendChild(document.createTextNode(text)); } }

  function renderText(t) {
    var box = $("#trace-text"); box.textContent = "";
    var pos = 0;
    t.sents.forEach(function (s, k) {
      piece(box, t.text.slice(pos, s.s));
      var sp = document.createElement("span");
      sp.className = "sent"; sp.setAttribute("data-k", k); sp.setAttribute("data-step", s.i);
      sp.textContent = t.text.slice(s.s, s.e);
      box.appendChild(sp); pos = Math.max(pos, s.e);
    });
    piece(box, t.text.slice(pos));
  }

  function renderTokens(t) {
    var box = $("#token-text"), why = $("#token-why");
    box.textContent = "";
    if (!t.tokens) { box.hidden = true; why.hidden = false; why.textContent = D.why.tokens || "No token weights for this trace."; return; }
    why.hidden = true;
    var tk = t.tokens, pos = 0;
    tk.offsets.forEach(function (o, k) {
      piece(box, t.text.slice(pos, o[0]));
      var sp = document.createElement("span");
      sp.className = "tok" + (tk.plan[k] ? " plan" : ""); sp.setAttribute("data-k", k);
      sp.textContent = t.text.slice(o[0], o[1]);
      box.appendChild(sp); pos = Math.max(pos, o[1]);
    });
    if (tk.shown < tk.n) { piece(box, "\n[… " + (tk.n - tk.shown) + " more tokens not shown]"); } else { piece(box, t.text.slice(pos)); }
    $("#token-note").textContent = tk.n + " tokens, " + Math.round(100 * (tk.planning_share || 0)) +
      "% planning (highlighted): HICRA raises their advantage to A' = A + α|A| (α is the trainer's, 0.2 in the paper); the weight column multiplies A.";
  }

  function tokenLines(k) {
    var tk = current.tokens;
    return ["token " + k + " (id " + tk.ids[k] + ")",
      tk.plan[k] ? "planning token: HICRA boost A' = A + α|A|" : "execution token: advantage unchanged",
      "weight: " + fmt(tk.weight[k])];
  }

  function setView() {
    var on = $("#token-view") && $("#token-view").checked;
    $("#trace-text").hidden = !!on;
    $("#token-pane").hidden = !on;
    $("#colour-by").disabled = !!on;
  }

  function renderMeta(t) {
    var f = t.fields || {}, bits = [];
    ["model", "checkpoint", "correct", "answer"].forEach(function (k) {
      if (f[k] !== undefined && f[k] !== null) { bits.push(k + ": " + f[k]); }
    });
    bits.push(t.sents.length + " sentences");
    $("#trace-meta").textContent = bits.join(" · ");
    var notes = $("#trace-notes"); notes.textContent = (t.notes || []).join(" ");
  }

  function select(id) {
    var t = null;
    D.traces.forEach(function (x) { if (x.id === id) { t = x; } });
    if (!t) { return; }
    current = t;
    var s = $("#trace-select"); if (s && s.value !== id) { s.value = id; }
    renderMeta(t); renderText(t); renderTokens(t); colourSentences(); setView();
    $$("[data-tfig]").forEach(function (box) {
      var k = box.getAttribute("data-tfig"), f = (D.tfigs[id] || {})[k];
      plot(box, f, (D.tfigWhy[id] || {})[k] || D.why[k]);
    });
    $$("#corpus-table tr[data-trace]").forEach(function (r) { r.classList.toggle("sel", r.getAttribute("data-trace") === id); });
    $$(".trace-name").forEach(function (el) { el.textContent = id; });
  }

  if (D.traces && D.traces.length && $("#trace-select")) {
    $("#trace-select").addEventListener("change", function (ev) { select(ev.target.value); });
    $("#colour-by").addEventListener("change", colourSentences);
    $("#token-view").addEventListener("change", setView);
    bindHover($("#trace-text"), function (k) { return sentLines(current.sents[k]); });
    bindHover($("#token-text"), tokenLines);
    $$("#corpus-table tr[data-trace]").forEach(function (r) {
      r.addEventListener("click", function () {
        var id = r.getAttribute("data-trace");
        if (D.traces.some(function (x) { return x.id === id; })) { select(id); document.getElementById("trace-viewer").scrollIntoView(); }
      });
    });
    select(D.traces[0].id);
  }
  document.documentElement.setAttribute("data-ready", "1");
})();
"""
