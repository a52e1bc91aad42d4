// The observer's page: no framework, no build step.  Every text from the
// node (names, reasons, states) goes in with textContent, never as HTML.
"use strict";

const state = {
  tab: "tree",
  sort: "pid", desc: false, offset: 0, limit: 50, search: "",
  detailPid: null, detailNode: null, closed: new Set(), logAfter: 0, logPid: "", logKind: "",
  self: null, node: null, nodes: [], panel: null, cluster: false,
};

// The node shown: null is the node this page is served by (its events
// drive the refreshes); another one is asked through this one, on a timer.
function withNode(path, node) {
  const target = node === undefined ? state.node : node;
  if (!target || target === state.self) return path;
  return path + (path.includes("?") ? "&" : "?") + "node=" + encodeURIComponent(target);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  opts.headers["X-Observer-Token"] = TOKEN;
  if (opts.body && typeof opts.body !== "string") {
    opts.body = JSON.stringify(opts.body);
    opts.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, opts);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function ospid(id) { return id ? id.split("-")[0] : ""; }
function bytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(0) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}
function rate(r) { return r === null || r === undefined ? "" : r < 10 ? r.toFixed(1) : r.toFixed(0); }
function ago(t) { return t ? new Date(t * 1000).toLocaleTimeString() : ""; }
function pidLink(id, label, node) {
  return el("span", { class: "pidlink", dataset: { pid: id, node: node || "" },
    onclick: (e) => { e.stopPropagation(); showDetail(id, false, node); } }, label || ospid(id));
}

// ------------------------------------------------------------------ tabs

document.querySelector("nav").addEventListener("click", (e) => {
  const button = e.target.closest("button[data-tab]");
  if (button) selectTab(button.dataset.tab);
});
function selectTab(tab) {
  state.tab = tab;
  const section = tab.startsWith("panel:") ? "panel" : tab;
  if (section === "panel") { state.panel = tab.slice(6); document.getElementById("panel").replaceChildren("loading..."); }
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const s of document.querySelectorAll(".tab")) s.classList.toggle("active", s.id === "tab-" + section);
  refresh(tab);
}
function refresh(tab) {
  if (tab === "tree") loadTree();
  else if (tab === "processes") loadProcesses();
  else if (tab === "names") loadNames();
  else if (tab === "logs") loadLogs(true);
  else if (tab.startsWith("panel:")) loadPanel();
}

// ------------------------------------------------------------------ tree

async function action(path, body, what, node) {
  const target = node === undefined ? state.node : node;
  if (target && target !== state.self) body = Object.assign({ node: target }, body);
  try { await api(path, { method: "POST", body }); }
  catch (err) { alert(what + " failed: " + err.message); }
}

function treeNode(node, sup, path) {
  const key = path + "/" + (node.child_id === null ? node.pid : node.child_id);
  const summary = el("summary", {},
    el("span", { class: "id" }, node.origin ? node.origin : node.child_id === null ? "(dynamic child)" : node.child_id),
    node.name ? el("span", { class: "meta" }, node.name) : null,
    node.pid ? el("span", { class: "meta" }, "pid ", pidLink(node.pid)) : el("span", { class: "meta" }, node.status),
    el("span", { class: "meta" }, node.behaviour || node.type),
    node.callback ? el("span", { class: "meta" }, node.callback) : null,
    node.restarts ? el("span", { class: "restarts" }, "restarts " + node.restarts) : null,
    node.last_exit ? el("span", { class: "exit", title: ago(node.last_exit_at) }, "last exit: " + node.last_exit) : null,
    sup && node.child_id !== null ? el("button", { onclick: (e) => { e.preventDefault();
      if (confirm("Restart child " + node.child_id + "?")) action("/api/restart", { supervisor: sup, index: node.index, child_id: node.child_id }, "restart"); } }, "restart") : null,
    node.pid && sup ? el("button", { onclick: (e) => { e.preventDefault(); killPrompt(node.pid); } }, "kill") : null,
  );
  const item = el("li", {
    class: "node status-" + node.status,
    dataset: { childId: node.child_id === null ? "" : node.child_id, pid: node.pid || "", restarts: node.restarts, status: node.status, key },
  });
  if (node.children.length || node.more_children) {
    const details = el("details", { open: !state.closed.has(key) }, summary,
      el("ul", { class: "tree" }, node.children.map((c) => treeNode(c, node.pid, key)),
        node.more_children ? el("li", { class: "meta" }, "... " + node.more_children + " more children") : null));
    details.addEventListener("toggle", () => { details.open ? state.closed.delete(key) : state.closed.add(key); });
    item.append(details);
  } else {
    item.append(el("div", {}, summary.childNodes.length ? Array.from(summary.childNodes) : null));
  }
  return item;
}

