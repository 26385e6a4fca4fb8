// Sluice web console: one page over this host's bearer-protected /admin API.
// No framework and nothing from a CDN: uPlot (vendored) draws the charts, the
// graph is plain SVG. Everything that comes from the API is put in the page
// as text (textContent), never as markup: dead letters carry untrusted data.
"use strict";

const TOKEN_KEY = "sluice-admin-token";
const HISTORY = 120; // seconds of chart history
const REFRESH_MS = 1000;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  topology: null,
  stages: [], // stage names, in topology order
  chains: {}, // stage -> plugin names
  last: null, // previous /admin/stats snapshot
  series: { t: [], rates: {}, lag: {} },
  charts: { rates: null, lag: null },
  timer: null,
};

// ---- small DOM helpers -----------------------------------------------------

const $ = (selector) => document.querySelector(selector);

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

const rate = (value) => (value === null || value === undefined ? "–" : value < 10 ? value.toFixed(1) : Math.round(value).toString());
const seconds = (value) => (value === null || value === undefined ? "–" : value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`);

function status(text, isError = false) {
  const node = $("#status");
  node.textContent = text;
  node.className = isError ? "error" : "";
}

// ---- the admin API -----------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${status} ${body.error}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.token}` }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = { error: "not_json", message: text.slice(0, 200) };
  }
  if (response.status === 401) {
    signOut("The token was refused.");
    throw new ApiError(response.status, body);
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

const postJson = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

// ---- sign in ---------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  clearInterval(state.timer);
  state.timer = null;
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

async function signIn(token) {
  state.token = token;
  try {
    state.topology = await api("/admin/topology");
  } catch (e) {
    if (e.status !== 401) signOut(`Cannot read /admin/topology: ${e.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#logout").hidden = false;
  start();
}

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("#token").value);
});
$("#logout").addEventListener("click", () => signOut(""));

// ---- the graph ---------------------------------------------------------------

const KIND_ORDER = { route: 0, topic: 1, stage: 2, sink: 3 };

/** Columns by longest path from a source, so data flows left to right. */
function layers(nodes, edges) {
  const column = {};
  for (const n of nodes) column[n.id] = n.kind === "route" ? 0 : 1;
  const forward = edges.filter((e) => e.kind !== "dead_letter");
  for (let round = 0; round < nodes.length; round++) {
    let moved = false;
    for (const e of forward) {
      if (column[e.to] <= column[e.from]) {
        column[e.to] = column[e.from] + 1;
        moved = true;
      }
    }
    if (!moved) break;
  }
  // Dead-letter topics sit one column right of the stage writing them.
  for (const e of edges.filter((e) => e.kind === "dead_letter")) {
    const fed = forward.some((f) => f.to === e.to);
    if (!fed) column[e.to] = Math.max(column[e.to], column[e.from] + 1);
  }
  return column;
}

function drawGraph() {
  const { nodes, edges } = state.topology;
  const column = layers(nodes, edges);
  const columns = [];
  for (const n of [...nodes].sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind])) {
    (columns[column[n.id]] = columns[column[n.id]] || []).push(n);
  }
  const width = 210, gap = 70, lineHeight = 16, pad = 10;
  const height = (n) => (n.kind === "stage" ? 44 + Math.max(1, n.chain.length) * lineHeight : 36);
  const box = {};
  let graphHeight = 0;
  columns.forEach((list, c) => {
    let y = pad;
    for (const n of list || []) {
      box[n.id] = { x: pad + c * (width + gap), y, w: width, h: height(n) };
      y += height(n) + 18;
    }
    graphHeight = Math.max(graphHeight, y);
  });
  const graph = $("#graph");
  const graphWidth = pad * 2 + columns.length * (width + gap) - gap;
  graph.setAttribute("viewBox", `0 0 ${graphWidth} ${graphHeight}`);
  graph.setAttribute("width", graphWidth);
  graph.setAttribute("height", graphHeight);
  const defs = svg("defs", {},
    svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" })));
  const paths = edges.filter((e) => box[e.from] && box[e.to]).map((e) => {
    const a = box[e.from], b = box[e.to];
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
    const bend = Math.max(30, (x2 - x1) / 2);
    return svg("path", {
      class: `edge ${e.kind}`, "data-from": e.from, "data-to": e.to, "data-kind": e.kind,
      d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`, "marker-end": "url(#arrow)",
    }, svg("title", {}, `${e.from} → ${e.to} (${e.kind.replace("_", " ")})`));
  });
  const groups = nodes.map((n) => {
    const b = box[n.id];
    const label = n.kind === "route" ? `route ${n.name}` : n.name;
    const parts = [
      svg("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 6 }),
      svg("text", { x: b.x + 10, y: b.y + 16, class: "kind" }, n.kind === "stage" ? `stage · ${n.delivery || ""}` : n.kind),
      svg("text", { x: b.x + 10, y: b.y + 30, class: "name" }, label.length > 28 ? `${label.slice(0, 27)}…` : label),
    ];
    if (n.kind === "stage") {
      n.chain.forEach((plugin, i) => {
        parts.push(svg("text", { x: b.x + 18, y: b.y + 48 + i * lineHeight, class: "plugin", "data-plugin": plugin },
          `${i + 1}. ${plugin}`, svg("tspan", { class: "version", "data-stage": n.name, "data-plugin": plugin }, "")));
      });
      parts.push(svg("text", { x: b.x + b.w - 10, y: b.y + 16, class: "rate", "text-anchor": "end", "data-stage": n.name }, ""));
    }
    return svg("g", { class: `node ${n.kind}`, "data-id": n.id, "data-kind": n.kind, "data-name": n.name }, parts);
  });
  graph.replaceChildren(defs, ...paths, ...groups);
}

