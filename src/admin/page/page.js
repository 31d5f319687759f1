// runoff's live comparison page: polls the admin API and draws what runoff computed (the
// summary's comparison, the history's slots, verdicts, mismatch samples). It formats numbers
// the way `runoff report` does and computes no figure of its own. The admin token, when one is
// needed, is kept in this tab's memory only.
"use strict";

const state = { token: null, timer: null, refreshMs: 2000, window: "60s", history: "10m", busy: false };
const NONE = "—";
const $ = (sel) => document.querySelector(sel);

// ---------------------------------------------------------------- numbers (as the report) --
const group = (v) => Math.round(v).toLocaleString("en-US");
const fmtMs = (ms) => ms == null || !isFinite(ms) || ms < 0 ? NONE
  : ms < 10 ? `${ms.toFixed(2)} ms` : ms < 100 ? `${ms.toFixed(1)} ms` : `${group(ms)} ms`;
const fmtCpu = (ms) => ms == null ? NONE : ms < 0.1 ? `${ms.toFixed(3)} ms` : `${ms.toFixed(2)} ms`;
const fmtRps = (r) => r == null || !isFinite(r) ? NONE
  : r >= 100 ? group(r) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
const fmtErr = (p) => p == null || !isFinite(p) ? NONE : p > 0 && p < 0.05 ? "<0.1%" : `${p.toFixed(1)}%`;
const fmtMb = (b) => b == null ? NONE : b / 1e6 < 1 ? `${(b / 1e6).toFixed(1)} MB` : `${group(b / 1e6)} MB`;
const fmtRatio = (r) => {
  if (r == null || !isFinite(r)) return NONE;
  const one = r.toFixed(1);
  return one === "1.0" ? `${r.toFixed(2)}×` : r >= 100 ? `${group(r)}×` : `${one}×`;
};
const fmtShare = (p) => p == null || !isFinite(p) ? NONE
  : p > 0 && p < 0.5 ? "<1%" : p > 99.5 && p < 100 ? ">99%" : `${p.toFixed(0)}%`;
const fmtPp = (pp) => pp == null || !isFinite(pp) ? NONE : `${pp >= 0 ? "+" : ""}${pp.toFixed(1)} pp`;

// ------------------------------------------------------------------------------- the API --
class NeedsToken extends Error {}

async function api(path, opts = {}) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method: opts.method || "GET",
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    cache: "no-store",
  });
  if (resp.status === 401 || (resp.status === 403 && state.token && !opts.body)) {
    throw new NeedsToken(resp.status === 403 ? "wrong token" : "");
  }
  const json = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(json.error || `${resp.status}`);
  return json;
}

// ---------------------------------------------------------------------------- elements --
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null) e.append(c.nodeType ? c : document.createTextNode(c));
  return e;
}
const svgEl = (tag, attrs = {}) => {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};

// --------------------------------------------------------------------- the seed's table --
function cell(v, cls) { return el("td", { class: cls }, v); }
// A ratio above 1 is worse for latency, CPU and memory.
const judged = (r, worseAbove = true) => r == null ? null : Math.abs(r - 1) < 0.02 ? null
  : (r > 1) === worseAbove ? "worse" : "better";