async function loadTree() {
  try {
    const data = await api(withNode("/api/tree"));
    const root = document.getElementById("tree");
    root.replaceChildren(el("ul", { class: "tree top", dataset: { version: data.version } },
      data.roots.map((r) => treeNode(r, null, ""))));
    root.dataset.version = data.version;
  } catch (err) { document.getElementById("tree").textContent = "error: " + err.message; }
}

// ------------------------------------------------------------------ processes

const COLUMNS = [
  ["pid", "pid"], ["name", "name"], ["behaviour", "behaviour"], ["status", "status"],
  ["message_queue_len", "queue"], ["rss", "RSS"], ["uss", "USS"], ["in_rate", "in/s"], ["out_rate", "out/s"],
  ["restarts", "restarts"], ["started_at", "started"], ["current_function", "function"],
];

function header() {
  const row = document.querySelector("#processes thead tr");
  row.replaceChildren(...COLUMNS.map(([key, label]) => el("th", {
    class: (state.sort === key ? "sorted" + (state.desc ? "" : " asc") : null),
    onclick: () => { state.desc = state.sort === key ? !state.desc : key !== "pid" && key !== "name"; state.sort = key; state.offset = 0; loadProcesses(); },
  }, label)));
}

async function loadProcesses() {
  if (state.cluster && state.search) return loadClusterSearch();
  document.getElementById("processes").hidden = false;
  document.getElementById("search-results").replaceChildren();
  header();
  const q = new URLSearchParams({ sort: state.sort, desc: state.desc ? "1" : "0", offset: state.offset, limit: state.limit });
  if (state.search) q.set("search", state.search);
  try {
    const page = await api(withNode("/api/processes?" + q));
    document.getElementById("page-info").textContent =
      ` ${page.total ? page.offset + 1 : 0}-${page.offset + page.rows.length} of ${page.total} (${page.processes} processes, round ${page.round}) `;
    document.querySelector("#processes tbody").replaceChildren(...page.rows.map((r) => el("tr", {
      dataset: { pid: r.pid }, onclick: () => showDetail(r.pid) },
      el("td", { class: "num" }, r.ospid), el("td", {}, r.name || (r.child_id !== null ? "(" + r.child_id + ")" : "")),
      el("td", {}, r.behaviour || ""), el("td", {}, r.status),
      el("td", { class: "num" }, r.message_queue_len ?? ""), el("td", { class: "num" }, bytes(r.rss)),
      el("td", { class: "num" }, bytes(r.uss)), el("td", { class: "num" }, rate(r.in_rate)),
      el("td", { class: "num" }, rate(r.out_rate)), el("td", { class: "num" }, r.restarts || ""),
      el("td", {}, ago(r.started_at)), el("td", {}, r.current_function || ""))));
  } catch (err) { document.getElementById("page-info").textContent = "error: " + err.message; }
}

