// Flowbot dashboard: plain JavaScript over the REST API and the WebSocket notification feed.
"use strict";

const $ = (selector) => document.querySelector(selector);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
};

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error(data.detail || data.title || response.statusText);
  return data;
}

function parseVariables(text) {
  const trimmed = text.trim();
  if (!trimmed) return {};
  const value = JSON.parse(trimmed);
  if (typeof value !== "object" || Array.isArray(value) || value === null) throw new Error("variables must be a JSON object");
  return value;
}

// Graph of a definition, or of an instance with its path highlighted.
async function showGraph(process, version, instance) {
  const query = version ? `?version=${version}` : "";
  const svg = await api("GET", `/api/v1/definitions/${encodeURIComponent(process)}/graph.svg${query}`);
  const box = $("#graph");
  box.innerHTML = svg;
  $("#graph-title").textContent = instance ? `Graph of ${instance.id} (v${instance.version})` : `Graph of ${process}${version ? " v" + version : ""}`;
  if (!instance) return;
  const visited = new Set(instance.path);
  for (const node of box.querySelectorAll("g[data-node]")) {
    if (visited.has(node.dataset.node)) node.classList.add("visited");
  }
  for (const flow of box.querySelectorAll("path.flow")) {
    if (visited.has(flow.dataset.source) && visited.has(flow.dataset.target)) flow.classList.add("visited");
  }
  for (const wait of instance.waiting_on) {
    const node = box.querySelector(`g[data-node="${CSS.escape(wait.node)}"]`);
    if (node) node.classList.add("waiting");
  }
  // An incident here, or in an instance a call activity waits for, marks the node concerned.
  for (const incident of instance.incidents) {
    const node = box.querySelector(`g[data-node="${CSS.escape(incident.call || incident.node)}"]`);
    if (node) node.classList.add("incident");
  }
}

// The incidents of an instance in one line: its own, and those of instances it calls.
function incidentSummary(instance) {
  if (!instance.incidents.length) return "";
  const lines = instance.incidents.map((i) => i.instance ? `${i.call} → ${i.instance} ${i.node}: ${i.message}` : `${i.node}: ${i.message}`);
  return el("span", { class: "incident-mark", title: lines.join("\n") }, ` ⚠ ${instance.incidents.length} incident${instance.incidents.length > 1 ? "s" : ""}`);
}

async function loadDefinitions() {
  const definitions = await api("GET", "/api/v1/definitions");
  const list = $("#definitions");
  const select = $("#start-process");
  const chosen = select.value;
  list.replaceChildren(...definitions.map((d) => {
    const latest = d.versions[d.versions.length - 1];
    return el("li", {},
      el("div", { class: "row" },
        el("button", { class: "link", onclick: () => showGraph(d.id, d.latest) }, d.name ? `${d.name} (${d.id})` : d.id),
        el("span", { class: "muted" }, `v${d.latest} · ${latest.source} · ${latest.content_hash.slice(0, 8)}`)));
  }));
  select.replaceChildren(...definitions.map((d) => el("option", { value: d.id }, d.id)));
  if (definitions.some((d) => d.id === chosen)) select.value = chosen;
}

let instances = [];
let selected = null;

function renderInstances() {
  const words = $("#instance-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const rows = instances.filter((i) => {
    const text = [i.id, i.process, i.status, i.business_key || "", ...i.waiting_on.map((w) => w.node)].join(" ").toLowerCase();
    return words.every((w) => text.includes(w));
  });
  $("#instances tbody").replaceChildren(...rows.map((i) => el("tr", { class: i.id === selected ? "selected" : "", "data-instance": i.id },
    el("td", {}, i.id), el("td", {}, i.process), el("td", {}, i.version),
    el("td", { class: `status-${i.status}` }, i.status), el("td", {}, i.business_key || ""),
    el("td", {}, i.waiting_on.map((w) => `${w.node} (${w.kind})`).join(", "), incidentSummary(i)),
    el("td", { class: "muted" }, new Date(i.started).toLocaleTimeString()),
    el("td", {}, el("button", { class: "link", onclick: () => { selected = i.id; renderInstances(); showGraph(i.process, i.version, i); } }, "graph")))));
}

async function loadInstances() {
  const page = await api("GET", "/api/v1/instances?limit=200");
  instances = page.items.reverse();
  renderInstances();
}

// A value typed into a form field: the type the field had (a number stays a number), else a
// number when it reads as one, else text; an empty field is no value.
function formValue(text, current) {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  if (typeof current === "string") return text;
  const number = Number(trimmed);
  return Number.isFinite(number) && /^-?[0-9.]+$/.test(trimmed) ? number : text;
}

// A task's form: one field per variable it lists, pre-filled with the current value; or a JSON
// box of variables when it lists none.
function taskForm(t) {
  const result = el("output");
  const fields = Object.entries(t.form || {}).map(([name, value]) =>
    el("label", {}, name, el("input", { name, "data-field": name, value: value === null ? "" : String(value) })));
  const variables = fields.length ? null : el("textarea", { rows: 1, placeholder: "{}", "aria-label": "variables" });
  const form = el("form", { "data-task": t.id, onsubmit: async (event) => {
    event.preventDefault();
    try {
      const body = variables ? parseVariables(variables.value) : Object.fromEntries(
        [...form.querySelectorAll("input[data-field]")].map((input) => [input.name, formValue(input.value, t.form[input.name])]));
      await api("POST", `/api/v1/tasks/${encodeURIComponent(t.id)}/complete`, { variables: body });
      refresh();
    } catch (error) { result.className = "error"; result.textContent = error.message; }
  } }, ...fields, variables || "", el("button", { type: "submit" }, "Complete"), result);
  return form;
}

