// mvdit report, part 3 of 3: start-up, and with "#selftest" in the URL a run through the real
// controls (events dispatched on the DOM, playback awaited on timers). The verdict goes to the
// body's data-status attribute (ok, or error: and the failures) and as JSON into the element
// pre#selftest-verdict, for the headless-browser test (train/tests/report.rs); every failure
// names what broke.

function fire(target, type, x, y) {
  target.dispatchEvent(new MouseEvent(type, { bubbles: true, clientX: x, clientY: y }));
}

function sleep(ms) {
  return new Promise((done) => setTimeout(done, ms));
}

const $ = (sel) => document.querySelector(sel);
const $$ = (sel) => Array.from(document.querySelectorAll(sel));
const shownStep = () => +$("#step-label").textContent;
const liveLevels = (key) => $$(`#live td.live-cell[data-key="${key}"]`).map((td) => td.getAttribute("data-level"));
const liveText = () => $$("#live tbody tr").map((tr) => tr.textContent).join("|");

function setInput(input, value, type) {
  input.value = value;
  input.dispatchEvent(new Event(type, { bubbles: true }));
}

async function selfTest() {
  const fail = [], checks = {};
  const expect = (name, cond, what) => {
    checks[name] = !!cond;
    if (!cond) fail.push(name + ": " + what);
  };
  const sel = $("#metric"), scrub = $("#scrub"), last = STEPS.length - 1;
  // Metric selector: every metric draws its heat maps and names itself.
  expect("metrics", sel.options.length > 0, "no metrics in the selector");
  for (const o of Array.from(sel.options)) {
    setInput(sel, o.value, "change");
    if (!$$("#heatmaps svg.heatmap rect").length) fail.push("metric: empty heat map for " + o.value);
    if (!$("#metric-doc").textContent.startsWith(metricInfo(o.value).label)) fail.push("metric: the definition line does not follow " + o.value);
  }
  if (sel.options.length) {
    setInput(sel, sel.options[0].value, "change");
    expect("metric_switch", state.metric === sel.options[0].value, "state.metric is " + state.metric);
  }
  // Scrubber: the step label, tables and live panel follow it.
  const seen = {};
  for (const v of [0, Math.floor(last / 2), last]) {
    setInput(scrub, v, "input");
    seen[v] = liveText();
    if (shownStep() !== STEPS[v]) fail.push(`scrub: label ${shownStep()} at position ${v}, want ${STEPS[v]}`);
    if (!$$("#step-table tbody tr").length) fail.push("scrub: step table empty at " + v);
    if ($$("#live td.live-step").some((td) => +td.textContent > STEPS[v])) fail.push("scrub: a live row is after the scrubber at " + v);
  }
  expect("scrub_live", last === 0 || seen[0] !== seen[last], "the live panel is the same at the first and last step");
  // ±100 steps.
  setInput(scrub, 0, "input");
  $("#btn-fwd").click();
  const fwd = shownStep();
  expect("step_forward", last === 0 || fwd > STEPS[0], `+100 left the step at ${fwd}`);
  $("#btn-back").click();
  expect("step_back", shownStep() === STEPS[0], `−100 from ${fwd} gave ${shownStep()}`);
  // Thresholds: the inputs recolour the live values.
  const before = liveLevels("grad_norm");
  setInput($("#th-grad_norm-crit"), 1e30, "input");
  setInput($("#th-grad_norm-warn"), 1e30, "input");
  const allOk = liveLevels("grad_norm");
  setInput($("#th-grad_norm-warn"), -1e30, "input");
  setInput($("#th-grad_norm-crit"), -1e30, "input");
  const allCrit = liveLevels("grad_norm");
  setInput($("#th-grad_norm-warn"), 5, "input");
  setInput($("#th-grad_norm-crit"), 1, "input");
  const refused = $("#th-grad_norm-warn").classList.contains("bad") && state.th.grad_norm.warn === -1e30;
  $("#th-reset").click();
  expect("thresholds", allOk.length && allOk.every((l) => l === "ok") && allCrit.every((l) => l === "crit"), `grad_norm levels ${allOk} / ${allCrit}`);
  expect("threshold_refused", refused, "warn above crit was applied");
  expect("threshold_reset", liveLevels("grad_norm").join() === before.join(), `after reset ${liveLevels("grad_norm")}, before ${before}`);
  // Event log: one row per embedded entry; a click moves the scrubber to its step.
  const rows = $$("#events .ev");
  const want = [].concat(...D.runs.map((r) => r.log || [])).length;
  expect("events", rows.length === want, `${rows.length} rows, ${want} entries in the data`);
  const clicks = [];
  for (const row of rows.slice(0, 12)) {
    setInput(scrub, row.getAttribute("data-step") > STEPS[0] ? 0 : last, "input");
    row.click();
    clicks.push([+row.getAttribute("data-step"), shownStep()]);
  }
  expect("event_click", clicks.every(([want, got]) => got === STEPS[snapIndex(want)]), "clicks → steps " + JSON.stringify(clicks));
  // Hovers and a heat-map click.
  const rect = $("#heatmaps svg.heatmap rect[data-si]");
  if (rect) {
    const b = rect.getBoundingClientRect();
    fire(rect, "mousemove", b.left + 1, b.top + 1);
    expect("heatmap_hover", tip.textContent.includes("layer"), "heat map hover shows nothing");
    fire(rect, "click", b.left + 1, b.top + 1);
    expect("heatmap_click", shownStep() === diag(D.runs[0]).steps[+rect.getAttribute("data-si")], "a cell click did not move the scrubber");
  } else fail.push("no heat-map cells");
  const hover = $("#loss svg rect.hover");
  if (hover) {
    const b = hover.getBoundingClientRect();
    fire(hover, "mousemove", b.left + b.width / 2, b.top + 5);
    expect("loss_hover", tip.textContent.includes("step"), "loss hover shows nothing");
    fire(hover, "mouseleave", 0, 0);
  } else fail.push("no loss chart");
  // Playback from the first step: the label, live panel and cursors move; it stops at the end.
  const played = [];
  const watch = new MutationObserver(() => played.push(shownStep()));
  watch.observe($("#step-label"), { childList: true, characterData: true, subtree: true });
  setInput(scrub, 0, "input");
  const live0 = liveText(), cursor0 = $("#loss line.cursor").getAttribute("x1");
  // The slowest speed that plays the whole run in at most 30 ticks.
  for (const o of Array.from($("#speed").options)) {
    setInput($("#speed"), o.value, "change");
    if (last / playRate() <= 30) break;
  }
  $("#btn-play").click();
  const playing = play.on && $("#btn-play").textContent.includes("pause");
  await sleep(Math.ceil(last / playRate() + 1) * play.tickMs + 500);
  watch.disconnect();
  expect("play", playing, "the play button did not start playback");
  expect("play_moves", new Set(played).size >= Math.min(2, STEPS.length - 1), "steps shown while playing: " + played);
  expect("play_ends", shownStep() === STEPS[last] && !play.on && $("#btn-play").textContent.includes("play"), `stopped at ${shownStep()}, playing ${play.on}`);
  expect("play_live", last === 0 || liveText() !== live0, "the live panel did not change while playing");
  expect("play_cursor", last === 0 || $("#loss line.cursor").getAttribute("x1") !== cursor0, "the loss cursor did not move");
  // Pause holds the step; the speed control changes the pace.
  setInput($("#speed"), "0.25", "change");
  $("#btn-play").click();
  expect("play_restarts", shownStep() === STEPS[0], "play at the end did not start from the first step");
  await sleep(play.tickMs * 3);
  $("#btn-play").click();
  const held = shownStep();
  await sleep(play.tickMs * 20);
  expect("pause", !play.on && shownStep() === held, `paused at ${held}, now ${shownStep()}`);
  expect("speed_slow", last < 2 || held === STEPS[0], `0.25× moved to ${held} in 3 ticks`);
  setInput($("#speed"), "16", "change");
  $("#btn-play").click();
  await sleep(play.tickMs * 2 + 50);
  expect("speed", last > 2 * playRate() || (shownStep() === STEPS[last] && !play.on), `16× is at ${shownStep()} after 2 ticks`);
  const events = $$("#events .ev").map((r) => ({ step: +r.getAttribute("data-step"), run: D.runs[+r.getAttribute("data-run")].name, kind: r.getAttribute("data-kind"), level: [...r.classList].find((c) => LEVEL_COLORS[c]) }));
  return { ok: fail.length === 0, failures: fail, checks: checks, events: events, played: played, steps: STEPS };
}

function verdict(v) {
  const all = v.failures.concat(ERRORS);
  v.ok = all.length === 0;
  v.errors = ERRORS;
  el("pre", { id: "selftest-verdict", hidden: "", text: JSON.stringify(v) }, document.body);
  document.body.setAttribute("data-cells", $$("#heatmaps svg.heatmap rect[data-si]").length);
  document.body.setAttribute("data-events", $$("svg .event").length);
  document.body.setAttribute("data-status", all.length ? "error: " + all.join("; ") : "ok");
}

try {
  init();
  document.body.setAttribute("data-rendered", "1");
  // "#step=N" opens the page at step N (a link to a moment, the docs' screenshot).
  const at = /^#step=(\d+)$/.exec(location.hash);
  if (at) setStep(+at[1]);
  if (location.hash === "#selftest") {
    selfTest().then(verdict, (e) => verdict({ failures: ["self test threw: " + (e && e.stack ? e.stack : e)], checks: {} }));
  }
} catch (e) {
  document.body.setAttribute("data-status", "error: " + (e && e.stack ? e.stack : e));
  throw e;
}
