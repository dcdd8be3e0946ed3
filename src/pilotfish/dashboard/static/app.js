// Pilotfish dashboard: a hash-routed single-page app over the dashboard's JSON API.
"use strict";

const page = document.getElementById("page");
const statusLine = document.getElementById("status");
let timer = null;
let cy = null;
let lastShape = "";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path) {
  const resp = await fetch(path);
  const body = await resp.json().catch(() => ({ error: resp.statusText }));
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

function showError(err) {
  statusLine.textContent = "error: " + err.message;
  statusLine.className = "error";
}

function ok() {
  statusLine.textContent = "updated " + new Date().toLocaleTimeString();
  statusLine.className = "";
}

function healthCell(h) {
  return el("td", { class: "health-" + h, "data-health": h }, el("span", { class: "dot health-" + h }), h);
}

function table(headers, rows) {
  const t = el("table");
  t.append(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
  for (const r of rows) t.append(r);
  return t;
}

const COLOURS = { healthy: "#2a9d2a", degraded: "#e09b00", failing: "#d62828", idle: "#888" };

function edgeLabel(e) {
  const lock = e.mtls ? "\u{1F512} " : "";
  if (e.protocol === "tcp") return `${lock}tcp ${e.tcp_bytes_per_s} B/s`;
  const lat = e.p50_ms == null ? "" : ` p50 ${e.p50_ms}ms p99 ${e.p99_ms}ms`;
  return `${lock}${e.protocol} ${e.rps.toFixed(2)} rps ${e.error_percent}% err${lat}`;
}

async function renderGraph() {
  if (!document.getElementById("cy")) {
    page.replaceChildren(el("h2", {}, "Service graph"), el("div", { id: "cy" }));
    cy = cytoscape({
      container: document.getElementById("cy"),
      style: [
        { selector: "node", style: { label: "data(label)", "background-color": "data(colour)", "font-size": 11 } },
        { selector: "node[kind = 'service']", style: { shape: "triangle", "background-color": "#6c8ebf" } },
        { selector: "edge", style: { label: "data(label)", "curve-style": "bezier", "target-arrow-shape": "triangle",
          "font-size": 9, "line-color": "data(colour)", "target-arrow-color": "data(colour)", width: 2,
          "text-background-color": "#fff", "text-background-opacity": 0.8 } },
        { selector: "edge[kind = 'serves']", style: { "line-style": "dashed", width: 1, label: "" } },
      ],
    });
    window.pilotfishGraph = cy;
  }
  const g = await api("/api/graph");
  const elements = [];
  for (const n of g.nodes) {
    elements.push({ group: "nodes", data: { id: n.id, kind: n.kind, label: n.name, namespace: n.namespace,
      health: n.health || "", rps: n.rps || 0, colour: COLOURS[n.health] || "#6c8ebf" } });
    if (n.kind === "service" && n.workload)
      elements.push({ group: "edges", data: { id: "serves:" + n.id, source: n.id, target: n.workload,
        kind: "serves", colour: "#aac" } });
  }
  // Like Kiali, requests flow workload -> service -> workload: the labelled edge ends at the
  // service the client asked for; the dashed one shows which workload served it.
  const ids = new Set(g.nodes.map((n) => n.id));
  for (const e of g.edges) {
    const svc = `svc:${e.target.split("/")[0]}/${e.service}`;
    elements.push({ group: "edges", data: { ...e, kind: "traffic", label: edgeLabel(e),
      target: ids.has(svc) ? svc : e.target, dest_workload: e.target,
      colour: COLOURS[e.health] || "#888" } });
  }
  const fresh = cy.elements().length === 0;
  const positions = Object.fromEntries(cy.nodes().map((n) => [n.id(), { ...n.position() }]));
  cy.elements().remove();
  cy.add(elements);
  cy.nodes().forEach((n) => { if (positions[n.id()]) n.position(positions[n.id()]); });
  const roots = cy.nodes().filter((n) => n.incomers("edge").length === 0);
  // Lay out only when the set of nodes changed, so a refresh does not move the picture.
  const shape = cy.nodes().map((n) => n.id()).sort().join(",");
  if (fresh || shape !== lastShape)
    cy.layout({ name: "breadthfirst", directed: true, roots, spacingFactor: 1.1 }).run();
  lastShape = shape;
  page.dataset.edges = String(g.edges.length);
  ok();
}

async function renderInventory(kind) {
  const inv = await api("/api/inventory");
  let rows;
  if (kind === "workloads") {
    rows = inv.workloads.map((w) => el("tr", { "data-workload": w.name },
      el("td", {}, el("a", { href: `#/workload/${w.namespace}/${w.name}` }, w.name)), el("td", {}, w.namespace),
      healthCell(w.health), el("td", {}, w.rps.toFixed(2)),
      el("td", {}, w.pods.map((p) => `${p.name} [${p.sidecar_sync}] ${p.identity || "-"} ` +
        (p.cert_expires ? "expires " + new Date(p.cert_expires * 1000).toISOString() : "")).join("; "))));
    page.replaceChildren(el("h2", {}, "Workloads"),
      table(["Workload", "Namespace", "Health", "RPS", "Pods (sync, identity, cert)"], rows));
  } else {
    rows = inv.services.map((s) => el("tr", { "data-service": s.name }, el("td", {}, s.name),
      el("td", {}, s.namespace), healthCell(s.health), el("td", {}, s.rps.toFixed(2)),
      el("td", {}, s.workloads.join(", "))));
    page.replaceChildren(el("h2", {}, "Services"),
      table(["Service", "Namespace", "Health", "RPS", "Workloads"], rows));
  }
  ok();
}

function sparkline(title, points) {
  const w = 260, h = 80;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart"); svg.setAttribute("width", w); svg.setAttribute("height", h);
  const text = document.createElementNS(svg.namespaceURI, "text");
  const last = points.length ? points[points.length - 1][1] : NaN;
  text.setAttribute("x", 4); text.setAttribute("y", 14); text.setAttribute("font-size", 12);
  text.textContent = `${title}: ${isNaN(last) ? "-" : last.toFixed(3)}`;
  svg.append(text);
  const ys = points.map((p) => p[1]).filter((v) => !isNaN(v));
  if (ys.length > 1) {
    const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
    const max = Math.max(...ys) || 1;
    const d = points.filter((p) => !isNaN(p[1])).map((p, i) =>
      `${i ? "L" : "M"}${((p[0] - t0) / (t1 - t0 || 1)) * (w - 8) + 4},${h - 4 - (p[1] / max) * (h - 24)}`).join("");
    const path = document.createElementNS(svg.namespaceURI, "path");
    path.setAttribute("d", d); path.setAttribute("fill", "none"); path.setAttribute("stroke", "#457b9d");
    svg.append(path);
  }
  return svg;
}

// The same text as `pilotfish explain`: numbered steps with their reasons, then the result.
function explainText(x) {
  const lines = [`${x.request.method} ${x.request.url} from ${x.from}`, ""];
  x.steps.forEach((s, i) => {
    lines.push(`${String(i + 1).padStart(2)}. ${s.step}: ${s.chosen}`);
    for (const r of s.reasons) lines.push(`      - ${r}`);
  });
  const o = x.outcome;
  lines.push("");
  if (o.status != null) lines.push(`Result: Envoy answers ${o.status}`);
  else if (o.cluster) lines.push(`Result: sent to ${o.cluster}`);
  else lines.push(`Result: split between ${Object.entries(o.clusters).map(([c, w]) => `${c} (weight ${w})`).join(", ")}`);
  if (o.authz !== "NONE") lines.push(`Authorization at the destination: ${o.authz}${o.authz_policy ? ` (${o.authz_policy})` : ""}`);
  for (const n of o.notes) lines.push(`Note: ${n}`);
  return lines.join("\n");
}

// Built once per workload so the page's periodic refresh keeps what the reader typed.
let explainBox = null;
function explainSection(ns, name) {
  const key = `${ns}/${name}`;
  if (explainBox && explainBox.dataset.workload === key) return explainBox;
  const url = el("input", { id: "explain-url", placeholder: "http://reviews:9080/", size: 40 });
  const method = el("input", { id: "explain-method", value: "GET", size: 7 });
  const header = el("input", { id: "explain-header", placeholder: "end-user: jason", size: 25 });
  const out = el("pre", { id: "explain-out", class: "explain" });
  const btn = el("button", { id: "explain-go" }, "Explain");
  btn.onclick = async () => {
    const q = new URLSearchParams({ workload: name, namespace: ns, url: url.value, method: method.value });
    if (header.value.trim()) q.append("header", header.value);
    try { out.textContent = explainText(await api(`/api/explain?${q}`)); out.className = "explain"; }
    catch (e) { out.textContent = e.message; out.className = "explain error"; }
  };
  explainBox = el("section", { "data-workload": key }, el("h3", {}, "Explain a request"),
    el("div", { class: "explain-form" }, method, url, header, btn), out);
  return explainBox;
}

async function renderWorkload(ns, name) {
  const data = await api(`/api/workload?namespace=${encodeURIComponent(ns)}&workload=${encodeURIComponent(name)}`);
  const parts = [el("h2", {}, `Workload ${ns}/${name}`)];
  for (const dir of ["inbound", "outbound"]) {
    parts.push(el("h3", {}, dir));
    const box = el("div", { class: "charts", "data-direction": dir });
    for (const [k, pts] of Object.entries(data.series[dir])) box.append(sparkline(k, pts));
    parts.push(box);
  }
  parts.push(el("h3", {}, "Proxies"), table(["Pod", "Sync", "Identity", "Cert expires"], data.pods.map((p) =>
    el("tr", {}, el("td", {}, p.name), el("td", {}, p.sidecar_sync), el("td", {}, p.identity || "-"),
      el("td", {}, p.cert_expires ? new Date(p.cert_expires * 1000).toISOString() : "-")))));
  parts.push(el("h3", {}, "Config that applies"), table(["Kind", "Namespace", "Name", "Why"],
    data.config.map((r) => el("tr", { class: "applies" }, el("td", {}, r.kind), el("td", {}, r.namespace),
      el("td", {}, r.name), el("td", {}, r.why)))));
  parts.push(explainSection(ns, name));
  page.replaceChildren(...parts);
  ok();
}

async function renderConfig() {
  const c = await api("/api/config");
  const findings = [...c.errors.map((d) => ["error", d]), ...c.warnings.map((d) => ["warning", d])];
  page.replaceChildren(el("h2", {}, `Config (revision ${c.revision})`),
    table(["Kind", "Namespace", "Name", "Source"], c.resources.map((r) => el("tr", {},
      el("td", {}, r.kind), el("td", {}, r.namespace), el("td", {}, r.name), el("td", {}, `${r.file}:${r.line}`)))),
    el("h3", {}, "Findings"),
    table(["Severity", "Where", "Message"], findings.map(([sev, d]) => el("tr", { class: "finding" },
      el("td", {}, sev), el("td", {}, `${d.file || ""}:${d.line || ""} ${d.field || ""}`),
      el("td", {}, d.message || JSON.stringify(d))))));
  ok();
}

async function renderTraces() {
  const form = document.getElementById("trace-form");
  const params = new URLSearchParams();
  if (form) {
    for (const k of ["serviceName", "limit", "lookback"]) if (form[k].value) params.set(k, form[k].value);
  }
  const data = await api("/api/traces?" + params);
  const svc = el("select", { name: "serviceName" }, el("option", { value: "" }, "(any)"),
    ...data.services.map((s) => el("option", { value: s }, s)));
  const f = el("form", { id: "trace-form" }, "Service ", svc, " Limit ", el("input", { name: "limit", value: "20", size: 4 }),
    " Lookback ms ", el("input", { name: "lookback", value: "3600000", size: 9 }), el("button", {}, "Search"));
  if (form) { svc.value = form.serviceName.value; f.limit.value = form.limit.value; f.lookback.value = form.lookback.value; }
  f.onsubmit = (ev) => { ev.preventDefault(); renderTraces().catch(showError); };
  const rows = data.traces.map((spans) => {
    const root = spans.find((s) => !s.parentId) || spans[0];
    return el("tr", { class: "trace" }, el("td", {}, el("a", { href: `#/trace/${root.traceId}` }, root.traceId)),
      el("td", {}, (root.localEndpoint || {}).serviceName || ""), el("td", {}, root.name || ""),
      el("td", {}, spans.length), el("td", {}, ((root.duration || 0) / 1000).toFixed(2) + " ms"));
  });
  page.replaceChildren(el("h2", {}, "Traces"), f, table(["Trace", "Service", "Root", "Spans", "Duration"], rows));
  ok();
}

async function renderTrace(id) {
  const spans = await api(`/api/trace/${id}`);
  const start = Math.min(...spans.map((s) => s.timestamp));
  const end = Math.max(...spans.map((s) => s.timestamp + (s.duration || 0)));
  const total = end - start || 1;
  const depth = {};
  const byId = Object.fromEntries(spans.map((s) => [s.id, s]));
  const level = (s) => (s.parentId && byId[s.parentId] && byId[s.parentId] !== s ? level(byId[s.parentId]) + 1 : 0);
  const box = el("div", { class: "waterfall" });
  for (const s of [...spans].sort((a, b) => a.timestamp - b.timestamp)) {
    depth[s.id] = level(s);
    const bar = el("div", { class: "bar", style:
      `left:${((s.timestamp - start) / total) * 100}%;width:${Math.max(((s.duration || 0) / total) * 100, 0.5)}%` });
    box.append(el("div", { class: "span-row", "data-span": s.id },
      el("div", { class: "span-label", style: `padding-left:${depth[s.id] * 12}px` },
        `${(s.localEndpoint || {}).serviceName || "?"}: ${s.name || ""} ${((s.duration || 0) / 1000).toFixed(2)}ms`),
      el("div", { class: "span-track" }, bar)));
  }
  page.replaceChildren(el("h2", {}, `Trace ${id}`), box);
  ok();
}

function route() {
  clearInterval(timer);
  const parts = (location.hash.replace(/^#\//, "") || "graph").split("/");
  const name = parts[0];
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  let render;
  if (name === "workloads" || name === "services") render = () => renderInventory(name);
  else if (name === "workload") render = () => renderWorkload(parts[1], parts[2]);
  else if (name === "config") render = renderConfig;
  else if (name === "traces") render = renderTraces;
  else if (name === "trace") render = () => renderTrace(parts[1]);
  else { page.replaceChildren(); render = renderGraph; }
  page.dataset.page = name;
  const run = () => render().then(() => { page.dataset.loaded = "1"; }).catch(showError);
  page.dataset.loaded = "";
  run();
  // Live pages refresh themselves; a trace or a search form does not change under the reader.
  if (["graph", "workloads", "services", "workload"].includes(name)) timer = setInterval(run, 5000);
}

window.addEventListener("hashchange", route);
route();
