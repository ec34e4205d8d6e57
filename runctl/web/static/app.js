// runctl's portal. Every string from the store goes into the page as text (textContent),
// never as HTML: a tag value of <script>alert(1)</script> is shown as it is.
"use strict";

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
const live = document.getElementById("live");
const charts = [];  // uPlot instances to destroy when the page changes
let source = null;  // the EventSource of the page shown

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "onclick" || k === "onchange" || k === "oninput") e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path) {
  const r = await fetch(path, {credentials: "same-origin"});
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function fmtTime(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }
function fmtDur(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}
function fmtVal(v) { return v === null || v === undefined ? "" : typeof v === "number" ? +v.toPrecision(6) : String(v); }
function statusCell(s) { return el("span", {class: "status status-" + s}, s); }
function link(href, text) {
  const a = el("a", {href}, text);
  a.onclick = (ev) => { if (ev.ctrlKey || ev.metaKey) return; ev.preventDefault(); go(href); };
  return a;
}
function setCrumbs(...parts) { crumbs.replaceChildren(...parts.map(p => typeof p === "string" ? el("span", {}, p) : p)); }

function clearPage() {
  while (charts.length) charts.pop().destroy();
  if (source) { source.close(); source = null; }
  live.textContent = "";
}

function watch(runIds, onChange) {
  if (!runIds.length) return;
  source = new EventSource("/api/events?runs=" + runIds.map(encodeURIComponent).join(","));
  source.addEventListener("change", (ev) => { live.textContent = "live"; onChange(JSON.parse(ev.data)); });
  source.onerror = () => { live.textContent = "reconnecting…"; };
}

// -- pages ---------------------------------------------------------------------------------
async function experimentsPage() {
  setCrumbs("experiments");
  const exps = await api("/api/experiments");
  const rows = exps.map(e => el("tr", {}, el("td", {}, link("/experiments/" + encodeURIComponent(e.name), e.name)),
    el("td", {class: "num"}, e.runs), el("td", {class: "num"}, e.active), el("td", {}, e.last_created ?
      new Date(e.last_created * 1000).toISOString().slice(0, 19).replace("T", " ") : "")));
  main.replaceChildren(el("h1", {}, "Experiments"), exps.length ? el("table", {},
    el("tr", {}, el("th", {}, "experiment"), el("th", {}, "runs"), el("th", {}, "active"), el("th", {}, "last run")),
    rows) : el("p", {class: "muted"}, "No runs yet: `runctl submit JOB.yaml`."));
}

async function runsPage(experiment) {
  setCrumbs(link("/", "experiments"), experiment);
  const params = new URLSearchParams(location.search);
  const state = {status: params.get("status") || "", tag: params.get("tag") || "", sort: params.get("sort") || "-created",
                 metrics: params.get("metrics") || ""};
  const table = el("div");
  const chosen = new Set();
  const compare = el("button", {onclick: () => go("/compare?runs=" + [...chosen].map(encodeURIComponent).join(","))},
                     "Compare selected");
  async function render() {
    const q = new URLSearchParams({experiment, sort: state.sort, metrics: state.metrics, status: state.status, tag: state.tag});
    history.replaceState(null, "", location.pathname + "?" + new URLSearchParams(
      Object.entries(state).filter(([, v]) => v)).toString());
    const runs = await api("/api/runs?" + q);
    const metricNames = state.metrics.split(",").filter(Boolean);
    const head = (key, label) => el("th", {onclick: () => { state.sort = state.sort === "-" + key ? key : "-" + key; render(); }},
                                    label + (state.sort === key ? " ▲" : state.sort === "-" + key ? " ▼" : ""));
    table.replaceChildren(el("table", {},
      el("tr", {}, el("th", {}, ""), head("number", "#"), el("th", {}, "run"), head("status", "status"),
         head("duration", "duration"), el("th", {}, "target"), el("th", {}, "tags"),
         metricNames.map(m => el("th", {}, m)), head("created", "created")),
      runs.map(r => el("tr", {},
        el("td", {}, (() => { const c = el("input", {type: "checkbox"}); c.checked = chosen.has(r.id);
          c.onchange = () => { c.checked ? chosen.add(r.id) : chosen.delete(r.id); }; return c; })()),
        el("td", {class: "num"}, r.number), el("td", {}, link("/runs/" + encodeURIComponent(r.id), r.display_name || r.id)),
        el("td", {}, statusCell(r.status)), el("td", {class: "num"}, fmtDur(r.duration_s)),
        el("td", {}, r.compute_target || ""),
        el("td", {}, Object.entries(r.tags).map(([k, v]) => el("div", {}, k + ": " + v))),
        metricNames.map(m => el("td", {class: "num"}, fmtVal(r.latest[m]))),
        el("td", {}, fmtTime(r.created_at))))));
  }
  const status = el("select", {onchange: () => { state.status = status.value; render(); }},
    ["", "Queued", "Running", "Completed", "Failed", "Canceled"].map(s => el("option", {value: s}, s || "any status")));
  status.value = state.status;
  const tag = el("input", {placeholder: "tag (key or key:value)", value: state.tag});
  tag.onchange = () => { state.tag = tag.value; render(); };
  const metrics = el("input", {placeholder: "metric columns: loss,acc", value: state.metrics});
  metrics.onchange = () => { state.metrics = metrics.value; render(); };
  main.replaceChildren(el("h1", {}, experiment), el("div", {class: "filters"}, status, tag, metrics, compare), table);
  await render();
}

function chartFor(container, series, opts) {
  // series: {x: [...], ys: [{label, values}]}
  const width = Math.max(360, container.clientWidth - 16);
  const u = new uPlot({width, height: 240, scales: {x: {time: opts.xLabel === "time"}}, legend: {live: true},
    series: [{label: opts.xLabel || "x"}, ...series.ys.map((s, i) => ({label: s.label, stroke: PALETTE[i % PALETTE.length],
      width: 1.5, spanGaps: true, points: {show: series.x.length < 60}}))],
    axes: [{label: opts.xLabel || ""}, {}]}, [series.x, ...series.ys.map(s => s.values)], container);
  charts.push(u);
  return u;
}
const PALETTE = ["#1f5fbf", "#d0542b", "#2f9e44", "#8e44ad", "#c79100", "#0b7285", "#e64980", "#495057"];

function chartBox(title) {
  const box = el("div", {class: "chart"});
  const note = el("div", {class: "note"});
  const plot = el("div", {class: "plot"});
  box.append(el("strong", {}, title), note, plot);
  return {box, note, plot, chart: null};
}

function drawMetric(slot, m) {
  let x, ys, xLabel;
  if (m.kind === "rows") {
    const cols = Object.keys(m.columns);
    const xCol = cols.includes("x") ? "x" : null;
    x = xCol ? m.columns[xCol] : m.columns[cols[0]].map((_, i) => i);
    ys = cols.filter(c => c !== xCol && m.columns[c].every(v => typeof v === "number" || v === null))
             .map(c => ({label: c, values: m.columns[c]}));
    xLabel = xCol || "row";
    if (xCol) {  // an x/y chart: points in x order
      const order = x.map((_, i) => i).sort((a, b) => x[a] - x[b]);
      x = order.map(i => x[i]);
      ys = ys.map(s => ({label: s.label, values: order.map(i => s.values[i])}));
    }
    slot.note.textContent = m.total + " rows";
  } else {
    x = m.x; ys = [{label: m.name, values: m.y}]; xLabel = m.x_label || "index";
    slot.note.textContent = m.downsampled ? `${m.total} values, downsampled to ${m.shown} points (${m.method})`
                                          : `${m.total} values`;
  }
  slot.plot.dataset.points = String(x.length);
  slot.plot.dataset.total = String(m.total);
  if (slot.chart && slot.chart.series.length === ys.length + 1) {
    slot.chart.setData([x, ...ys.map(s => s.values)]);
  } else {
    if (slot.chart) { slot.chart.destroy(); charts.splice(charts.indexOf(slot.chart), 1); }
    slot.plot.replaceChildren();
    slot.chart = chartFor(slot.plot, {x, ys}, {xLabel});
  }
}

async function runPage(runId) {
  let run = await api("/api/runs/" + encodeURIComponent(runId));
  setCrumbs(link("/", "experiments"), link("/experiments/" + encodeURIComponent(run.experiment), run.experiment), run.id);
  const header = el("div");
  const chartsDiv = el("div", {class: "charts"});
  const systemDiv = el("div", {class: "charts", id: "system-charts"});
  const logPre = el("pre", {class: "log", id: "log"});
  const logName = el("select");
  const xAxis = el("select", {id: "x-axis"}, el("option", {value: "step"}, "x: step (or index)"),
                   el("option", {value: "time"}, "x: time"));
  xAxis.onchange = () => { slots.forEach(s => { if (s.chart) { s.chart.destroy(); charts.splice(charts.indexOf(s.chart), 1); s.chart = null; } });
                           refreshCharts(); };
  const outputs = el("div");
  const images = el("div", {class: "images"});
  const children = el("div");
  const envBox = el("div", {id: "run-environment"});
  const slots = new Map();
  let logOffset = null;

  function renderHeader() {
    header.replaceChildren(el("h1", {}, run.display_name || run.id),
      el("table", {class: "kv"},
        el("tr", {}, el("td", {}, "status"), el("td", {id: "run-status"}, statusCell(run.status),
           run.error ? el("span", {class: "error"}, " " + run.error) : null)),
        el("tr", {}, el("td", {}, "run id"), el("td", {}, run.id)),
        el("tr", {}, el("td", {}, "compute target"), el("td", {}, (run.compute_target || "") + (run.host ? " on " + run.host : ""))),
        el("tr", {}, el("td", {}, "created / started / ended"),
           el("td", {}, [fmtTime(run.created_at), fmtTime(run.started_at), fmtTime(run.ended_at)].join(" / "))),
        el("tr", {}, el("td", {}, "duration"), el("td", {}, fmtDur(run.duration_s))),
        run.parent_id ? el("tr", {}, el("td", {}, "parent"), el("td", {}, link("/runs/" + encodeURIComponent(run.parent_id), run.parent_id))) : null,
        el("tr", {}, el("td", {}, "tags"), el("td", {id: "run-tags"},
           Object.entries(run.tags).map(([k, v]) => el("div", {class: "tag"}, k + ": " + v)))),
        Object.entries(run.properties).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v)))));
    outputs.replaceChildren(run.outputs.length ? el("ul", {}, run.outputs.map(f => el("li", {},
      el("a", {href: "/api/runs/" + encodeURIComponent(run.id) + "/files/" + f.path.split("/").map(encodeURIComponent).join("/")},
         f.path), el("span", {class: "muted"}, " " + f.size + " bytes")))) : el("p", {class: "muted"}, "none (yet)"));
    images.replaceChildren(...run.images.map(i => el("figure", {}, el("img", {alt: i.name,
      src: "/api/runs/" + encodeURIComponent(run.id) + "/files/" + i.path.split("/").map(encodeURIComponent).join("/") + "?inline=1"}),
      el("figcaption", {}, i.name))));
    children.replaceChildren(run.children.length ? el("table", {}, el("tr", {}, el("th", {}, "run"), el("th", {}, "status"), el("th", {}, "tags")),
      run.children.map(c => el("tr", {}, el("td", {}, link("/runs/" + encodeURIComponent(c.id), c.display_name || c.id)),
        el("td", {}, statusCell(c.status)), el("td", {}, Object.entries(c.tags).map(([k, v]) => k + ": " + v).join(", "))))) :
      el("p", {class: "muted"}, "none"));
    const env = run.environment_record;
    if (!env) envBox.replaceChildren(el("p", {class: "muted"}, "no record (yet)"));
    else if (!envBox.dataset.shown) {
      envBox.dataset.shown = "1";
      const rows = [["python", env.python ? env.python.version + " (" + env.python.executable + ")" : ""], ["os", env.os],
                    ["host", env.host], ["image", env.image], ["GPUs", (env.gpus || []).join(", ")],
                    ["driver / CUDA", env.driver ? env.driver + " / " + (env.cuda || "?") : ""]].filter(([k, v]) => v);
      const pk = Object.entries(env.packages || {}).sort(([a], [b]) => a.toLowerCase() < b.toLowerCase() ? -1 : 1);
      envBox.replaceChildren(el("table", {class: "kv"}, rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v)))),
        el("details", {}, el("summary", {}, pk.length + " packages"), el("pre", {class: "config"}, pk.map(([k, v]) => k + "==" + v).join("\n"))));
    }
    const names = run.logs.map(f => f.path);
    if (!names.includes("logs/std_log.txt")) names.unshift("logs/std_log.txt");
    if (logName.options.length !== names.length) {
      const was = logName.value;
      logName.replaceChildren(...names.map(n => el("option", {value: n}, n)));
      logName.value = was && names.includes(was) ? was : "logs/std_log.txt";
    }
  }

  let chartBusy = false, chartAgain = false;
  async function refreshCharts() {
    if (chartBusy) { chartAgain = true; return; }
    chartBusy = true;
    try {
      const placeholder = chartsDiv.querySelector("p.muted");
      if (placeholder && run.metrics.length) placeholder.remove();
      for (const m of run.metrics.filter(m => m.kind !== "image")) {
        const box = m.name.startsWith("system/") ? systemDiv : chartsDiv;  // the launcher's samples, apart
        if (!slots.has(m.name)) { const s = chartBox(m.name); slots.set(m.name, s); box.appendChild(s.box); }
        const data = await api("/api/runs/" + encodeURIComponent(run.id) + "/metrics/" + encodeURIComponent(m.name) + "?points=" +
                               Math.max(200, Math.round(chartsDiv.clientWidth || 1000)) + "&x=" + xAxis.value);
        if (data.kind === "table" || (data.kind === "rows" && !Object.keys(data.columns).length)) continue;
        drawMetric(slots.get(m.name), data);
      }
      if (!run.metrics.length && !placeholder) chartsDiv.replaceChildren(el("p", {class: "muted"}, "no metrics (yet)"));
    } finally {
      chartBusy = false;
      if (chartAgain) { chartAgain = false; setTimeout(refreshCharts, 250); }
    }
  }

  async function refreshLog(reset) {
    if (reset) { logOffset = null; logPre.textContent = ""; }
    const q = new URLSearchParams({name: logName.value || "logs/std_log.txt"});
    if (logOffset !== null) q.set("offset", logOffset);
    const t = await api("/api/runs/" + encodeURIComponent(run.id) + "/logs?" + q);
    if (t.offset < (logOffset || 0)) { logPre.textContent = ""; }  // the file was replaced
    const atBottom = logPre.scrollTop + logPre.clientHeight >= logPre.scrollHeight - 20;
    logPre.appendChild(document.createTextNode(t.text));
    logOffset = t.offset;
    if (atBottom) logPre.scrollTop = logPre.scrollHeight;
  }
  logName.onchange = () => refreshLog(true);

  const trialsBox = el("div", {id: "trials"});
  const trialsChart = chartBox("");
  trialsChart.plot.id = "trials-chart";
  let trialsShown = "";
  function renderTrials() {
    const t = run.tuning;
    if (!t) return;
    const key = JSON.stringify([t.trials.map(r => [r.id, r.status, r.reports]), run.status]);
    if (key === trialsShown) return;
    trialsShown = key;
    const best = t.best_run;
    trialsBox.replaceChildren(
      el("p", {}, `${t.sampling} sampling, ${t.goal} ${t.primary_metric_name}, ${t.trials.length} of ${t.max_total_runs} runs, ` +
                  `${t.max_concurrent_runs} at a time` + (best ? `; best: ${best.id} (${fmtVal(best.primary_metric.value)})` : "")),
      el("table", {id: "trials-table"},
        el("tr", {}, ["run", "status", "best " + t.primary_metric_name, "last", "reports", "hyperparameters", ""].map(h => el("th", {}, h))),
        t.trials.map(r => el("tr", {}, el("td", {}, link("/runs/" + encodeURIComponent(r.id), r.id)), el("td", {}, statusCell(r.status)),
          el("td", {class: "num"}, fmtVal(r.best)), el("td", {class: "num"}, fmtVal(r.last)), el("td", {class: "num"}, String(r.reports)),
          el("td", {}, Object.entries(r.hyperparameters).map(([k, v]) => k + "=" + fmtVal(v)).join(" ")),
          el("td", {class: "muted"}, r.status === "Canceled" ? (r.error || "") : "")))));
    trialsChart.box.querySelector("strong").textContent = t.primary_metric_name + " of every trial, by report";
    trialsChart.note.textContent = t.series_note;
    const n = Math.max(0, ...t.series.map(s => s.y.length));
    const x = Array.from({length: n}, (_, i) => i + 1);
    const ys = t.series.map(s => ({label: s.id, values: x.map((_, i) => i < s.y.length ? s.y[i] : null)}));
    trialsChart.plot.dataset.series = String(ys.length);
    if (trialsChart.chart) { trialsChart.chart.destroy(); charts.splice(charts.indexOf(trialsChart.chart), 1); trialsChart.chart = null; }
    trialsChart.plot.replaceChildren();
    if (n) trialsChart.chart = chartFor(trialsChart.plot, {x, ys}, {xLabel: "report"});
  }
  const tuningPart = run.tuning ? [el("h2", {}, "Trials"), trialsBox, el("div", {class: "charts"}, trialsChart.box)] : [];

  main.replaceChildren(header, ...tuningPart, el("h2", {}, "Metrics ", xAxis), chartsDiv, el("h2", {}, "System"), systemDiv,
    el("h2", {}, "Logs ", logName), logPre,
    el("h2", {}, "Images"), images, el("h2", {}, "Outputs"), outputs, el("h2", {}, "Child runs"), children,
    el("h2", {}, "Environment"), envBox,
    el("h2", {}, "Configuration"), el("pre", {class: "config"}, JSON.stringify(run.config, null, 2)));
  renderHeader();
  renderTrials();
  await Promise.all([refreshCharts(), refreshLog(true)]);
  let lastChart = 0;
  if (run.tuning) {  // trials start while the page is open: look again while the tuning runs
    const page = location.pathname;
    const poll = setInterval(async () => {
      if (location.pathname !== page) { clearInterval(poll); return; }
      run = await api("/api/runs/" + encodeURIComponent(run.id));
      renderHeader(); renderTrials();
      if (["Completed", "Failed", "Canceled"].includes(run.status)) clearInterval(poll);
    }, 2000);
  }
  watch([run.id, ...run.children.map(c => c.id)], async (changes) => {
    run = await api("/api/runs/" + encodeURIComponent(run.id));
    renderHeader();
    renderTrials();
    const now = Date.now();
    if (now - lastChart > 500) { lastChart = now; refreshCharts(); } else setTimeout(refreshCharts, 500);
    refreshLog(false);
  });
}

