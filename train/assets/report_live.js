// mvdit report, part 2 of 3: thresholds (ok/warn/crit), the live panel with sparklines, the
// event log, the timeline strip, playback over steps, and start-up.

// ---------------------------------------------------------------- thresholds
function thresholdOf(key) {
  return state.th[key] || null;
}

// "ok" | "warn" | "crit" | "" (no threshold or no value); warn and crit at or above their level.
function levelOf(key, v) {
  const t = thresholdOf(key);
  if (!t || !finite(v)) return "";
  return v >= t.crit ? "crit" : v >= t.warn ? "warn" : "ok";
}

const LEVEL_COLORS = { ok: "#1a9850", warn: "#e08a00", crit: "#d62728" };

function thresholdLines(key) {
  const t = thresholdOf(key);
  return t ? [{ y: t.warn, color: LEVEL_COLORS.warn, label: "warn " + fmt(t.warn) }, { y: t.crit, color: LEVEL_COLORS.crit, label: "crit " + fmt(t.crit) }] : [];
}

function resetThresholds() {
  state.th = {};
  for (const t of D.thresholds || []) state.th[t.key] = { warn: t.warn, crit: t.crit };
}

function renderThresholds() {
  const t = document.getElementById("thresholds");
  t.innerHTML = "";
  const head = el("tr", {}, el("thead", {}, t));
  for (const h of ["value", "key", "warn ≥", "crit ≥"]) el("th", { text: h }, head);
  const body = el("tbody", {}, t);
  for (const d of D.thresholds || []) {
    const tr = el("tr", {}, body);
    el("td", { text: d.label }, tr);
    el("td", {}, tr).appendChild(el("code", { text: d.key }));
    for (const which of ["warn", "crit"]) {
      const input = el("input", { type: "number", step: "any", id: `th-${d.key}-${which}`, value: state.th[d.key][which], "data-key": d.key, "data-which": which }, el("td", {}, tr));
      input.addEventListener("input", onThresholdInput);
    }
  }
}

function onThresholdInput(ev) {
  const key = ev.target.getAttribute("data-key");
  const w = document.getElementById(`th-${key}-warn`), c = document.getElementById(`th-${key}-crit`);
  const warn = parseFloat(w.value), crit = parseFloat(c.value);
  const ok = isFinite(warn) && isFinite(crit) && warn <= crit;
  w.classList.toggle("bad", !ok);
  c.classList.toggle("bad", !ok);
  if (!ok) return;
  state.th[key] = { warn: warn, crit: crit };
  renderLoss();
  renderGlobal();
  renderStep();
}

// ---------------------------------------------------------------- live panel
function liveSeries(run, key) {
  return diag(run).global[key] || [];
}

// The last `n` values up to record k as an SVG path in a w×h box (gaps skipped).
function sparkPath(values, k, n, w, h) {
  const part = values.slice(Math.max(0, k - n + 1), k + 1);
  const fin = part.filter(finite);
  if (fin.length < 1) return "";
  let lo = Math.min(...fin), hi = Math.max(...fin);
  if (hi === lo) {
    lo -= 1;
    hi += 1;
  }
  let d = "", pen = false;
  part.forEach((v, i) => {
    if (!finite(v)) {
      pen = false;
      return;
    }
    const x = part.length > 1 ? (i / (part.length - 1)) * w : w;
    const y = h - 1 - ((v - lo) / (hi - lo)) * (h - 2);
    d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
    pen = true;
  });
  return d;
}

const SPARK = 60;

function renderLive() {
  const t = document.getElementById("live");
  t.innerHTML = "";
  const head = el("tr", {}, el("thead", {}, t));
  el("th", { text: "run" }, head);
  el("th", { text: "record" }, head);
  for (const m of D.live || []) {
    const th = thresholdOf(m.key);
    el("th", { text: m.label, title: th ? `warn ≥ ${fmt(th.warn)}, crit ≥ ${fmt(th.crit)}` : "no threshold" }, head);
  }
  const body = el("tbody", {}, t);
  D.runs.forEach((r, ri) => {
    const k = recordAt(r, state.step);
    const tr = el("tr", { "data-run": ri }, body);
    const name = el("td", { title: "deep anchors: " + (r.deep || []).join(", ") }, tr);
    el("span", { class: "swatch", style: `background:${runColor(ri)}` }, name);
    name.appendChild(document.createTextNode(r.name));
    el("td", { class: "live-step", text: k < 0 ? "–" : String(diag(r).steps[k]) }, tr);
    for (const m of D.live || []) {
      const values = liveSeries(r, m.key), v = k < 0 ? null : values[k], level = levelOf(m.key, v);
      const td = el("td", { class: "live-cell", "data-key": m.key, "data-level": level }, tr);
      el("span", { class: "val " + level, text: fmt(v) }, td);
      const svg = el("svg", { class: "spark", width: 90, height: 22 }, td);
      if (k >= 0) el("path", { d: sparkPath(values, k, SPARK, 90, 22), stroke: runColor(ri) }, svg);
    }
  });
}