// ---- live rates --------------------------------------------------------------

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"];

function makeChart(target, names, yLabel) {
  const series = [{}];
  names.forEach((name, i) => series.push({ label: name, stroke: COLORS[i % COLORS.length], width: 2, points: { show: false } }));
  const width = Math.max(320, Math.min(640, target.parentElement.clientWidth - 10));
  return new uPlot({
    width, height: 220, series,
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [{}, { label: yLabel, size: 60 }],
    legend: { live: false },
  }, [[], ...names.map(() => [])], target);
}

function chartData(values) {
  return [state.series.t, ...Object.keys(values).map((k) => values[k])];
}

function push(list, value) {
  list.push(value);
  if (list.length > HISTORY) list.shift();
}

/** Per-second rates between two counter snapshots. */
function perSecond(now, before, dt, pick) {
  if (!before || dt <= 0) return null;
  const delta = pick(now) - pick(before);
  return delta < 0 ? null : delta / dt;
}

function renderStats(stats) {
  $("#host").textContent = `${stats.host.id} · sluice ${stats.host.version}`;
  const before = state.last;
  const dt = before ? (stats.host.at_ms - before.host.at_ms) / 1000 : 0;
  const previous = (list, name) => (list || []).find((s) => s.name === name);
  const rows = [];
  const t = stats.host.at_ms / 1000;
  const chartRates = {}, chartLag = {};
  for (const stage of stats.stages) {
    const old = before && previous(before.stages, stage.name);
    const r = (pick) => perSecond(stage, old, dt, pick);
    const inRate = r((s) => s.events.in);
    const outRate = r((s) => s.events.out);
    chartRates[`${stage.name} in`] = inRate;
    chartRates[`${stage.name} out`] = outRate;
    chartLag[stage.name] = stage.lag.total;
    rows.push(el("tr", { class: "stage", "data-stage": stage.name },
      el("td", {}, stage.name), el("td", { class: stage.stuck ? "error" : "" }, stage.state),
      el("td", { "data-testid": "stage-in-rate" }, rate(inRate)), el("td", {}, rate(outRate)),
      el("td", {}, rate(r((s) => s.events.dropped))), el("td", {}, rate(r((s) => s.events.failed))),
      el("td", {}, rate(r((s) => s.events.dead_lettered))), el("td", {}, seconds(stage.batches.p99_seconds)),
      el("td", { "data-testid": "stage-lag" }, stage.lag.total), el("td", {}, ""),
      el("td", { "data-testid": "stage-total-in" }, stage.events.in)));
    for (const plugin of stage.plugins) {
      const oldPlugin = old && previous(old.plugins, plugin.name);
      const p = (pick) => perSecond(plugin, oldPlugin, dt, pick);
      const out = (x) => x.events.kept + x.events.modified + x.events.written;
      const version = plugin.store_version ? `v${plugin.store_version} ${plugin.version || ""}` : plugin.version || "";
      rows.push(el("tr", { class: "plugin", "data-stage": stage.name, "data-plugin": plugin.name },
        el("td", {}, `  ${plugin.kind === "sink" ? "sink" : "↳"} ${plugin.name}`), el("td", {}, plugin.traps ? `${plugin.traps} traps` : ""),
        el("td", {}, rate(p((x) => x.events.in))), el("td", {}, rate(p(out))),
        el("td", {}, rate(p((x) => x.events.dropped))), el("td", {}, rate(p((x) => x.events.failed))),
        el("td", {}, ""), el("td", {}, seconds(plugin.calls.p99_seconds)), el("td", {}, ""),
        el("td", { "data-testid": "plugin-version" }, version), el("td", {}, plugin.events.in)));
      for (const tspan of document.querySelectorAll(`#graph tspan.version[data-stage="${CSS.escape(stage.name)}"][data-plugin="${CSS.escape(plugin.name)}"]`)) {
        tspan.textContent = version ? `  ${version.split(" ")[0]}` : "";
      }
    }
    const label = document.querySelector(`#graph text.rate[data-stage="${CSS.escape(stage.name)}"]`);
    if (label) label.textContent = inRate === null ? "" : `${rate(inRate)}/s`;
  }
  setRows($("#rates tbody"), rows);
  const routes = (stats.ingest && stats.ingest.routes) || [];
  setRows($("#routes tbody"), routes.map((route) => {
    const old = before && before.ingest && before.ingest.routes.find((r) => r.topic === route.topic && r.event_types.join() === route.event_types.join());
    return el("tr", { "data-topic": route.topic },
      el("td", {}, route.event_types.join(", ") || "*"), el("td", {}, route.topic),
      el("td", {}, rate(perSecond(route, old, dt, (x) => x.accepted))),
      el("td", {}, rate(perSecond(route, old, dt, (x) => x.rejected))),
      el("td", { "data-testid": "route-accepted" }, route.accepted));
  }));

  if (before) {
    push(state.series.t, t);
    for (const [name, value] of Object.entries(chartRates)) push(state.series.rates[name] = state.series.rates[name] || [], value);
    for (const [name, value] of Object.entries(chartLag)) push(state.series.lag[name] = state.series.lag[name] || [], value);
    // Series that started late are padded at the front.
    for (const list of [...Object.values(state.series.rates), ...Object.values(state.series.lag)]) {
      while (list.length < state.series.t.length) list.unshift(null);
    }
    if (!state.charts.rates && Object.keys(chartRates).length) {
      state.charts.rates = makeChart($("#chart-rates"), Object.keys(state.series.rates), "events/s");
      state.charts.lag = makeChart($("#chart-lag"), Object.keys(state.series.lag), "records");
    }
    if (state.charts.rates) {
      state.charts.rates.setData(chartData(state.series.rates));
      state.charts.lag.setData(chartData(state.series.lag));
    }
  }
  state.last = stats;
}