async function comparePage() {
  const ids = (new URLSearchParams(location.search).get("runs") || "").split(",").filter(Boolean);
  setCrumbs(link("/", "experiments"), "compare");
  if (ids.length < 2) { main.replaceChildren(el("p", {}, "Pick two runs or more on an experiment's page.")); return; }
  const cmp = await api("/api/compare?runs=" + ids.map(encodeURIComponent).join(","));
  const runs = cmp.runs;
  const label = r => r.display_name || r.id;
  const fmt = v => v === undefined || v === null ? "" : typeof v === "number" ? String(Math.round(v * 1e6) / 1e6) : String(v);
  const tagKeys = [...new Set(runs.flatMap(r => Object.keys(r.tags)))].sort();
  const params = el("table", {id: "compare-params"},
    el("tr", {}, el("th", {}, "run"), el("th", {}, "status"), el("th", {}, "arguments"),
       tagKeys.map(k => el("th", {}, k)), cmp.metrics.map(m => el("th", {class: "metric"}, m))),
    runs.map((r, i) => el("tr", {},
      el("td", {}, el("span", {style: "color:" + PALETTE[i % PALETTE.length]}, "\u25cf "), link("/runs/" + encodeURIComponent(r.id), label(r))),
      el("td", {}, statusCell(r.status)), el("td", {class: "args"}, r.arguments.join(" ")),
      tagKeys.map(k => el("td", {}, r.tags[k] === undefined ? "" : r.tags[k])),
      cmp.metrics.map(m => el("td", {class: "metric"}, fmt(r.final[m]))))));
  const grid = el("div", {class: "charts", id: "compare-charts"});
  const system = el("div", {class: "charts", id: "compare-system"});
  const diffBox = el("div", {id: "compare-diff"});
  const pick = [el("select", {id: "diff-a"}), el("select", {id: "diff-b"})];
  pick.forEach((s, j) => { s.replaceChildren(...runs.map((r, i) => el("option", {value: r.id}, label(r)))); s.value = runs[j].id;
                           s.onchange = () => showDiff(); });
  main.replaceChildren(el("h1", {}, "Compare " + runs.length + " runs"), params,
    el("h2", {}, "Metrics"), grid, el("h2", {}, "System"), system,
    el("h2", {}, "Differences ", pick[0], " \u2192 ", pick[1]), diffBox);

  async function overlay(box, name) {
    const slot = chartBox(name);
    box.appendChild(slot.box);
    const series = await Promise.all(runs.map(r => api("/api/runs/" + encodeURIComponent(r.id) + "/metrics/" +
      encodeURIComponent(name) + "?points=1000").catch(() => null)));
    const usable = series.map(s => s && s.x ? s : null);
    const xs = [...new Set(usable.flatMap(s => s ? s.x : []))].sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const ys = usable.map((s, i) => { const v = new Array(xs.length).fill(null);
      if (s) s.x.forEach((x, j) => { v[index.get(x)] = s.y[j]; }); return {label: label(runs[i]), values: v}; });
    slot.note.textContent = usable.some(s => s && s.downsampled) ? "some series downsampled (min/max per bucket)" : "";
    slot.plot.dataset.points = String(xs.length);
    if (xs.length) slot.chart = chartFor(slot.plot, {x: xs, ys}, {xLabel: usable.find(Boolean).x_label});
  }

  async function showDiff() {
    const d = await api("/api/diff?a=" + encodeURIComponent(pick[0].value) + "&b=" + encodeURIComponent(pick[1].value));
    const lines = [];
    const add = (cls, text) => lines.push(el("div", {class: cls}, text));
    const show = v => typeof v === "string" ? v : JSON.stringify(v);
    const c = d.code;
    if (!c.available) add("head", "code: " + c.why);
    else if (c.same) add("head", "code: the same snapshot");
    else {
      add("head", `code: ${c.changed} changed, ${c.added} added, ${c.removed} removed, ${c.renamed} renamed`);
      if (c.why) add("", c.why);
      for (const f of c.files) {
        add("file", f.path + ": " + (f.change === "renamed" ? "renamed from " + f.from : f.change) + (f.binary ? " (binary)" : ""));
        for (const line of f.diff || [])
          add(line.startsWith("+++") || line.startsWith("---") ? "file" : line.startsWith("+") ? "add" :
              line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "", line);
      }
    }
    const cfg = d.config;
    add("head", "config");
    if (cfg.arguments) cfg.arguments.changed.forEach(x => add("", `  ${x.key}: ${show(x.a)} \u2192 ${show(x.b)}`));
    cfg.fields.concat(cfg.environment_fields).forEach(x => add("", `  ${x.key}: ${show(x.a)} \u2192 ${show(x.b)}`));
    add("head", "environment" + (d.environment.note ? " (" + d.environment.note + ")" : ""));
    d.environment.facts.concat(d.environment.record || [], d.environment.packages || [])
      .forEach(x => add("", `  ${x.key}: ${show(x.a)} \u2192 ${show(x.b)}`));
    add("head", "metrics");
    d.metrics.filter(m => !m.same).forEach(m => add("", `  ${m.name}: ${m.a ? fmt(m.a.last) : "-"} \u2192 ${m.b ? fmt(m.b.last) : "-"}`));
    add("head", "tags and properties");
    d.tags.tags.concat(d.tags.properties).forEach(x => add("", `  ${x.key}: ${show(x.a)} \u2192 ${show(x.b)}`));
    diffBox.replaceChildren(el("pre", {class: "diff"}, lines));
  }

  const charted = cmp.metrics.filter(n => runs.some(r => typeof r.final[n] === "number"));
  await Promise.all([showDiff(), ...charted.map(n => overlay(grid, n)), ...cmp.system_metrics.map(n => overlay(system, n))]);
  if (!charted.length) grid.appendChild(el("p", {class: "muted"}, "These runs have no numeric metrics."));
  if (!cmp.system_metrics.length) system.appendChild(el("p", {class: "muted"}, "No system metrics sampled."));
}

async function go(path, push = true) {
  if (push) history.pushState(null, "", path);
  clearPage();
  const p = location.pathname;
  try {
    if (p.startsWith("/runs/")) await runPage(decodeURIComponent(p.slice(6)));
    else if (p.startsWith("/experiments/")) await runsPage(decodeURIComponent(p.slice(13)));
    else if (p === "/compare") await comparePage();
    else await experimentsPage();
  } catch (e) {
    main.replaceChildren(el("p", {class: "error"}, String(e.message || e)));
  }
}

window.onpopstate = () => go(location.pathname + location.search, false);
go(location.pathname + location.search, false);
