// mvdit report, part 1 of 3: helpers, charts and the step-dependent tables. The embedded run
// data (script#data) is drawn as SVG; no network, no libraries. Part 2 (report_live.js): the
// live panel, event log, thresholds, playback and start-up; part 3 (report_selftest.js): the
// "#selftest" mode the headless-browser test runs.
"use strict";

const ERRORS = [];
window.addEventListener("error", (e) => ERRORS.push(String(e.message || e)));
window.addEventListener("unhandledrejection", (e) => ERRORS.push("unhandled rejection: " + String(e.reason)));

const D = JSON.parse(document.getElementById("data").textContent);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const SVGNS = "http://www.w3.org/2000/svg";
const state = { metric: null, step: null, th: {} };
// Cursor lines of the step-based charts, by section: {el, x: step -> pixel or null}.
const CURSORS = {};

// ---------------------------------------------------------------- helpers
function el(tag, attrs, parent) {
  const e = tag === "svg" || SVG_TAGS.has(tag) ? document.createElementNS(SVGNS, tag) : document.createElement(tag);
  for (const k in attrs || {}) {
    if (k === "text") e.textContent = attrs[k];
    else e.setAttribute(k, attrs[k]);
  }
  if (parent) parent.appendChild(e);
  return e;
}
const SVG_TAGS = new Set(["g", "path", "line", "rect", "text", "circle", "polyline", "title"]);

function fmt(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(Number.isInteger(Math.log10(a)) ? 0 : 3);
  return Number(v.toPrecision(4)).toString();
}

function finite(v) {
  return v !== null && v !== undefined && isFinite(v);
}

function metricInfo(key) {
  return D.metrics.find((m) => m.key === key) || { key: key, label: key, log: false, doc: "" };
}

function makeScale(lo, hi, a, b, log) {
  if (log) {
    lo = Math.log10(lo);
    hi = Math.log10(hi);
  }
  if (hi === lo) {
    hi = lo + 1;
    lo = lo - 1;
  }
  const f = (v) => a + ((log ? Math.log10(v) : v) - lo) / (hi - lo) * (b - a);
  f.invert = (p) => {
    const v = lo + (p - a) / (b - a) * (hi - lo);
    return log ? Math.pow(10, v) : v;
  };
  return f;
}

function ticks(lo, hi, log) {
  if (log) {
    const out = [];
    const e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
    const every = Math.max(1, Math.ceil((e1 - e0 + 1) / 8));
    for (let e = e0; e <= e1; e++) if ((e - e0) % every === 0) out.push(Math.pow(10, e));
    return out.filter((t) => t >= lo * 0.999 && t <= hi * 1.001);
  }
  const span = hi - lo || 1;
  const step = Math.pow(10, Math.floor(Math.log10(span / 5)));
  const m = span / step > 25 ? 5 : span / step > 10 ? 2 : 1;
  const s = step * m;
  const out = [];
  for (let t = Math.ceil(lo / s) * s; t <= hi + 1e-12 * span; t += s) out.push(Number(t.toPrecision(12)));
  return out;
}

function extent(values, log) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (!finite(v) || (log && v <= 0)) continue;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (lo === Infinity) return null;
  if (log) {
    lo = Math.pow(10, Math.floor(Math.log10(lo)));
    hi = Math.pow(10, Math.ceil(Math.log10(hi)));
  } else if (lo === hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  return [lo, hi];
}

const tip = document.getElementById("tip");
function showTip(ev, text) {
  tip.textContent = text;
  tip.style.display = "block";
  const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = x + "px";
  tip.style.top = ev.clientY + 14 + "px";
}
function hideTip() {
  tip.style.display = "none";
}

function runColor(i) {
  return COLORS[i % COLORS.length];
}

// Color of a layer among the anchors (shallow = light, deep = dark).
function layerColor(frac) {
  const t = 0.15 + 0.85 * frac;
  const r = Math.round(255 * (1 - t) + 20 * t), g = Math.round(200 * (1 - t) + 40 * t), b = Math.round(80 * (1 - t) + 120 * t);
  return `rgb(${r},${g},${b})`;
}

