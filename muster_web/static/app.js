// The dashboard page: hash routes (#/jobs, #/job/ID, #/nodes, #/stats), the
// JSON API of muster_web/app.py, and live changes from /api/events (SSE).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const pad = (n) => String(n).padStart(2, "0");
// Local time as YYYY-MM-DD HH:MM:SS, without Intl (its first use costs a page load hundreds of ms).
const when = (t) => {
  if (!t) return "";
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
};
const bar = (p) => `<span class="bar"><i style="width:${Math.max(0, Math.min(100, p))}%"></i></span> ${p.toFixed(0)}%`;
const status = (s, paused) => `<span class="status-${esc(s)}">${esc(s.replace(/_/g, " "))}</span>${paused ? ' <span class="status-paused">paused</span>' : ""}`;

let view = null;        // the page shown: {kind, ...state}
let events = null;      // the EventSource

async function api(path, options = {}) {
  const init = {...options, headers: {"x-muster-web": "1", ...(options.body ? {"content-type": "application/json"} : {})}};
  const reply = await fetch(path, init);
  const body = reply.headers.get("content-type")?.includes("json") ? await reply.json() : {};
  if (reply.status === 401 && path !== "/api/login") { showLogin(); throw new Error(body.error || "not logged in"); }
  if (!reply.ok) throw new Error(body.error || reply.statusText);
  return body;
}

function toast(text) {
  const box = $("#toast");
  box.textContent = text; box.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

async function act(path, label) {
  try { await api(path, {method: "POST"}); toast(label); } catch (e) { toast(`${label}: ${e.message}`); }
}

// --- session -------------------------------------------------------------------

function user() { return (document.cookie.match(/(?:^|; )muster_user=([^;]*)/) || [])[1]; }

function showLogin() {
  if (events) { events.close(); events = null; }
  $("#login").hidden = false; $("#nav").hidden = true; $("#logout").hidden = true;
  $("#page").innerHTML = ""; $("#whoami").textContent = "";
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("/api/login", {method: "POST", body: JSON.stringify({user: $("#login-user").value, password: $("#login-password").value})});
    $("#login-error").textContent = ""; route();
  } catch (e) { $("#login-error").textContent = e.message; }
});
$("#logout").addEventListener("click", async () => { await api("/api/logout", {method: "POST"}); showLogin(); });

// --- live changes ----------------------------------------------------------------

function listen() {
  if (events) return;
  events = new EventSource("/api/events");
  events.addEventListener("hello", () => $("#live").classList.add("on"));
  events.addEventListener("changes", (ev) => { for (const change of JSON.parse(ev.data)) view?.apply?.(change); });
  events.onerror = () => $("#live").classList.remove("on");
}

// --- pages -------------------------------------------------------------------------

function route() {
  if (!user()) return showLogin();
  $("#login").hidden = true; $("#nav").hidden = false; $("#logout").hidden = false;
  $("#whoami").textContent = decodeURIComponent(user());
  listen();
  if (view?.close) view.close();
  const [, page, id] = (location.hash || "#/jobs").split("/");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.page === (page === "job" || page === "folder" ? "jobs" : page));
  if (page === "job") return jobPage(Number(id));
  if (page === "nodes") return nodesPage();
  if (page === "stats") return statsPage();
  return jobsPage(page === "folder" ? Number(id) : -1);
}
window.addEventListener("hashchange", route);

// A paged table: pages fetched on demand, the tokens of the pages before kept.
function pager(load, render) {
  const state = {tokens: [""], index: 0, next: ""};
  async function show() {
    const reply = await load(state.tokens[state.index]);
    state.next = reply.next_page_token;
    render(reply);
    // When the first rows of this page load were in the page (bench/dashboard.py).
    window.firstRows = window.firstRows || performance.now();
    $("#prev").disabled = state.index === 0;
    $("#next").disabled = !state.next;
    $("#pageno").textContent = `page ${state.index + 1}`;
  }
  const controls = `<div class="pager"><button id="prev">&lt; previous</button><span id="pageno"></span><button id="next">next &gt;</button></div>`;
  function wire() {
    $("#prev").onclick = () => { state.index -= 1; show(); };
    $("#next").onclick = () => { state.tokens[state.index + 1] = state.next; state.index += 1; show(); };
  }
  return {state, show, controls, wire};
}

function jobRow(j) {
  const name = j.folder ? `<a href="#/folder/${j.id}">${esc(j.name)}/</a>` : `<a href="#/job/${j.id}">${esc(j.name)}</a>`;
  return `<tr data-id="${j.id}" class="${j.folder ? "folder" : "job"}"><td>${j.id}</td><td class="name">${name}</td>` +
    `<td class="status">${status(j.status, j.paused)}</td><td class="progress">${bar(j.progress)}</td>` +
    `<td>${j.chunks_completed}/${j.chunks_total}</td><td>${j.priority}</td><td>${esc(j.owner)}</td><td>${j.nodes_working}</td></tr>`;
}