function comparisonTable(route) {
  const c = route.comparison;
  const b = c && c.baseline;
  const k = c && c.candidate;
  if (!b) return el("p", { class: "mode", text: "No request yet." });
  const bs = b.stats || {}; const ks = (k && k.stats) || {};
  const bl = bs.latency_ms || {}; const kl = ks.latency_ms || {};
  const split = c.traffic && c.traffic.mode === "split";
  const mirrored = c.traffic && c.traffic.mode === "mirror";
  const rows = [];
  if (split) {
    rows.push(["share of callers", fmtShare(c.traffic.baseline_percent), fmtShare(c.traffic.candidate_percent), "", null]);
  }
  rows.push(["req/s", fmtRps(bs.rps), k ? fmtRps(ks.rps) : NONE,
    mirrored ? `copies of ${fmtShare(c.traffic.percent)}` : "", null]);
  rows.push(["avg", fmtMs(bl.mean), fmtMs(kl.mean), fmtRatio(c.mean_ratio), judged(c.mean_ratio)]);
  rows.push(["p50", fmtMs(bl.p50), fmtMs(kl.p50), fmtRatio(c.p50_ratio), judged(c.p50_ratio)]);
  rows.push(["p99", fmtMs(bl.p99), fmtMs(kl.p99), fmtRatio(c.p99_ratio), judged(c.p99_ratio)]);
  rows.push(["error rate", fmtErr(b.error_rate_percent), k ? fmtErr(k.error_rate_percent) : NONE,
    fmtPp(c.error_rate_difference_pp),
    c.error_rate_difference_pp == null || Math.abs(c.error_rate_difference_pp) < 0.05 ? null
      : c.error_rate_difference_pp > 0 ? "worse" : "better"]);
  rows.push(["CPU / request", fmtCpu(b.cpu_ms_per_request), k ? fmtCpu(k.cpu_ms_per_request) : NONE,
    fmtRatio(c.cpu_ratio), judged(c.cpu_ratio)]);
  rows.push(["memory", fmtMb(b.memory_bytes), k ? fmtMb(k.memory_bytes) : NONE,
    fmtRatio(c.memory_ratio), judged(c.memory_ratio)]);
  if (route.compare) {
    const rate = route.compare.match_rate;
    rows.push(["answers match", "", rate == null ? NONE : `${(rate * 100).toFixed(1)}%`,
      `${group(route.compare.matched + route.compare.mismatched)} pairs`, null]);
  }
  if (c.paired) {
    rows.push([`paired median, same requests (${group(c.paired.pairs)} pairs)`, "", "",
      fmtRatio(c.paired.ratio_p50), judged(c.paired.ratio_p50)]);
  }
  const counts = el("tr", {}, el("td", { text: "requests" }),
    cell(group(bs.requests || 0)), cell(k ? group(ks.requests || 0) : NONE), cell(""));
  counts.dataset.row = "requests";
  return el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, el("th", { text: "" }),
      el("th", { scope: "col", text: `${b.backend} (${b.role})` }),
      el("th", { scope: "col", text: k ? `${k.backend} (${k.role})` : "—" }),
      el("th", { scope: "col", text: "difference" }))),
    el("tbody", {}, counts, rows.map(([name, x, y, d, cls]) =>
      el("tr", {}, el("td", { text: name }), cell(x), cell(y), cell(d, cls))))));
}

function websocketTable(route) {
  const ws = route.websocket || [];
  if (!ws.length) return null;
  const kib = (b) => b == null ? NONE : `${(b / 1024).toFixed(1)} KiB`;
  const ratio = route.websocket_comparison && route.websocket_comparison.memory_per_connection_ratio;
  return el("div", {}, el("h3", { text: "WebSockets" }), el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, ["", "open", "peak", "msg/s to backend", "msg/s to client", "p50", "p99",
      "memory / connection"].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ws.map((w) => {
      const l = (w.window && w.window.latency_ms) || {};
      return el("tr", {}, el("td", { text: `${w.backend} (${w.role})` }), cell(group(w.open)), cell(group(w.peak)),
        cell(fmtRps(w.window.messages_per_second_to_backend)), cell(fmtRps(w.window.messages_per_second_to_client)),
        cell(fmtMs(l.p50)), cell(fmtMs(l.p99)), cell(kib(w.memory_per_connection_bytes)));
    }), ratio == null ? null : el("tr", {}, el("td", { text: "candidate ÷ baseline memory / connection" }),
      cell(""), cell(""), cell(""), cell(""), cell(""), cell(""), cell(fmtRatio(ratio), judged(ratio)))))));
}

// ------------------------------------------------------------------------------ charts --
const COLORS = ["var(--primary)", "var(--candidate)", "#8250df", "#bf8700"];