// Viridis-like ramp for the heat maps.
const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function rampColor(t) {
  if (!finite(t)) return "#ddd";
  t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
  const i = Math.min(Math.floor(t), RAMP.length - 2), f = t - i;
  const c = RAMP[i].map((v, k) => Math.round(v + f * (RAMP[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// ---------------------------------------------------------------- line chart
// opts: {title, series: [{name, color, points: [[x, y]], width}], logY, xLabel, yLabel,
//        markers: [{x, color, label}], cursorX, w, h}
function lineChart(parent, opts) {
  const W = opts.w || 520, H = opts.h || 260, M = { l: 58, r: 12, t: 22, b: 34 };
  const wrap = el("div", { class: "panel" }, parent);
  const svg = el("svg", { width: W, height: H, class: "chart" }, wrap);
  el("text", { x: M.l, y: 14, text: opts.title || "", "font-weight": "600" }, svg);
  const xs = [], ys = [];
  for (const s of opts.series) for (const p of s.points) {
    if (finite(p[0]) && finite(p[1]) && (!opts.logY || p[1] > 0)) {
      xs.push(p[0]);
      ys.push(p[1]);
    }
  }
  const xe = extent(xs, false), ye = extent(ys, !!opts.logY);
  if (!xe || !ye) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: "no data", class: "muted" }, svg);
    return wrap;
  }
  const sx = makeScale(xe[0], xe[1], M.l, W - M.r, false);
  const sy = makeScale(ye[0], ye[1], H - M.b, M.t, !!opts.logY);
  const axis = el("g", { class: "axis" }, svg);
  for (const t of ticks(ye[0], ye[1], !!opts.logY)) {
    el("line", { x1: M.l, x2: W - M.r, y1: sy(t), y2: sy(t), class: "grid" }, axis);
    el("text", { x: M.l - 4, y: sy(t) + 4, "text-anchor": "end", text: fmt(t) }, axis);
  }
  for (const t of ticks(xe[0], xe[1], false)) {
    el("line", { x1: sx(t), x2: sx(t), y1: H - M.b, y2: H - M.b + 4 }, axis);
    el("text", { x: sx(t), y: H - M.b + 15, "text-anchor": "middle", text: fmt(t) }, axis);
  }
  el("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }, axis);
  el("line", { x1: M.l, x2: M.l, y1: M.t, y2: H - M.b }, axis);
  el("text", { x: (M.l + W - M.r) / 2, y: H - 4, "text-anchor": "middle", text: opts.xLabel || "step" }, svg);
  el("text", { x: 12, y: (M.t + H - M.b) / 2, transform: `rotate(-90 12 ${(M.t + H - M.b) / 2})`, "text-anchor": "middle", text: opts.yLabel || "" }, svg);
  for (const s of opts.series) {
    let d = "", pen = false;
    for (const p of s.points) {
      if (!finite(p[0]) || !finite(p[1]) || (opts.logY && p[1] <= 0)) {
        pen = false;
        continue;
      }
      d += (pen ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1);
      pen = true;
    }
    if (d) el("path", { d: d, fill: "none", stroke: s.color, "stroke-width": s.width || 1.5, "stroke-opacity": s.opacity || 1 }, svg);
  }
  for (const h of opts.hlines || []) {
    const y = sy(h.y);
    if (!finite(h.y) || (opts.logY && h.y <= 0) || y < M.t || y > H - M.b) continue;
    el("line", { x1: M.l, x2: W - M.r, y1: y, y2: y, stroke: h.color, class: "threshold" }, svg);
    el("text", { x: W - M.r - 2, y: y - 3, "text-anchor": "end", text: h.label, fill: h.color }, svg);
  }
  for (const m of opts.markers || []) {
    if (!finite(m.x)) continue;
    el("line", { x1: sx(m.x), x2: sx(m.x), y1: M.t, y2: H - M.b, stroke: m.color, class: "event" }, svg);
    el("text", { x: sx(m.x) + 3, y: M.t + 10, text: m.label, fill: m.color, "font-weight": "600" }, svg);
  }
  if (opts.cursor) {
    const line = el("line", { y1: M.t, y2: H - M.b, class: "cursor" }, svg);
    opts.cursor.push({ el: line, x: (s) => (s >= xe[0] && s <= xe[1] ? sx(s) : null) });
  }
  // Hover: the nearest x of each series.
  const hover = el("rect", { x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "transparent", class: "hover" }, svg);
  const vline = el("line", { y1: M.t, y2: H - M.b, stroke: "#999", visibility: "hidden" }, svg);
  hover.addEventListener("mousemove", (ev) => {
    const box = svg.getBoundingClientRect();
    const x = sx.invert(ev.clientX - box.left);
    const lines = [];
    let best = null;
    for (const s of opts.series) {
      let near = null;
      for (const p of s.points) if (finite(p[1]) && (near === null || Math.abs(p[0] - x) < Math.abs(near[0] - x))) near = p;
      if (near) {
        lines.push(`${s.name}: ${fmt(near[1])}`);
        if (best === null || Math.abs(near[0] - x) < Math.abs(best - x)) best = near[0];
      }
    }
    if (best === null) return;
    vline.setAttribute("x1", sx(best));
    vline.setAttribute("x2", sx(best));
    vline.setAttribute("visibility", "visible");
    showTip(ev, `${opts.xLabel || "step"} ${fmt(best)}\n` + lines.slice(0, 30).join("\n"));
  });
  hover.addEventListener("mouseleave", () => {
    vline.setAttribute("visibility", "hidden");
    hideTip();
  });
  if (opts.legend !== false) {
    const lg = el("div", { class: "legend", style: `max-width:${W}px` }, wrap);
    for (const s of opts.series.slice(0, 12)) {
      const sp = el("span", {}, lg);
      el("span", { class: "swatch", style: `background:${s.color}` }, sp);
      sp.appendChild(document.createTextNode(s.name));
    }
  }
  return wrap;
}

// A fresh cursor list for a section that is being redrawn.
function cursorList(section) {
  return (CURSORS[section] = []);
}

function moveCursors() {
  for (const k in CURSORS) for (const c of CURSORS[k]) {
    const x = finite(state.step) ? c.x(state.step) : null;
    c.el.setAttribute("visibility", finite(x) ? "visible" : "hidden");
    if (finite(x)) {
      c.el.setAttribute("x1", x);
      c.el.setAttribute("x2", x);
    }
  }
}

// ---------------------------------------------------------------- data access
function diag(run) {
  return run.diag || { steps: [], anchors: [], layer: {}, global: {} };
}

// Index of the last record at or before step.
function recordAt(run, step) {
  const s = diag(run).steps;
  let k = -1;
  for (let i = 0; i < s.length; i++) if (s[i] <= step) k = i;
  return k;
}

function allSteps() {
  const set = new Set();
  for (const r of D.runs) for (const s of diag(r).steps) set.add(s);
  return Array.from(set).sort((a, b) => a - b);
}

function eventMarkers(run, color) {
  return (run.events || []).filter((e) => e.event === "mms").map((e) => ({ x: e.onset_step, color: color, label: "MMS" }));
}

function smooth(points, k) {
  if (k <= 1) return points;
  const out = [];
  for (let i = 0; i < points.length; i++) {
    let s = 0, n = 0;
    for (let j = Math.max(0, i - k + 1); j <= i; j++) if (finite(points[j][1])) {
      s += points[j][1];
      n++;
    }
    out.push([points[i][0], n ? s / n : null]);
  }
  return out;
}

// ---------------------------------------------------------------- sections
function renderSummary() {
  const t = document.getElementById("summary");
  t.innerHTML = "";
  const head = el("tr", {}, el("thead", {}, t));
  for (const h of ["run", "residual", "depth", "steps", "held-out loss", "MMS onset", "peak G_mean/G_ctr (any anchor)", "deep TCS (end)"]) el("th", { text: h }, head);
  const body = el("tbody", {}, t);
  D.runs.forEach((r, i) => {
    const tr = el("tr", {}, body);
    const td = el("td", {}, tr);
    el("span", { class: "swatch", style: `background:${runColor(i)}` }, td);
    td.appendChild(document.createTextNode(r.name));
    const s = r.summary || {};
    el("td", { text: r.residual || "" }, tr);
    el("td", { text: r.depth || "" }, tr);
    el("td", { text: s.steps === undefined ? "" : s.steps }, tr);
    el("td", { text: fmt(s.eval_loss) }, tr);
    const onset = el("td", { text: s.mms_onset === null || s.mms_onset === undefined ? "none" : String(s.mms_onset) }, tr);
    if (finite(s.mms_onset)) onset.className = "event-tag";
    el("td", { text: fmt(s.peak_ratio) }, tr);
    el("td", { text: fmt(s.deep_tcs_end) }, tr);
  });
}

function renderLoss() {
  const box = document.getElementById("loss");
  box.innerHTML = "";
  const series = [], markers = [];
  D.runs.forEach((r, i) => {
    series.push({ name: r.name + " (train, mean of 10)", color: runColor(i), points: smooth(r.train || [], 10) });
    if ((r.eval || []).length) series.push({ name: r.name + " (held-out)", color: runColor(i), points: r.eval, width: 3, opacity: 0.55 });
    markers.push(...eventMarkers(r, runColor(i)));
  });
  lineChart(box, { title: "training and held-out loss", series: series, xLabel: "step", yLabel: "loss", markers: markers, cursor: cursorList("loss"), hlines: thresholdLines("loss"), w: 760, h: 300 });
}

function renderGlobal() {
  const box = document.getElementById("global");
  box.innerHTML = "";
  const defs = [
    ["deep_ratio", "deep max G_mean/G_ctr (W_O, W2)", true],
    ["deep_tcs", "deep mean token cosine similarity", false],
    ["grad_norm", "global grad norm (before clipping)", true],
    ["deep_rho", "deep mean trunk ρ", true],
    ["deep_mu_eff", "deep mean μ_eff", false],
  ];
  const cursors = cursorList("global");
  for (const [key, title, log] of defs) {
    const series = D.runs.map((r, i) => ({
      name: r.name, color: runColor(i), points: diag(r).steps.map((s, k) => [s, (diag(r).global[key] || [])[k]]),
    }));
    const markers = [];
    D.runs.forEach((r, i) => markers.push(...eventMarkers(r, runColor(i))));
    lineChart(box, { title: title, series: series, logY: log, yLabel: key, markers: markers, cursor: cursors, hlines: thresholdLines(key), w: 400, h: 240 });
  }
}

function metricValues(run, key) {
  return diag(run).layer[key] || [];
}

function renderHeatmaps() {
  const box = document.getElementById("heatmaps");
  box.innerHTML = "";
  const info = metricInfo(state.metric);
  document.getElementById("metric-doc").textContent = info.label + (info.doc ? " — " + info.doc : "");
  let vals = [];
  for (const r of D.runs) for (const row of metricValues(r, state.metric)) vals = vals.concat(row);
  const log = !!info.log;
  const ext = extent(vals, log);
  if (!ext) {
    el("p", { class: "muted", text: "no values of this metric in these runs" }, box);
    return;
  }
  const cs = makeScale(ext[0], ext[1], 0, 1, log);
  const cursors = cursorList("heatmaps");
  D.runs.forEach((r, ri) => {
    const dg = diag(r), rows = metricValues(r, state.metric);
    const wrap = el("div", { class: "panel" }, box);
    el("h3", { text: r.name }, wrap);
    const W = 360, H = 240, M = { l: 48, r: 8, t: 6, b: 30 };
    const svg = el("svg", { width: W, height: H, class: "heatmap" }, wrap);
    const ns = dg.steps.length, na = dg.anchors.length;
    if (!ns || !na || !rows.length) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: "no data" }, svg);
      return;
    }
    const cw = (W - M.l - M.r) / ns, ch = (H - M.t - M.b) / na;
    const g = el("g", {}, svg);
    for (let si = 0; si < ns; si++) for (let ai = 0; ai < na; ai++) {
      const v = rows[si] ? rows[si][ai] : null;
      const ok = finite(v) && (!log || v > 0);
      el("rect", {
        x: (M.l + si * cw).toFixed(2), y: (M.t + (na - 1 - ai) * ch).toFixed(2), width: (cw + 0.6).toFixed(2), height: (ch + 0.6).toFixed(2),
        fill: ok ? rampColor(cs(v)) : "#ddd", "data-si": si, "data-ai": ai,
      }, g);
    }
    g.addEventListener("mousemove", (ev) => {
      const t = ev.target;
      if (!t.hasAttribute || !t.hasAttribute("data-si")) return;
      const si = +t.getAttribute("data-si"), ai = +t.getAttribute("data-ai");
      showTip(ev, `${r.name}\nstep ${dg.steps[si]}, layer ${dg.anchors[ai]}\n${info.label}: ${fmt(rows[si][ai])}`);
    });
    g.addEventListener("mouseleave", hideTip);
    g.addEventListener("click", (ev) => {
      const t = ev.target;
      if (t.hasAttribute && t.hasAttribute("data-si")) setStep(dg.steps[+t.getAttribute("data-si")]);
    });
    // Axes: a few layer and step labels.
    const every = Math.max(1, Math.ceil(na / 8));
    for (let ai = 0; ai < na; ai += every) el("text", { x: M.l - 4, y: M.t + (na - 1 - ai + 0.5) * ch + 4, "text-anchor": "end", text: dg.anchors[ai] }, svg);
    el("text", { x: 9, y: (M.t + H - M.b) / 2, transform: `rotate(-90 9 ${(M.t + H - M.b) / 2})`, "text-anchor": "middle", text: "layer" }, svg);
    const severy = Math.max(1, Math.ceil(ns / 6));
    for (let si = 0; si < ns; si += severy) el("text", { x: M.l + (si + 0.5) * cw, y: H - M.b + 13, "text-anchor": "middle", text: dg.steps[si] }, svg);
    el("text", { x: (M.l + W - M.r) / 2, y: H - 3, "text-anchor": "middle", text: "step" }, svg);
    const stepX = (s) => {
      let k = 0;
      for (let i = 0; i < ns; i++) if (dg.steps[i] <= s) k = i;
      return M.l + (k + 0.5) * cw;
    };
    for (const m of eventMarkers(r, "#ff3b30")) {
      const x = stepX(m.x);
      el("line", { x1: x, x2: x, y1: M.t, y2: H - M.b, stroke: "#ff3b30", class: "event" }, svg);
      el("text", { x: x + 3, y: M.t + 11, text: "MMS", fill: "#ff3b30", "font-weight": "600" }, svg);
    }
    const cur = el("line", { y1: M.t, y2: H - M.b, stroke: "#fff", "stroke-width": 1.5, "stroke-dasharray": "3 2" }, svg);
    cursors.push({ el: cur, x: (s) => (ns && s >= dg.steps[0] ? stepX(s) : null) });
  });
  // Color bar.
  const bar = el("div", { class: "panel" }, box);
  el("h3", { text: log ? "scale (log)" : "scale" }, bar);
  const svg = el("svg", { width: 90, height: 240 }, bar);
  for (let i = 0; i < 50; i++) el("rect", { x: 4, y: 6 + (49 - i) * 4, width: 16, height: 4.5, fill: rampColor(i / 49) }, svg);
  for (const t of ticks(ext[0], ext[1], log)) {
    const y = 6 + (1 - cs(t)) * 200;
    if (y >= 4 && y <= 208) el("text", { x: 24, y: y + 4, text: fmt(t) }, svg);
  }
}