// Every node's processes matching the search, one table per node (a node
// that did not answer shows its error).
async function loadClusterSearch() {
  const q = new URLSearchParams({ q: state.search, limit: state.limit });
  const box = document.getElementById("search-results");
  document.getElementById("processes").hidden = true;
  try {
    const data = await api("/api/search?" + q);
    let total = 0;
    box.replaceChildren(...data.nodes.map((n) => {
      if (n.error) return el("div", { class: "cluster-node", dataset: { node: n.node } }, el("h3", {}, n.node), el("p", { class: "error" }, n.error));
      total += n.total;
      return el("div", { class: "cluster-node", dataset: { node: n.node } },
        el("h3", {}, n.node, " (" + n.total + ")"),
        el("table", {}, el("tbody", {}, n.rows.map((r) => el("tr", { dataset: { pid: r.pid, node: r.node }, onclick: () => showDetail(r.pid, false, r.node) },
          el("td", { class: "nodecell" }, r.node), el("td", { class: "num" }, r.ospid),
          el("td", {}, r.name || (r.child_id !== null ? "(" + r.child_id + ")" : "")), el("td", {}, r.behaviour || ""),
          el("td", {}, r.status), el("td", { class: "num" }, bytes(r.rss)), el("td", {}, r.current_function || ""))))));
    }));
    document.getElementById("page-info").textContent = ` ${total} matching on ${data.nodes.length} nodes `;
  } catch (err) { document.getElementById("page-info").textContent = "error: " + err.message; }
}
document.getElementById("cluster-search").onchange = (e) => { state.cluster = e.target.checked; state.offset = 0; loadProcesses(); };

document.getElementById("prev").onclick = () => { state.offset = Math.max(0, state.offset - state.limit); loadProcesses(); };
document.getElementById("next").onclick = () => { state.offset += state.limit; loadProcesses(); };
document.getElementById("limit").onchange = (e) => { state.limit = Number(e.target.value); state.offset = 0; loadProcesses(); };
let searchTimer = null;
document.getElementById("search").oninput = (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { state.search = e.target.value; state.offset = 0; loadProcesses(); }, 250);
};

// ------------------------------------------------------------------ detail

function killPrompt(pid, node) {
  const reason = prompt("Exit reason for " + ospid(pid) + " ('kill' cannot be trapped):", "kill");
  if (reason) action("/api/kill", { pid, reason }, "kill", node);
}