function lineChart(title, series, value, unit, windowSecs) {
  const W = 560, H = 170, L = 44, R = 8, T = 8, B = 20;
  const points = series.map((s) => s.slots.filter((x) => value(x) != null)
    .map((x) => [x.ago_secs, value(x)]));
  const top = Math.max(0, ...points.flat().map((p) => p[1]));
  const max = top > 0 ? top : 1;
  const x = (ago) => L + (W - L - R) * (1 - Math.min(ago, windowSecs) / windowSecs);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  for (const f of [0, 0.5, 1]) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), stroke: "var(--line)" }));
    const t = svgEl("text", { x: 2, y: y(max * f) + 3 }); t.textContent = unit(max * f); svg.append(t);
  }
  const t0 = svgEl("text", { x: L, y: H - 4 }); t0.textContent = `−${Math.round(windowSecs / 60)} min`; svg.append(t0);
  const t1 = svgEl("text", { x: W - R - 20, y: H - 4 }); t1.textContent = "now"; svg.append(t1);
  points.forEach((pts, i) => {
    if (!pts.length) return;
    const color = COLORS[i % COLORS.length];
    const d = pts.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    svg.append(svgEl("path", { d, fill: "none", stroke: color, "stroke-width": 2,
      "stroke-dasharray": series[i].dashed ? "4 3" : "none" }));
    // Each 10-second slot as a dot too (a single slot has no line yet).
    for (const p of pts) {
      svg.append(svgEl("circle", { cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 2.5, fill: color }));
    }
  });
  const legend = el("div", { class: "legend" }, series.map((s, i) => el("span", {},
    el("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }), s.label)));
  return el("figure", { style: "margin:0" }, el("h3", { text: title }), svg, legend);
}

function ratioChart(ratio) {
  const W = 560, H = 150, L = 8, B = 30, T = 8;
  const labels = ratio.edges.map((e, i) => i === 0 ? `≤${e}` : `${ratio.edges[i - 1]}–${e}`)
    .concat(`>${ratio.edges[ratio.edges.length - 1]}`);
  const max = Math.max(1, ...ratio.counts);
  const bw = (W - L) / ratio.counts.length;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "Paired shadow ÷ primary latency ratios" });
  ratio.counts.forEach((n, i) => {
    const h = (H - B - T) * n / max;
    svg.append(svgEl("rect", { x: L + i * bw + 2, y: H - B - h, width: bw - 4, height: h,
      fill: ratio.edges[i] === 1 || ratio.edges[i - 1] === 1 ? "var(--primary)" : "var(--muted)" }));
    const t = svgEl("text", { x: L + i * bw + 2, y: H - 16 }); t.textContent = labels[i]; svg.append(t);
    const c = svgEl("text", { x: L + i * bw + 2, y: H - 4 }); c.textContent = group(n); svg.append(c);
  });
  return el("figure", { style: "margin:0" },
    el("h3", { text: `Shadow ÷ primary, same requests (${group(ratio.pairs)} pairs in the window)` }), svg);
}

function charts(route, hist, windowSecs) {
  if (!hist) return null;
  const lat = [];
  for (const s of hist.series) {
    lat.push({ label: `${s.backend} p50`, slots: s.slots, pick: "p50" });
    lat.push({ label: `${s.backend} p99`, slots: s.slots, pick: "p99", dashed: true });
  }
  const byPick = (x, s) => x[s.pick];
  const latency = lineChart("Latency (upstream side)", lat.map((s) => ({ ...s,
    slots: s.slots.map((x) => ({ ago_secs: x.ago_secs, v: byPick(x, s) })) })), (x) => x.v, fmtMs, windowSecs);
  const errors = lineChart("Error rate", hist.series.map((s) => ({ label: s.backend,
    slots: s.slots.map((x) => ({ ago_secs: x.ago_secs, v: x.values ? 100 * x.errors / x.values : null })) })),
  (x) => x.v, fmtErr, windowSecs);
  return el("div", { class: "grid" }, latency, errors, hist.ratio ? ratioChart(hist.ratio) : null);
}

// ------------------------------------------------------------------ verdicts, samples --
function verdicts(route) {
  const a = route.analysis;
  if (!a) return null;
  return el("div", {}, el("h3", { text: `Verdict: ${a.overall}` }),
    el("p", { class: `verdict ${a.overall}`, text: a.explanation }),
    a.criteria.map((c) => el("p", { class: `verdict ${c.verdict}` }, el("strong", { text: `${c.criterion}: ` }), c.explanation)),
    a.ramp ? el("p", { class: "mode", text: `Ramp: ${a.ramp.state}, weight ${a.ramp.weight}% (step ${a.ramp.step + 1} of ${a.ramp.steps.length}); ${a.ramp.last_decision}` }) : null);
}

function mismatchList(name, samples, paths) {
  if (!samples) return null;
  const snippet = (path) => `ignore_paths: [${path}]`;
  const pathButtons = (paths.paths || []).map((p) => el("button", {
    type: "button", class: "path", "data-path": p.path,
    onclick: (ev) => {
      const box = ev.target.closest(".mismatches").querySelector(".snippet");
      box.value = snippet(p.path); box.hidden = false; box.focus(); box.select();
      if (navigator.clipboard) navigator.clipboard.writeText(box.value).catch(() => {});
    },
  }, el("code", { text: p.path }), ` ${group(p.count)}`));
  return el("div", { class: "mismatches" },
    el("h3", { text: "Latest mismatches" }),
    pathButtons.length ? el("p", {}, "Differing paths (click for an ignore_paths entry): ", pathButtons) : null,
    el("input", { class: "snippet", readonly: true, hidden: true, "aria-label": "ignore_paths entry" }),
    samples.length === 0 ? el("p", { class: "mode", text: "None." }) : el("ul", { class: "samples" },
      samples.map((s) => el("li", {}, el("code", { text: `${s.method} ${s.path}` }),
        ` ${s.primary_status} / ${s.shadow_status} — `,
        s.body.map((d) => el("span", {}, el("code", { class: "diff-path", text: d.path || "(body)" }),
          ` ${JSON.stringify(d.primary)} → ${JSON.stringify(d.shadow)}; `)),
        s.headers.map((h) => el("span", {}, el("code", { text: h.name }), "; "))))));
}

// --------------------------------------------------------------------------- controls --
function controls(rv) {
  const form = el("form", { class: "weights", "aria-label": `Weights of ${rv.name}` });
  for (const s of rv.split) {
    form.append(el("label", {}, `${s.backend} weight`,
      el("input", { type: "number", min: 0, step: 1, name: s.backend, value: s.weight })));
  }
  form.append(el("button", { type: "submit", text: "Set weights" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const i of form.querySelectorAll("input")) body[i.name] = Number(i.value);
    await change(`/api/routes/${encodeURIComponent(rv.name)}/weights`, body);
  });
  const parts = [form];
  if (rv.mirror) {
    const m = el("form", { class: "weights", "aria-label": `Mirror of ${rv.name}` },
      el("label", {}, `mirror to ${rv.mirror.to}, %`,
        el("input", { type: "number", min: 0, max: 100, step: "any", name: "percent", value: rv.mirror.percent })),
      el("button", { type: "submit", text: "Set mirror" }),
      el("button", { type: "button", class: "danger", text: "Stop mirroring (kill switch)",
        onclick: () => change(`/api/routes/${encodeURIComponent(rv.name)}/mirror`, { percent: 0 }) }));
    m.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      await change(`/api/routes/${encodeURIComponent(rv.name)}/mirror`,
        { percent: Number(m.querySelector("input").value) });
    });
    parts.push(m);
  }
  return parts;
}