// ---------------------------------------------------------------- event log
function allEvents() {
  const out = [];
  D.runs.forEach((r, ri) => (r.log || []).forEach((e) => out.push(Object.assign({ run: ri }, e))));
  return out.sort((a, b) => a.step - b.step || a.run - b.run);
}

function renderEvents() {
  const box = document.getElementById("events");
  box.innerHTML = "";
  const events = allEvents();
  document.getElementById("event-count").textContent = String(events.length);
  if (!events.length) el("p", { class: "muted", text: "no events" }, box);
  for (const e of events) {
    const row = el("div", { class: "ev " + e.level, "data-step": e.step, "data-run": e.run, "data-kind": e.kind, title: "click: move the scrubber here" }, box);
    el("span", { class: "t", text: "S" + String(e.step).padStart(5, "0") }, row);
    const who = el("span", { class: "who" }, row);
    el("span", { class: "swatch", style: `background:${runColor(e.run)}` }, who);
    who.appendChild(document.createTextNode(D.runs[e.run].name));
    el("span", { class: "msg", text: e.text }, row);
    row.addEventListener("click", () => setStep(e.step));
  }
}

// Events after the scrubber are dimmed; the latest one at or before it is marked.
function markEvents() {
  const rows = Array.from(document.querySelectorAll("#events .ev"));
  let last = null;
  for (const row of rows) {
    const past = +row.getAttribute("data-step") <= state.step;
    row.classList.toggle("future", !past);
    row.classList.remove("current");
    if (past) last = row;
  }
  if (last) {
    last.classList.add("current");
    const box = document.getElementById("events");
    box.scrollTop = Math.max(0, last.offsetTop - box.clientHeight / 2);
  }
}

// ---------------------------------------------------------------- timeline strip
const TL = { w: 1000, h: 34 };
function tlX(s) {
  const lo = STEPS[0], hi = STEPS[STEPS.length - 1];
  return hi > lo ? ((s - lo) / (hi - lo)) * TL.w : TL.w / 2;
}

function renderTimeline() {
  const svg = document.getElementById("timeline");
  svg.innerHTML = "";
  if (!STEPS.length) return;
  D.runs.forEach((r, ri) => {
    const loss = liveSeries(r, "loss"), steps = diag(r).steps, fin = loss.filter(finite);
    if (!fin.length) return;
    const lo = Math.min(...fin), hi = Math.max(...fin), span = hi - lo || 1;
    let d = "", pen = false;
    steps.forEach((s, i) => {
      if (!finite(loss[i])) return (pen = false);
      d += (pen ? "L" : "M") + tlX(s).toFixed(1) + " " + (TL.h - 3 - ((loss[i] - lo) / span) * (TL.h - 6)).toFixed(1);
      pen = true;
    });
    el("path", { d: d, stroke: runColor(ri), fill: "none", "stroke-opacity": 0.45, "vector-effect": "non-scaling-stroke" }, svg);
  });
  for (const e of allEvents()) el("line", { x1: tlX(e.step), x2: tlX(e.step), y1: 0, y2: TL.h, stroke: LEVEL_COLORS[e.level] || "#888", "vector-effect": "non-scaling-stroke", "stroke-width": 2 }, svg);
  el("line", { id: "timeline-head", y1: 0, y2: TL.h, stroke: "#222", "stroke-width": 2, "vector-effect": "non-scaling-stroke" }, svg);
  let drag = false;
  const pick = (ev) => {
    const b = svg.getBoundingClientRect();
    if (b.width <= 0) return;
    const f = Math.max(0, Math.min(1, (ev.clientX - b.left) / b.width));
    setStep(STEPS[0] + f * (STEPS[STEPS.length - 1] - STEPS[0]), true);
  };
  svg.addEventListener("mousedown", (ev) => {
    drag = true;
    pick(ev);
  });
  svg.addEventListener("mousemove", (ev) => drag && pick(ev));
  window.addEventListener("mouseup", () => (drag = false));
}

function moveTimeline() {
  const head = document.getElementById("timeline-head");
  if (head && finite(state.step)) {
    head.setAttribute("x1", tlX(state.step));
    head.setAttribute("x2", tlX(state.step));
  }
}