async function jobsPage(parent) {
  const rows = new Map();
  const p = pager((token) => api(`/api/jobs?parent=${parent}&page_token=${encodeURIComponent(token)}`), (reply) => {
    rows.clear();
    for (const j of reply.jobs) rows.set(j.id, j);
    $("#jobs tbody").innerHTML = reply.jobs.map(jobRow).join("") || `<tr class="empty"><td colspan="8">no jobs</td></tr>`;
  });
  const up = parent === -1 ? "" : `<a href="#/jobs">queue</a> / <span id="folder-path">folder ${parent}</span>`;
  $("#page").innerHTML = `<h1>Jobs</h1><div class="crumbs">${up}</div>${p.controls}` +
    `<table id="jobs"><thead><tr><th>id</th><th>name</th><th>status</th><th>progress</th><th>chunks</th><th>priority</th><th>owner</th><th>nodes</th></tr></thead><tbody></tbody></table>`;
  p.wire();
  view = {
    kind: "jobs",
    apply(change) {
      if (change.kind !== "job") return;
      const j = change.job;
      const row = $(`#jobs tr[data-id="${j.id}"]`);
      if (change.deleted) { row?.remove(); rows.delete(j.id); return; }
      if (row) { row.outerHTML = jobRow(j); rows.set(j.id, j); }
      else if (j.parent_id === parent && !p.state.next && rows.size < 100) {
        $("#jobs tbody tr.empty")?.remove();
        $("#jobs tbody").insertAdjacentHTML("beforeend", jobRow(j)); rows.set(j.id, j);
      }
    },
  };
  try { await p.show(); } catch (e) { toast(e.message); }
  if (parent !== -1) {
    // The folder's name, and the way up when it sits in another folder.
    try {
      const folder = await api(`/api/jobs/${parent}`);
      const above = folder.parent_id === -1 ? "" : `<a href="#/folder/${folder.parent_id}">…</a> / `;
      $("#folder-path").innerHTML = `${above}${esc(folder.name)}`;
    } catch (e) { toast(e.message); }
  }
}

function chunkRow(c) {
  return `<tr data-id="${c.id}"><td>${c.id}</td><td>${esc(c.frames)}</td><td class="status">${status(c.status)}</td>` +
    `<td class="progress">${bar(c.progress)}</td><td>${esc(c.node_name)}</td><td>${c.requeue_count}</td>` +
    `<td><button class="chunk-log" data-id="${c.id}">log</button><button class="chunk-requeue" data-id="${c.id}">requeue</button></td></tr>`;
}