async function refreshStats() {
  try {
    renderStats(await api("/admin/stats"));
    status(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    status(`stats: ${e.message}`, true);
  }
}

// ---- dead letters --------------------------------------------------------------

async function refreshDlq() {
  const stage = $("#dlq-stage").value;
  if (!stage) return;
  $("#dlq-summary").textContent = "reading…";
  try {
    const list = await api(`/admin/dlq/${encodeURIComponent(stage)}?limit=100`);
    $("#dlq-summary").textContent =
      `${list.matched} dead letters of stage ${list.stage} in ${list.topic}` + (list.truncated ? " (first 100 listed)" : "");
    setRows($("#dlq-reasons tbody"), list.groups.map((group) =>
      el("tr", { class: "reason", "data-plugin": group.plugin, "data-error": group.error },
        el("td", {}, group.plugin), el("td", { class: "error-text" }, group.error), el("td", { "data-testid": "reason-count" }, group.count),
        el("td", {}, el("button", { type: "button", class: "redrive", onclick: () => redrive(stage, { plugin: group.plugin, error: group.error }) }, "Redrive")))));
    setRows($("#dlq-records tbody"), list.entries.map((entry) =>
      el("tr", { class: "record", "data-partition": entry.partition, "data-offset": entry.offset, onclick: () => showDeadLetter(stage, entry) },
        el("td", {}, `${entry.partition}/${entry.offset}`), el("td", {}, entry.key || ""), el("td", {}, entry.plugin),
        el("td", { class: "error-text" }, entry.error), el("td", {}, entry.redriven_by || ""))));
  } catch (e) {
    $("#dlq-summary").textContent = `cannot list dead letters: ${e.message}`;
  }
}

async function showDeadLetter(stage, entry) {
  const pre = $("#dlq-record");
  try {
    const shown = await api(`/admin/dlq/${encodeURIComponent(stage)}/${entry.partition}/${entry.offset}`);
    pre.textContent = JSON.stringify({ headers: Object.fromEntries(shown.headers), value: shown.value }, null, 2);
  } catch (e) {
    pre.textContent = e.message;
  }
  pre.hidden = false;
}

async function redrive(stage, selection) {
  const what = selection.all ? "all dead letters" : `the dead letters of ${selection.plugin}: ${selection.error}`;
  $("#dlq-result").textContent = `redriving ${what}…`;
  try {
    const answer = await postJson(`/admin/dlq/${encodeURIComponent(stage)}/redrive`, selection);
    $("#dlq-result").textContent =
      `redrive ${answer.redrive_id} by ${answer.by}: selected ${answer.selected}, redriven ${answer.redriven} to ${answer.topic}` +
      (answer.not_redriven.length ? `, ${answer.not_redriven.length} not redriven` : "");
  } catch (e) {
    $("#dlq-result").textContent = `redrive refused: ${e.message}`;
  }
  refreshDlq();
}

$("#dlq-refresh").addEventListener("click", refreshDlq);
$("#dlq-stage").addEventListener("change", refreshDlq);
$("#dlq-redrive-all").addEventListener("click", () => redrive($("#dlq-stage").value, { all: true }));

// ---- plugins --------------------------------------------------------------------

async function refreshPlugins() {
  let plugins;
  try {
    plugins = await api("/admin/plugins");
  } catch (e) {
    $("#plugins-result").textContent = e.status === 404 ? "The plugin store is off on this host ([plugins] store = false)." : e.message;
    return;
  }
  setRows($("#plugins tbody"), plugins.map((plugin) => {
    const hosts = plugin.hosts.map((h) => el("div", { class: "host", "data-host": h.host }, `${h.host}: v${h.version} ${h.sha256.slice(0, 12)}`));
    const versions = plugin.versions.map((v) => {
      const active = v.version === plugin.active_version;
      return el("div", { class: active ? "version active" : "version" },
        `v${v.version} ${v.sha256.slice(0, 12)} `,
        active ? el("strong", {}, "active") :
          el("button", { type: "button", class: "rollback", "data-plugin": plugin.name, "data-version": v.version, onclick: () => rollback(plugin.name, v.version) }, `Make v${v.version} active`));
    });
    return el("tr", { "data-plugin": plugin.name },
      el("td", {}, plugin.name),
      el("td", { "data-testid": "active-version" }, plugin.active_version ? `v${plugin.active_version}` : "directory file"),
      el("td", {}, plugin.deployed_by || ""), el("td", {}, hosts), el("td", {}, versions));
  }));
  fillPreviewVersions(plugins);
}

async function rollback(name, version) {
  try {
    const answer = await postJson(`/admin/plugins/${encodeURIComponent(name)}/rollback`, { to: version });
    $("#plugins-result").textContent = `${name}: v${answer.version} is active`;
  } catch (e) {
    $("#plugins-result").textContent = `rollback refused: ${e.message}`;
  }
  refreshPlugins();
}

$("#push-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("#push-name").value.trim();
  const file = $("#push-file").files[0];
  if (!name || !file) return;
  $("#plugins-result").textContent = `pushing ${file.name} as ${name}…`;
  try {
    const answer = await api(`/admin/plugins/${encodeURIComponent(name)}`, {
      method: "PUT", headers: { "Content-Type": "application/wasm" }, body: await file.arrayBuffer(),
    });
    $("#plugins-result").textContent = answer.changed ? `${name}: v${answer.version} published and active` : `${name}: already the active version (v${answer.version})`;
  } catch (e) {
    $("#plugins-result").textContent = `push refused: ${e.message}`;
  }
  refreshPlugins();
});

