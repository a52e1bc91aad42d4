// The observer's page: no framework, no build step.  Every text from the
// node (names, reasons, states) goes in with textContent, never as HTML.
"use strict";

const state = {
  tab: "tree",
  sort: "pid", desc: false, offset: 0, limit: 50, search: "",
  detailPid: null, closed: new Set(), logAfter: 0, logPid: "", logKind: "",
};

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
function pidLink(id, label) {
  return el("span", { class: "pidlink", dataset: { pid: id }, onclick: (e) => { e.stopPropagation(); showDetail(id); } },
    label || ospid(id));
}

// ------------------------------------------------------------------ tabs

for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => selectTab(button.dataset.tab));
}
function selectTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const s of document.querySelectorAll(".tab")) s.classList.toggle("active", s.id === "tab-" + tab);
  refresh(tab);
}
function refresh(tab) {
  if (tab === "tree") loadTree();
  else if (tab === "processes") loadProcesses();
  else if (tab === "names") loadNames();
  else if (tab === "logs") loadLogs(true);
}

// ------------------------------------------------------------------ tree

async function action(path, body, what) {
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
    const data = await api("/api/tree");
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
  header();
  const q = new URLSearchParams({ sort: state.sort, desc: state.desc ? "1" : "0", offset: state.offset, limit: state.limit });
  if (state.search) q.set("search", state.search);
  try {
    const page = await api("/api/processes?" + q);
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

document.getElementById("prev").onclick = () => { state.offset = Math.max(0, state.offset - state.limit); loadProcesses(); };
document.getElementById("next").onclick = () => { state.offset += state.limit; loadProcesses(); };
document.getElementById("limit").onchange = (e) => { state.limit = Number(e.target.value); state.offset = 0; loadProcesses(); };
let searchTimer = null;
document.getElementById("search").oninput = (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { state.search = e.target.value; state.offset = 0; loadProcesses(); }, 250);
};

// ------------------------------------------------------------------ detail

function killPrompt(pid) {
  const reason = prompt("Exit reason for " + ospid(pid) + " ('kill' cannot be trapped):", "kill");
  if (reason) action("/api/kill", { pid, reason }, "kill");
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

async function showDetail(pid, again) {
  // Opening asks for the state too; the refresh of every round does not
  // (each ask of a state makes the server pickle it).
  const fresh = state.detailPid !== pid || !again;
  state.detailPid = pid;
  const aside = document.getElementById("detail");
  aside.hidden = false;
  const body = document.getElementById("detail-body");
  try {
    const d = await api("/api/process/" + encodeURIComponent(pid) + (fresh ? "" : "?state=0"));
    if (state.detailPid !== pid) return;
    const kept = document.getElementById("state");
    if (!fresh && kept) { d.state = kept.textContent; d.state_error = null; }
    const row = d.row || {};
    const related = (label, list) => list.length ? [el("dt", {}, label), el("dd", {}, list.map((p) => [pidLink(p.pid, p.name ? p.name + " (" + p.ospid + ")" : p.ospid), " "]))] : [];
    body.replaceChildren(el("div", {},
      el("h2", {}, "process " + ospid(pid), row.name ? " " + row.name : ""),
      d.alive ? null : el("p", { class: "error" }, "not alive"),
      el("dl", {},
        Object.entries(d.info).map(([k, v]) => [el("dt", {}, k), el("dd", {}, k === "memory" || k === "rss" ? bytes(v) : v === null ? "" : String(v))]),
        row.behaviour ? [el("dt", {}, "behaviour"), el("dd", {}, row.behaviour + (row.callback ? " " + row.callback : ""))] : [],
        row.supervisor ? [el("dt", {}, "supervisor"), el("dd", {}, pidLink(row.supervisor), " child ", row.child_id)] : [],
        related("links", d.links), related("monitors", d.monitors), related("monitored by", d.monitored_by)),
      el("div", {},
        el("button", { onclick: () => killPrompt(pid) }, "kill..."),
        row.behaviour ? el("button", { onclick: () => action("/api/suspend", { pid }, "suspend").then(() => showDetail(pid)) }, "suspend") : null,
        row.behaviour ? el("button", { onclick: () => action("/api/resume", { pid }, "resume").then(() => showDetail(pid)) }, "resume") : null,
        el("button", { onclick: () => { document.getElementById("log-pid").value = pid; state.logPid = pid; selectTab("logs"); } }, "its logs")),
      spark(d.history, 1, "queue length"), spark(d.history, 2, "RSS"), spark(d.history, 3, "messages in/s"),
      el("h3", {}, "state ", el("button", { onclick: () => showDetail(pid) }, "read again")),
      d.state !== null ? el("pre", { id: "state" }, d.state) : el("p", { class: "error" }, d.state_error || "not asked"),
    ));
  } catch (err) { body.replaceChildren(el("p", { class: "error" }, "error: " + err.message)); }
}
document.getElementById("detail-close").onclick = () => { state.detailPid = null; document.getElementById("detail").hidden = true; };

// ------------------------------------------------------------------ names

async function loadNames() {
  try {
    const d = await api("/api/names");
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
    const page = await api("/api/logs?" + q);
    document.getElementById("log-tap").textContent = page.tapped ? "" : "no report tap: call otp.observer.install_report_tap() in the node's root";
    const box = document.getElementById("logs");
    for (const e of page.entries) box.prepend(logLine(e));
    state.logAfter = Math.max(state.logAfter, page.last);
  } catch (err) { document.getElementById("log-tap").textContent = "error: " + err.message; }
}
document.getElementById("log-pid").onchange = (e) => { state.logPid = e.target.value.trim(); loadLogs(true); };
document.getElementById("log-kind").onchange = (e) => { state.logKind = e.target.value; loadLogs(true); };

// ------------------------------------------------------------------ live

const pending = {};
function soon(what, fn, ms) {
  if (pending[what]) return;
  pending[what] = setTimeout(() => { pending[what] = null; fn(); }, ms);
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/events?token=" + encodeURIComponent(TOKEN));
  source.addEventListener("hello", () => { live.className = "on"; live.textContent = "live"; refresh(state.tab); });
  source.addEventListener("tree", () => { if (state.tab === "tree") soon("tree", loadTree, 100); });
  source.addEventListener("round", () => {
    if (state.tab === "processes") soon("processes", loadProcesses, 50);
    if (state.detailPid) soon("detail", () => showDetail(state.detailPid, true), 50);
  });
  source.addEventListener("log", () => { if (state.tab === "logs") soon("logs", () => loadLogs(false), 100); });
  source.addEventListener("reset", () => refresh(state.tab));
  source.onerror = () => { live.className = "off"; live.textContent = "reconnecting"; };
}

document.getElementById("metrics-link").href = "/metrics?token=" + encodeURIComponent(TOKEN);
selectTab("tree");
connect();