async function change(path, body) {
  try {
    await api(path, { method: "PUT", body });
    setStatus(`changed: ${path.split("/").slice(-1)[0]}`);
    await refresh(true);
  } catch (e) {
    if (e instanceof NeedsToken) return askToken(e.message);
    setStatus(`refused: ${e.message}`, true);
  }
}

// --------------------------------------------------------------------------- the page --
function setStatus(text, bad = false) {
  const s = $("#status"); s.textContent = text; s.className = bad ? "bad" : "";
}

function askToken(message) {
  stop();
  $("#token-form").hidden = false;
  $("#token-error").textContent = message || "";
  $("#token").focus();
}

function section(name) {
  let s = document.getElementById(`route-${name}`);
  if (!s) {
    s = el("section", { class: "route", id: `route-${name}`, "aria-label": `Route ${name}` },
      el("h2", { text: name }), el("p", { class: "mode" }), el("div", { class: "table" }),
      el("div", { class: "charts" }), el("div", { class: "verdicts" }),
      el("div", { class: "samples-box" }), el("div", { class: "controls-box" }));
    $("#routes").append(s);
  }
  return s;
}

function modeText(route, rv) {
  const c = route.comparison;
  const t = c && c.traffic;
  const w = rv ? rv.split.map((s) => `${s.backend} ${s.weight}`).join(" / ") : "";
  if (t && t.mode === "mirror") return `Mirror: ${route.baseline} serves, ${c.candidate && c.candidate.backend} gets copies of ${fmtShare(t.percent)}. Weights ${w}.`;
  if (t && t.mode === "split") return `Split (canary): weights ${w}.`;
  return `Weights ${w}.`;
}