function spark(history, index, label) {
  const values = history.map((s) => s[index]).filter((v) => v !== null);
  if (values.length < 2) return null;
  const max = Math.max(...values, 1), w = 240, h = 40;
  const points = values.map((v, i) => `${(i / (values.length - 1)) * w},${h - (v / max) * (h - 2) - 1}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark"); svg.setAttribute("width", w); svg.setAttribute("height", h);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points); line.setAttribute("fill", "none"); line.setAttribute("stroke", "#1565c0");
  svg.append(line);
  return el("div", {}, el("div", {}, label + " (max " + (index === 2 ? bytes(max) : rate(max)) + ")"), svg);
}

async function showDetail(pid, again, node) {
  // Opening asks for the state too; the refresh of every round does not
  // (each ask of a state makes the server pickle it).
  const fresh = state.detailPid !== pid || !again;
  if (!again) state.detailNode = node === undefined || node === "" ? state.node : node;
  const where = state.detailNode;
  state.detailPid = pid;
  const aside = document.getElementById("detail");
  aside.hidden = false;
  const body = document.getElementById("detail-body");
  try {
    const d = await api(withNode("/api/process/" + encodeURIComponent(pid) + (fresh ? "" : "?state=0"), where));
    if (state.detailPid !== pid) return;
    const kept = document.getElementById("state");
    if (!fresh && kept) { d.state = kept.textContent; d.state_error = null; }
    const row = d.row || {};
    const related = (label, list) => list.length ? [el("dt", {}, label), el("dd", {}, list.map((p) => [pidLink(p.pid, p.name ? p.name + " (" + p.ospid + ")" : p.ospid, where), " "]))] : [];
    body.replaceChildren(el("div", {},
      el("h2", {}, "process " + ospid(pid), row.name ? " " + row.name : "", where && where !== state.self ? " on " + where : ""),
      d.alive ? null : el("p", { class: "error" }, "not alive"),
      el("dl", {},
        Object.entries(d.info).map(([k, v]) => [el("dt", {}, k), el("dd", {}, k === "memory" || k === "rss" ? bytes(v) : v === null ? "" : String(v))]),
        row.behaviour ? [el("dt", {}, "behaviour"), el("dd", {}, row.behaviour + (row.callback ? " " + row.callback : ""))] : [],
        row.supervisor ? [el("dt", {}, "supervisor"), el("dd", {}, pidLink(row.supervisor, null, where), " child ", row.child_id)] : [],
        related("links", d.links), related("monitors", d.monitors), related("monitored by", d.monitored_by)),
      el("div", {},
        el("button", { onclick: () => killPrompt(pid, where) }, "kill..."),
        row.behaviour ? el("button", { onclick: () => action("/api/suspend", { pid }, "suspend", where).then(() => showDetail(pid, false, where)) }, "suspend") : null,
        row.behaviour ? el("button", { onclick: () => action("/api/resume", { pid }, "resume", where).then(() => showDetail(pid, false, where)) }, "resume") : null,
        el("button", { onclick: () => { document.getElementById("log-pid").value = pid; state.logPid = pid; selectTab("logs"); } }, "its logs")),
      spark(d.history, 1, "queue length"), spark(d.history, 2, "RSS"), spark(d.history, 3, "messages in/s"),
      el("h3", {}, "state ", el("button", { onclick: () => showDetail(pid, false, where) }, "read again")),
      d.state !== null ? el("pre", { id: "state" }, d.state) : el("p", { class: "error" }, d.state_error || "not asked"),
    ));
  } catch (err) { body.replaceChildren(el("p", { class: "error" }, "error: " + err.message)); }
}
document.getElementById("detail-close").onclick = () => { state.detailPid = null; document.getElementById("detail").hidden = true; };

// ------------------------------------------------------------------ names

async function loadNames() {
  try {
    const d = await api(withNode("/api/names"));
    document.getElementById("names").replaceChildren(
      el("h3", {}, "Registered names (" + d.names.length + ")"),
      el("table", {}, el("tbody", {}, d.names.map((n) => el("tr", {}, el("td", {}, n.name), el("td", {}, pidLink(n.pid)))))),
      el("h3", {}, "Keyed registries"),
      d.registries.map((r) => el("div", {}, el("h4", {}, r.name, " ", pidLink(r.pid), " ", r.count + " entries", r.truncated ? " (first shown)" : ""),
        el("table", {}, el("tbody", {}, r.entries.map((e) => el("tr", {}, el("td", {}, e.key), el("td", {}, pidLink(e.pid)), el("td", {}, e.value))))))),
      el("h3", {}, "Process groups"),
      el("table", {}, el("tbody", {}, d.groups.map((g) => el("tr", {}, el("td", {}, g.scope === null ? "(default scope)" : g.scope), el("td", {}, g.group),
        el("td", {}, g.members.map((m) => [pidLink(m), " "])))))));
  } catch (err) { document.getElementById("names").textContent = "error: " + err.message; }
}

// ------------------------------------------------------------------ logs

function logLine(e) {
  return el("div", { class: "log", dataset: { seq: e.seq, pid: e.pid || "" } },
    el("span", {}, ago(e.at), " "), el("span", { class: "lvl-" + e.level }, e.level, " "),
    e.kind ? el("b", {}, e.kind + " ") : null, e.pid ? pidLink(e.pid) : null, e.name ? " " + e.name : "",
    e.supervisor ? " supervisor " + e.supervisor : "", e.child_id ? " child " + e.child_id : "",
    e.reason ? el("span", { class: "exit" }, " reason " + e.reason) : null, el("pre", {}, e.message));
}

async function loadLogs(reset) {
  if (reset) { state.logAfter = 0; document.getElementById("logs").replaceChildren(); }
  const q = new URLSearchParams({ after: state.logAfter, limit: 500 });
  if (state.logPid) q.set("pid", state.logPid);
  if (state.logKind) q.set("kind", state.logKind);
  try {
    const page = await api(withNode("/api/logs?" + q));
    document.getElementById("log-tap").textContent = page.tapped ? "" : "no report tap: call otp.observer.install_report_tap() in the node's root";
    const box = document.getElementById("logs");
    for (const e of page.entries) box.prepend(logLine(e));
    state.logAfter = Math.max(state.logAfter, page.last);
  } catch (err) { document.getElementById("log-tap").textContent = "error: " + err.message; }
}
document.getElementById("log-pid").onchange = (e) => { state.logPid = e.target.value.trim(); loadLogs(true); };
document.getElementById("log-kind").onchange = (e) => { state.logKind = e.target.value; loadLogs(true); };

// ------------------------------------------------------------------ panels

// A panel is what a library's provider returned (see otp.observer.add_panel):
// notes, numbers charted over time (the server keeps their history while
// the panel is on screen) and tables of records.
async function loadPanels() {
  try {
    const data = await api(withNode("/api/panels"));
    const tabs = document.getElementById("panel-tabs");
    tabs.replaceChildren(...data.panels.map((p) => el("button", {
      dataset: { tab: "panel:" + p.name }, class: state.tab === "panel:" + p.name ? "active" : null }, p.name)));
    if (state.tab.startsWith("panel:") && !data.panels.some((p) => "panel:" + p.name === state.tab)) selectTab("tree");
  } catch (err) { /* the panels' tabs stay as they were */ }
}

function number(v) {
  if (v === null || v === undefined) return "";
  const a = Math.abs(v);
  return a >= 100 || Number.isInteger(v) ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

function chart(label, points, now) {
  const w = 280, h = 64;
  const box = el("div", { class: "chart", dataset: { series: label, points: points.length } },
    el("div", { class: "label" }, label, el("span", { class: "now" }, number(now))));
  if (points.length < 2) { box.append(el("div", { class: "note" }, "collecting...")); return box; }
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const values = points.map((p) => p[1]);
  const hi = Math.max(...values, 0), lo = Math.min(...values, 0), span = hi - lo || 1;
  const xy = points.map(([t, v]) => `${((t - t0) / ((t1 - t0) || 1)) * (w - 2) + 1},${h - 1 - ((v - lo) / span) * (h - 12)}`).join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "line"); svg.setAttribute("width", w); svg.setAttribute("height", h);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", xy); line.setAttribute("fill", "none"); line.setAttribute("stroke", "#1565c0"); line.setAttribute("stroke-width", "1.5");
  const top = document.createElementNS(ns, "text");
  top.setAttribute("x", 3); top.setAttribute("y", 10); top.setAttribute("font-size", "10"); top.setAttribute("fill", "#777");
  top.textContent = "max " + number(hi) + ", last " + Math.round(t1 - t0) + " s";
  svg.append(line, top);
  box.append(svg);
  return box;
}

function cell(v) {
  if (v && typeof v === "object" && v.$pid) return pidLink(v.$pid, String(v.ospid), v.node);
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return number(v);
  return String(v);
}

function panelTable(title, rows, cut) {
  const columns = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
  return el("div", { class: "panel-table", dataset: { table: title } },
    el("h3", {}, title, " (" + (rows.length + (cut || 0)) + ")", cut ? " first " + rows.length + " shown" : ""),
    rows.length ? el("table", {}, el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, columns.map((c) => el("td", {}, cell(r[c]))))))) : el("p", { class: "note" }, "none"));
}

// The page keeps the charts' points of the panel on screen and asks only
// for those since its last one (the server's history is the same, so a
// read costs the same however long the panel has been on screen).
const PANEL_POINTS = 600;
let panelSeries = { key: null, series: {}, last: null };

function mergeHistory(key, d) {
  if (panelSeries.key !== key || d.since === null || d.since === undefined) panelSeries = { key, series: {}, last: null };
  for (const [k, points] of Object.entries(d.history)) {
    const kept = (panelSeries.series[k] || []).filter((p) => d.since === null || d.since === undefined || p[0] < d.since);
    panelSeries.series[k] = kept.concat(points).slice(-PANEL_POINTS);
  }
  for (const points of Object.values(panelSeries.series))
    if (points.length && (panelSeries.last === null || points[points.length - 1][0] > panelSeries.last)) panelSeries.last = points[points.length - 1][0];
  return panelSeries.series;
}

async function loadPanel() {
  const name = state.panel, box = document.getElementById("panel");
  const key = (state.node || "") + "\n" + name;
  const since = panelSeries.key === key && panelSeries.last !== null ? "?since=" + panelSeries.last : "";
  try {
    const d = await api(withNode("/api/panel/" + encodeURIComponent(name) + since));
    if (state.tab !== "panel:" + name) return;
    const history = mergeHistory(key, d);
    box.replaceChildren(el("div", { dataset: { panel: name } },
      d.error ? el("p", { class: "error panel-error" }, d.error) : null,
      d.notes.map((n) => el("p", { class: "note" }, n)),
      el("div", { class: "charts" }, Object.entries(history).map(([k, points]) => chart(k, points, d.values[k]))),
      Object.entries(d.tables).map(([title, rows]) => panelTable(title, rows, d.cut[title]))));
  } catch (err) { box.replaceChildren(el("p", { class: "error panel-error" }, "error: " + err.message)); }
}

// ------------------------------------------------------------------ cluster

async function loadNodes() {
  try {
    const data = await api("/api/nodes");
    state.self = data.self;
    state.nodes = data.nodes;
    document.getElementById("node").textContent = data.self;
    const picker = document.getElementById("node-picker");
    const shown = state.node || data.self;
    picker.replaceChildren(...data.nodes.map((n) => el("option", { value: n, selected: n === shown }, n === data.self ? n + " (here)" : n)));
    picker.hidden = data.nodes.length < 2;
    document.getElementById("cluster-label").hidden = data.nodes.length < 2;
  } catch (err) { /* the picker stays as it was */ }
}
document.getElementById("node-picker").onchange = (e) => {
  state.node = e.target.value === state.self ? null : e.target.value;
  state.offset = 0;
  loadPanels();
  refresh(state.tab);
};
// Another node sends this page no events: its view refreshes every 2 s.
setInterval(() => {
  if (!state.node || document.hidden) return;
  if (state.tab === "logs") loadLogs(false); else refresh(state.tab);
}, 2000);
setInterval(loadNodes, 10000);

// ------------------------------------------------------------------ live

const pending = {};
function soon(what, fn, ms) {
  if (pending[what]) return;
  pending[what] = setTimeout(() => { pending[what] = null; fn(); }, ms);
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/events?token=" + encodeURIComponent(TOKEN));
  source.addEventListener("hello", () => { live.className = "on"; live.textContent = "live"; loadNodes(); loadPanels(); refresh(state.tab); });
  source.addEventListener("tree", () => { if (state.tab === "tree" && !state.node) soon("tree", loadTree, 100); });
  source.addEventListener("round", () => {
    if (state.node) return;  // another node's view refreshes on its timer
    if (state.tab === "processes") soon("processes", loadProcesses, 50);
    if (state.tab.startsWith("panel:")) soon("panel", loadPanel, 50);
    if (state.detailPid) soon("detail", () => showDetail(state.detailPid, true), 50);
  });
  source.addEventListener("log", () => { if (state.tab === "logs" && !state.node) soon("logs", () => loadLogs(false), 100); });
  source.addEventListener("reset", () => refresh(state.tab));
  source.onerror = () => { live.className = "off"; live.textContent = "reconnecting"; };
}

document.getElementById("metrics-link").href = "/metrics?token=" + encodeURIComponent(TOKEN);
selectTab("tree");
connect();