// Task items are kept while their task is open, so what a reviewer types survives the refresh.
const taskItems = new Map();
async function loadTasks() {
  const tasks = await api("GET", "/api/v1/tasks");
  const open = new Set(tasks.map((t) => t.id));
  for (const id of taskItems.keys()) if (!open.has(id)) taskItems.delete(id);
  $("#tasks").replaceChildren(...(tasks.length ? tasks.map((t) => {
    if (!taskItems.has(t.id)) {
      taskItems.set(t.id, el("li", { "data-task": t.id },
        el("div", { class: "row" }, el("strong", {}, t.name || t.node), el("span", { class: "muted" }, `${t.instance} · ${t.kind}`)),
        taskForm(t)));
    }
    return taskItems.get(t.id);
  }) : [el("li", { class: "muted" }, "No open tasks.")]));
}

async function loadIncidents() {
  const incidents = await api("GET", "/api/v1/incidents");
  $("#incidents").replaceChildren(...(incidents.length ? incidents.map((i) => {
    const result = el("output");
    return el("li", {},
      el("div", { class: "row" }, el("strong", {}, `${i.instance} · ${i.node}`),
        el("button", { class: "secondary", onclick: async () => {
          try { await api("POST", `/api/v1/incidents/${encodeURIComponent(i.id)}/retry`); refresh(); }
          catch (error) { result.className = "error"; result.textContent = error.message; }
        } }, "Retry")),
      el("div", { class: "error" }, i.message), result);
  }) : [el("li", { class: "muted" }, "No open incidents.")]));
}

async function loadHealth() {
  const pill = $("#health");
  try {
    const ready = await api("GET", "/readyz");
    pill.textContent = `ready · ${ready.instances} instances`;
    pill.className = "pill ok";
  } catch (error) { pill.textContent = "not ready"; pill.className = "pill bad"; }
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try { await Promise.all([loadInstances(), loadTasks(), loadIncidents(), loadHealth()]); }
  catch (error) { console.error(error); }
  finally { refreshing = false; }
}

// The live feed: resumes after the last entry seen, so a reconnect misses nothing.
let lastSeq = null;
function connectFeed() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const after = lastSeq === null ? "" : `?after=${lastSeq}`;
  const socket = new WebSocket(`${scheme}://${location.host}/ws/notifications${after}`);
  const state = $("#feed-state");
  socket.onopen = () => { state.textContent = "live"; state.className = "pill ok"; };
  socket.onmessage = (event) => {
    const entry = JSON.parse(event.data);
    lastSeq = entry.seq;
    const content = typeof entry.content === "string" ? entry.content : JSON.stringify(entry.content);
    $("#feed").prepend(el("li", { "data-seq": entry.seq },
      el("span", { class: "seq" }, `#${entry.seq}`),
      el("span", {}, `${entry.sender} → ${entry.receiver}`),
      el("span", { class: "content" }, content)));
    refresh();
  };
  socket.onclose = () => { state.textContent = "reconnecting"; state.className = "pill bad"; setTimeout(connectFeed, 1000); };
}

$("#start-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = $("#start-result");
  try {
    const body = { process: $("#start-process").value, variables: parseVariables($("#start-vars").value) };
    const key = $("#start-key").value.trim();
    if (key) body.business_key = key;
    const instance = await api("POST", "/api/v1/instances", body);
    result.className = "";
    result.textContent = `started ${instance.id}: ${instance.status}`;
    selected = instance.id;
    await refresh();
    showGraph(instance.process, instance.version, instance);
  } catch (error) { result.className = "error"; result.textContent = error.message; }
});
$("#email-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = $("#email-result");
  const button = $("#email-button");
  result.className = "";
  result.textContent = "reading…";
  button.disabled = true;
  try {
    const read = await api("POST", "/api/v1/intake/text", { text: $("#email-text").value });
    const fields = Object.entries(read.order).map(([name, value]) => `${name}: ${value === null ? "–" : value}`).join(" · ");
    const outcome = read.review_task
      ? `review opened (${read.review_reasons.join(", ") || "the model's output is not valid"}): complete it under Open tasks`
      : `${read.instance.status}: the order goes on to order processing`;
    result.replaceChildren(el("strong", {}, read.instance.id), ` ${outcome}`, el("br"), el("span", { class: "muted", id: "email-fields" }, fields));
    selected = read.instance.id;
    await refresh();
    showGraph(read.instance.process, read.instance.version, read.instance);
  } catch (error) { result.className = "error"; result.textContent = error.message; }
  finally { button.disabled = false; }
});
$("#instance-filter").addEventListener("input", renderInstances);

loadDefinitions().catch(console.error);
refresh();
connectFeed();
setInterval(refresh, 3000);
setInterval(() => loadDefinitions().catch(console.error), 10000);