// ---- preview of a version ------------------------------------------------------

let storeVersions = {};

function fillPreviewPlugins() {
  const stage = $("#preview-stage").value;
  const select = $("#preview-plugin");
  select.replaceChildren(...(state.chains[stage] || []).map((p) => el("option", { value: p }, p)));
  fillPreviewVersions();
}

function fillPreviewVersions(plugins) {
  if (plugins) storeVersions = Object.fromEntries(plugins.map((p) => [p.name, p]));
  const plugin = storeVersions[$("#preview-plugin").value];
  const input = $("#preview-version");
  if (plugin && !input.value) {
    const candidates = plugin.versions.filter((v) => v.version !== plugin.active_version);
    if (candidates.length) input.value = `v${candidates[candidates.length - 1].version}`;
  }
}

const fate = (value) => {
  if (value === "dropped") return "dropped";
  if (value && value.failed) return `failed in ${value.failed.plugin}: ${value.failed.error}`;
  if (value && value.kept) return value.kept.map((v) => JSON.stringify(v)).join("\n");
  return JSON.stringify(value);
};

/** `{"a": {"b": 1}}` as `{"a.b": 1}`. */
function flatten(value, prefix = "", out = {}) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out[prefix] = value;
  }
  return out;
}

/** Both kept one value: the fields that differ, each side's; else whole fates. */
function difference(current, candidate) {
  const one = (f) => f && f.kept && f.kept.length === 1 && f.kept[0];
  const a = one(current), b = one(candidate);
  if (!a || !b) return [fate(current), fate(candidate)];
  const fa = flatten(a), fb = flatten(b);
  const fields = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].filter((k) => JSON.stringify(fa[k]) !== JSON.stringify(fb[k]));
  const side = (f) => fields.map((k) => `${k}: ${k in f ? JSON.stringify(f[k]) : "(absent)"}`).join("\n");
  return [side(fa), side(fb)];
}