function renderLines() {
  const box = document.getElementById("lines");
  box.innerHTML = "";
  const info = metricInfo(state.metric);
  const cursors = cursorList("lines");
  D.runs.forEach((r, ri) => {
    const dg = diag(r), rows = metricValues(r, state.metric), na = dg.anchors.length;
    const series = dg.anchors.map((a, ai) => ({
      name: "layer " + a, color: layerColor(na > 1 ? ai / (na - 1) : 1), width: 1.2,
      points: dg.steps.map((s, si) => [s, rows[si] ? rows[si][ai] : null]),
    }));
    lineChart(box, { title: r.name + ": " + info.label, series: series, logY: !!info.log, yLabel: state.metric, markers: eventMarkers(r, runColor(ri)), cursor: cursors, w: 360, h: 240, legend: false });
  });
}

// Everything that follows the scrubber (cheap enough to run on every playback tick).
function renderStep() {
  const s = state.step;
  document.getElementById("step-label").textContent = finite(s) ? String(s) : "–";
  moveCursors();
  renderLive();
  markEvents();
  moveTimeline();
  const info = metricInfo(state.metric);
  // Profile over layers at this step, every run.
  const prof = document.getElementById("profile");
  prof.innerHTML = "";
  const series = D.runs.map((r, i) => {
    const k = recordAt(r, s), dg = diag(r), rows = metricValues(r, state.metric);
    return { name: r.name, color: runColor(i), points: k < 0 || !rows[k] ? [] : dg.anchors.map((a, ai) => [a, rows[k][ai]]) };
  });
  lineChart(prof, { title: info.label + " by layer at step " + s, series: series, logY: !!info.log, xLabel: "layer", yLabel: state.metric, w: 560, h: 260 });
  // Every anchor's value of the selected metric, one column per run.
  const t = document.getElementById("step-table");
  t.innerHTML = "";
  const head = el("tr", {}, el("thead", {}, t));
  el("th", { text: "layer" }, head);
  D.runs.forEach((r) => {
    const k = recordAt(r, s);
    el("th", { text: `${r.name} @ ${k < 0 ? "–" : diag(r).steps[k]}` }, head);
  });
  const layers = Array.from(new Set([].concat(...D.runs.map((r) => diag(r).anchors)))).sort((a, b) => a - b);
  const body = el("tbody", {}, t);
  for (const a of layers) {
    const tr = el("tr", { "data-layer": a }, body);
    el("td", { text: a }, tr);
    for (const r of D.runs) {
      const k = recordAt(r, s), ai = diag(r).anchors.indexOf(a), rows = metricValues(r, state.metric);
      el("td", { text: k < 0 || ai < 0 || !rows[k] ? "–" : fmt(rows[k][ai]) }, tr);
    }
  }
  // Every metric of every anchor for one run at this step.
  const all = document.getElementById("all-metrics");
  all.innerHTML = "";
  const pick = document.getElementById("run-pick");
  const r = D.runs[+pick.value || 0];
  if (!r) return;
  const k = recordAt(r, s), dg = diag(r);
  const keys = D.metrics.map((m) => m.key).filter((key) => dg.layer[key]);
  const h2 = el("tr", {}, el("thead", {}, all));
  el("th", { text: "layer" }, h2);
  for (const key of keys) el("th", { text: key, title: metricInfo(key).label }, h2);
  const b2 = el("tbody", {}, all);
  dg.anchors.forEach((a, ai) => {
    const tr = el("tr", {}, b2);
    el("td", { text: a }, tr);
    for (const key of keys) el("td", { text: k < 0 || !dg.layer[key][k] ? "–" : fmt(dg.layer[key][k][ai]) }, tr);
  });
}

function renderDefs() {
  const dl = document.getElementById("defs");
  dl.innerHTML = "";
  for (const m of D.metrics) {
    el("dt", { text: `${m.label} (${m.key})` }, dl);
    el("dd", { text: m.doc }, dl);
  }
}