async function jobPage(id) {
  let job;
  try { job = await api(`/api/jobs/${id}`); } catch (e) { $("#page").innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
  const header = (j) => `<h1 id="job-title">${esc(j.name)} <small>#${j.id}</small></h1>` +
    `<p>Status: <b id="job-status">${status(j.status, j.paused)}</b> · ${bar(j.progress)} · ${j.chunks_completed}/${j.chunks_total} chunks, ${j.chunks_running} running, ${j.chunks_failed} failed · owner ${esc(j.owner)} · priority ${j.priority} · frames ${esc(j.frames)}</p>`;
  const p = pager((token) => api(`/api/jobs/${id}/chunks?page_token=${encodeURIComponent(token)}`),
    (reply) => { $("#chunks tbody").innerHTML = reply.chunks.map(chunkRow).join(""); });
  $("#page").innerHTML = `<div id="job-head">${header(job)}</div><div class="actions">` +
    ["pause", "resume", "reinit", "delete"].map((a) => `<button data-action="${a}">${a}</button>`).join("") +
    `</div><div class="grid"><div><h2>Chunks</h2>${p.controls}<table id="chunks"><thead><tr><th>id</th><th>frames</th><th>status</th><th>progress</th><th>node</th><th>requeues</th><th></th></tr></thead><tbody></tbody></table></div>` +
    `<div id="chunk-panel"></div></div>`;
  p.wire();
  for (const b of document.querySelectorAll(".actions button")) {
    b.onclick = async () => {
      const a = b.dataset.action;
      if (a === "delete" && !confirm(`Delete job ${id}?`)) return;
      await act(`/api/jobs/${id}/${a}`, `job ${id}: ${a}`);
      if (a === "delete") location.hash = "#/jobs";
    };
  }
  $("#chunks").addEventListener("click", (ev) => {
    const b = ev.target.closest("button"); if (!b) return;
    if (b.classList.contains("chunk-log")) chunkPanel(id, Number(b.dataset.id), 0);
    if (b.classList.contains("chunk-requeue")) act(`/api/jobs/${id}/chunks/${b.dataset.id}/requeue`, `chunk ${b.dataset.id} requeued`);
  });
  const state = {follow: null};
  view = {
    kind: "job",
    close() { state.follow?.close(); },
    apply(change) {
      if (change.kind === "job" && change.job.id === id && !change.deleted) $("#job-head").innerHTML = header(change.job);
      if (change.kind === "chunk" && change.chunk.job_id === id) {
        const row = $(`#chunks tr[data-id="${change.chunk.id}"]`);
        if (row) row.outerHTML = chunkRow(change.chunk);
      }
    },
  };
  // The chunk's runs and a run's log: read whole when it ended, followed while running.
  async function chunkPanel(jobId, chunkId, run) {
    state.follow?.close(); state.follow = null;
    const panel = $("#chunk-panel");
    panel.innerHTML = `<h2>Chunk ${chunkId}</h2><table id="chunk-history"><thead><tr><th>run</th><th>node</th><th>started</th><th>ended</th><th>outcome</th><th>exit</th><th></th></tr></thead><tbody></tbody></table><h3 id="log-title">Log</h3><div id="log-marks"></div><div id="log"></div>`;
    try {
      const history = await api(`/api/jobs/${jobId}/chunks/${chunkId}/history`);
      $("#chunk-history tbody").innerHTML = history.runs.map((r) => `<tr><td>${r.run_number}</td><td>${esc(r.node_name)}</td><td>${when(r.start_time)}</td><td>${when(r.end_time)}</td><td>${status(r.outcome)}</td><td>${r.end_time ? r.exit_code : ""}</td><td><button data-run="${r.run_number}">log</button></td></tr>`).join("") || `<tr><td colspan="7">not run yet</td></tr>`;
      for (const b of panel.querySelectorAll("button[data-run]")) b.onclick = () => chunkPanel(jobId, chunkId, Number(b.dataset.run));
      const log = await api(`/api/jobs/${jobId}/chunks/${chunkId}/log?run=${run}&tail=1000`);
      $("#log-title").textContent = `Log of run ${log.run.run_number} (${log.last_line} lines)`;
      $("#log-marks").innerHTML = (log.error_lines.length ? `errors at ${log.error_lines.slice(0, 20).map((n) => `<a href="#" data-line="${n}">${n}</a>`).join(", ")} ` : "") +
        (log.warning_lines.length ? `warnings at ${log.warning_lines.slice(0, 20).map((n) => `<a href="#" data-line="${n}">${n}</a>`).join(", ")}` : "");
      for (const a of $("#log-marks").querySelectorAll("a")) a.onclick = (ev) => { ev.preventDefault(); $(`#log [data-n="${a.dataset.line}"]`)?.scrollIntoView(); };
      writeLines(log.lines, log.gaps);
      if (!log.run.end_time) follow(jobId, chunkId, log.run.run_number, log.last_line);
    } catch (e) { $("#log").textContent = e.message; }
  }
  function writeLines(lines, gaps) {
    const box = $("#log");
    const html = gaps.map((g) => `<div class="gap">… lines ${g.first_line}-${g.last_line} dropped (${g.bytes} bytes) …</div>`).join("") +
      lines.map((l) => `<div class="line ${l.mark === "unspecified" ? "" : l.mark}" data-n="${l.number}"><span class="n">${l.number}</span>${esc(l.text)}</div>`).join("");
    const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.insertAdjacentHTML("beforeend", html);
    if (atEnd) box.scrollTop = box.scrollHeight;
  }
  function follow(jobId, chunkId, run, seen) {
    const source = new EventSource(`/api/jobs/${jobId}/chunks/${chunkId}/log/follow?run=${run}&tail=1`);
    state.follow = source;
    $("#log-title").textContent += " · following";
    source.addEventListener("lines", (ev) => {
      const msg = JSON.parse(ev.data);
      writeLines(msg.lines.filter((l) => l.number > seen), msg.gaps);
      for (const l of msg.lines) seen = Math.max(seen, l.number);
      if (msg.ended) { source.close(); $("#log-title").textContent = `Log of run ${run} (ended: ${msg.run?.outcome ?? ""})`; }
    });
    source.addEventListener("failed", (ev) => { source.close(); toast(JSON.parse(ev.data).error); });
  }
  try { await p.show(); } catch (e) { toast(e.message); }
}

function nodeRow(n) {
  const work = n.job_id ? `<a href="#/job/${n.job_id}">job ${n.job_id}</a> chunk ${n.chunk_id} ${bar(n.chunk_progress)}` : "";
  return `<tr data-id="${n.id}"><td>${n.id}</td><td class="name">${esc(n.name)}</td><td class="status">${status(n.status, n.paused && n.status !== "paused")}</td>` +
    `<td class="work">${work}</td><td>${esc(n.pools.join(", "))}</td><td>${esc(n.platform)}</td><td>${when(n.last_heartbeat_time)}</td>` +
    `<td><button class="node-pause" data-id="${n.id}">pause</button><button class="node-resume" data-id="${n.id}">resume</button></td></tr>`;
}

async function nodesPage() {
  const p = pager((token) => api(`/api/nodes?page_token=${encodeURIComponent(token)}`),
    (reply) => { $("#nodes tbody").innerHTML = reply.nodes.map(nodeRow).join("") || `<tr><td colspan="8">no nodes</td></tr>`; });
  $("#page").innerHTML = `<h1>Nodes</h1>${p.controls}<table id="nodes"><thead><tr><th>id</th><th>name</th><th>status</th><th>current chunk</th><th>pools</th><th>platform</th><th>last heartbeat</th><th></th></tr></thead><tbody></tbody></table>`;
  p.wire();
  $("#nodes").addEventListener("click", (ev) => {
    const b = ev.target.closest("button"); if (!b) return;
    const action = b.classList.contains("node-pause") ? "pause" : "resume";
    act(`/api/nodes/${b.dataset.id}/${action}`, `node ${b.dataset.id}: ${action}`);
  });
  view = {
    kind: "nodes",
    apply(change) {
      if (change.kind !== "node") return;
      const row = $(`#nodes tr[data-id="${change.node.id}"]`);
      if (row && change.deleted) row.remove(); else if (row) row.outerHTML = nodeRow(change.node);
    },
  };
  try { await p.show(); } catch (e) { toast(e.message); }
}

// --- statistics: small SVG line charts ---------------------------------------------------

const COLOURS = ["#1565c0", "#2e7d32", "#ef6c00", "#c62828", "#6a1b9a"];

function chart(title, samples, series) {
  const w = 600, h = 180, pad = 30;
  const times = samples.map((s) => s.time);
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const top = Math.max(1, ...samples.flatMap((s) => series.map((k) => s[k])));
  const x = (t) => pad + ((t - t0) / (t1 - t0)) * (w - pad - 5);
  const y = (v) => h - pad + 10 - (v / top) * (h - pad - 5);
  const lines = series.map((k, i) => `<polyline fill="none" stroke="${COLOURS[i]}" stroke-width="1.5" points="${samples.map((s) => `${x(s.time).toFixed(1)},${y(s[k]).toFixed(1)}`).join(" ")}"/>` +
    (samples.length < 60 ? samples.map((s) => `<circle r="2.5" fill="${COLOURS[i]}" cx="${x(s.time).toFixed(1)}" cy="${y(s[k]).toFixed(1)}"/>`).join("") : "")).join("");
  const axes = `<line x1="${pad}" y1="${y(0)}" x2="${w - 5}" y2="${y(0)}" stroke="#999"/><line x1="${pad}" y1="5" x2="${pad}" y2="${y(0)}" stroke="#999"/>` +
    `<text x="2" y="14" font-size="10">${top}</text><text x="2" y="${y(0)}" font-size="10">0</text>` +
    `<text x="${pad}" y="${h - 2}" font-size="10">${esc(when(t0).slice(11))}</text>` +
    `<text x="${w - 5}" y="${h - 2}" font-size="10" text-anchor="end">${esc(when(t1).slice(11))}</text>`;
  const legend = series.map((k, i) => `<span style="color:${COLOURS[i]}">■ ${esc(k.replace(/_/g, " "))}</span>`).join("");
  return `<div class="chart"><h3>${esc(title)}</h3><svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none">${axes}${lines}</svg><div class="legend">${legend}</div></div>`;
}

async function statsPage() {
  $("#page").innerHTML = `<h1>Statistics</h1><p><label>Last <select id="hours"><option>1</option><option selected>24</option><option>168</option></select> hours</label> <span id="samples"></span></p><div id="stats" class="grid"></div>`;
  // Redrawn every 30 s: a new sample is taken every statistics interval.
  const timer = setInterval(() => draw(), 30000);
  view = {kind: "stats", close() { clearInterval(timer); }};
  async function draw() {
    try {
      const reply = await api(`/api/statistics?hours=${$("#hours").value}`);
      const s = reply.samples;
      $("#samples").textContent = `${s.length} samples`;
      $("#stats").innerHTML = s.length ? chart("Nodes", s, ["nodes_idle", "nodes_rendering", "nodes_paused", "nodes_offline"]) +
        chart("Jobs", s, ["jobs_queued", "jobs_running"]) + chart("Chunks", s, ["chunks_queued", "chunks_running"]) : "<p>No statistics samples in this range yet.</p>";
    } catch (e) { toast(e.message); }
  }
  $("#hours").onchange = draw;
  await draw();
}

route();