$("#preview-stage").addEventListener("change", fillPreviewPlugins);
$("#preview-plugin").addEventListener("change", () => { $("#preview-version").value = ""; fillPreviewVersions(); });
$("#preview-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const stage = $("#preview-stage").value;
  const request = { plugin: $("#preview-plugin").value, version: $("#preview-version").value.trim(), since: $("#preview-since").value.trim() || "1h", limit: 20 };
  $("#preview-summary").textContent = "comparing…";
  try {
    const answer = await postJson(`/admin/preview/${encodeURIComponent(stage)}`, request);
    const f = (x) => `kept ${x.kept}, dropped ${x.dropped}, failed ${x.failed}`;
    $("#preview-summary").textContent =
      `${answer.read} events of ${answer.topic} since ${new Date(answer.since_ms).toLocaleString()}: ${answer.differ} would change. ` +
      `Now (${answer.current.join(" → ")}): ${f(answer.current_fates)}. With ${request.plugin}@${request.version}: ${f(answer.candidate_fates)}.` +
      (answer.truncated ? ` First ${answer.differences.length} listed.` : "") + (answer.capped ? " Stopped at max_events." : "");
    setRows($("#preview-rows tbody"), answer.differences.map((d) =>
      el("tr", { class: "difference", "data-partition": d.partition, "data-offset": d.offset },
        el("td", {}, `${d.partition}/${d.offset}`), el("td", {}, d.key || ""),
        ...difference(d.current, d.candidate).map((text) => el("td", {}, el("pre", {}, text))))));
  } catch (e) {
    $("#preview-summary").textContent = `preview refused: ${e.message}`;
  }
});

// ---- start ------------------------------------------------------------------------

function start() {
  const stages = state.topology.nodes.filter((n) => n.kind === "stage");
  state.stages = stages.map((n) => n.name);
  state.chains = Object.fromEntries(stages.map((n) => [n.name, n.chain]));
  $("#host").textContent = state.topology.host.id;
  drawGraph();
  for (const select of [$("#dlq-stage"), $("#preview-stage")]) {
    select.replaceChildren(...state.stages.map((s) => el("option", { value: s }, s)));
  }
  fillPreviewPlugins();
  refreshStats();
  refreshDlq();
  refreshPlugins();
  clearInterval(state.timer);
  state.timer = setInterval(refreshStats, REFRESH_MS);
}

if (state.token) signIn(state.token);
else signOut("");