// ---------------------------------------------------------------- step and playback
let STEPS = [];
const play = { on: false, pos: 0, timer: null, tickMs: 100 };

function stepIndex() {
  return Math.max(0, STEPS.indexOf(state.step));
}

// Index of the record step nearest to s (or the last one at or before it).
function snapIndex(s, nearest) {
  let k = 0;
  for (let i = 0; i < STEPS.length; i++) {
    if (nearest ? Math.abs(STEPS[i] - s) < Math.abs(STEPS[k] - s) : STEPS[i] <= s) k = i;
  }
  return k;
}

function showIndex(k) {
  if (!STEPS.length) return;
  k = Math.max(0, Math.min(STEPS.length - 1, k));
  document.getElementById("scrub").value = k;
  state.step = STEPS[k];
  renderStep();
}

// Moves the scrubber to step s (snapped to a record step) and everything that follows it.
function setStep(s, nearest) {
  const k = snapIndex(s, nearest);
  play.pos = k;
  showIndex(k);
}

// ±d steps: the record nearest to step ± d, at least one record on.
function jump(d) {
  const cur = stepIndex();
  let k = snapIndex(state.step + d, true);
  if (k === cur) k = Math.max(0, Math.min(STEPS.length - 1, cur + Math.sign(d)));
  play.pos = k;
  showIndex(k);
}

// Records per tick: a whole run takes about 30 s at 1×, at least 2.5 records a second.
function playRate() {
  return Math.max(0.25, STEPS.length / 300) * (+document.getElementById("speed").value || 1);
}

function setPlaying(on) {
  play.on = on = on && STEPS.length > 0;
  clearTimeout(play.timer);
  const btn = document.getElementById("btn-play");
  btn.textContent = on ? "❚❚ pause" : "▶ play";
  btn.classList.toggle("on", on);
  if (!on) return;
  if (stepIndex() >= STEPS.length - 1) showIndex(0);
  play.pos = stepIndex();
  play.timer = setTimeout(tick, play.tickMs);
}

function tick() {
  if (!play.on) return;
  play.pos += playRate();
  const k = Math.min(STEPS.length - 1, Math.floor(play.pos));
  if (k !== stepIndex()) showIndex(k);
  if (k >= STEPS.length - 1) setPlaying(false);
  else play.timer = setTimeout(tick, play.tickMs);
}

// ---------------------------------------------------------------- start-up
function renderAll() {
  renderLoss();
  renderGlobal();
  renderHeatmaps();
  renderLines();
  renderStep();
}

function init() {
  document.getElementById("title").textContent = D.title;
  resetThresholds();
  const sel = document.getElementById("metric");
  const present = new Set();
  for (const r of D.runs) for (const k in diag(r).layer) present.add(k);
  const metrics = D.metrics.filter((m) => present.has(m.key));
  for (const m of metrics) el("option", { value: m.key, text: m.label }, sel);
  state.metric = metrics.find((m) => m.key === "tcs") ? "tcs" : metrics.length ? metrics[0].key : null;
  if (state.metric) sel.value = state.metric;
  sel.addEventListener("change", () => {
    state.metric = sel.value;
    renderHeatmaps();
    renderLines();
    renderStep();
  });
  STEPS = allSteps();
  const scrub = document.getElementById("scrub");
  scrub.min = 0;
  scrub.max = Math.max(0, STEPS.length - 1);
  scrub.value = scrub.max;
  state.step = STEPS.length ? STEPS[STEPS.length - 1] : null;
  play.pos = +scrub.max;
  document.getElementById("step-total").textContent = STEPS.length ? String(STEPS[STEPS.length - 1]) : "–";
  scrub.addEventListener("input", () => {
    play.pos = +scrub.value;
    showIndex(+scrub.value);
  });
  const speed = document.getElementById("speed");
  for (const v of [0.25, 0.5, 1, 2, 4, 8, 16]) el("option", { value: v, text: v + "×" }, speed);
  speed.value = "1";
  document.getElementById("btn-play").addEventListener("click", () => setPlaying(!play.on));
  document.getElementById("btn-back").addEventListener("click", () => jump(-100));
  document.getElementById("btn-fwd").addEventListener("click", () => jump(100));
  document.getElementById("th-reset").addEventListener("click", () => {
    resetThresholds();
    renderThresholds();
    renderLoss();
    renderGlobal();
    renderStep();
  });
  const pick = document.getElementById("run-pick");
  D.runs.forEach((r, i) => el("option", { value: i, text: r.name }, pick));
  pick.addEventListener("change", renderStep);
  renderSummary();
  renderDefs();
  renderThresholds();
  renderEvents();
  renderTimeline();
  renderAll();
}