async function refresh(force = false) {
  if (state.busy && !force) return;
  state.busy = true;
  try {
    const [summary, history, routes] = await Promise.all([
      api(`/api/summary?window=${state.window}`), api(`/api/history?window=${state.history}`), api("/api/routes")]);
    $("#token-form").hidden = true;
    const hist = new Map(history.routes.map((r) => [r.name, r]));
    const rviews = new Map(routes.routes.map((r) => [r.name, r]));
    for (const route of summary.routes) {
      const s = section(route.name);
      const rv = rviews.get(route.name);
      s.querySelector(".mode").textContent = modeText(route, rv);
      s.querySelector(".table").replaceChildren(comparisonTable(route), websocketTable(route) || "");
      s.querySelector(".charts").replaceChildren(charts(route, hist.get(route.name), history.window_secs) || "");
      s.querySelector(".verdicts").replaceChildren(verdicts(route) || "");
      if (route.compare) {
        const [samples, paths] = await Promise.all([
          api(`/api/mismatches?route=${encodeURIComponent(route.name)}&limit=5`),
          api(`/api/mismatches/paths?route=${encodeURIComponent(route.name)}`)]);
        const box = s.querySelector(".samples-box");
        if (!box.contains(document.activeElement)) box.replaceChildren(mismatchList(route.name, samples.samples, paths));
      }
      const ctl = s.querySelector(".controls-box");
      const key = JSON.stringify(rv ? [rv.split, rv.mirror && rv.mirror.percent] : null);
      if (rv && ctl.dataset.key !== key && !ctl.contains(document.activeElement)) {
        ctl.dataset.key = key;
        ctl.replaceChildren(el("h3", { text: "Weights and mirror" }), ...controls(rv));
      }
    }
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (e instanceof NeedsToken) askToken(e.message);
    else setStatus(`cannot reach runoff: ${e.message}`, true);
  } finally {
    state.busy = false;
  }
}

function stop() { if (state.timer) clearInterval(state.timer); state.timer = null; }
function start() {
  stop();
  if (state.refreshMs > 0) state.timer = setInterval(refresh, state.refreshMs);
  refresh(true);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#refresh").addEventListener("change", (e) => { state.refreshMs = Number(e.target.value); start(); });
  $("#window").addEventListener("change", (e) => { state.window = e.target.value; refresh(true); });
  $("#history").addEventListener("change", (e) => { state.history = e.target.value; refresh(true); });
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("#token").value;
    $("#token").value = "";
    start();
  });
  fetch("/page-config.json", { cache: "no-store" })
    .then((r) => r.json())
    .then((cfg) => (cfg.token_required && !state.token ? askToken("") : start()))
    .catch(() => start());
});
