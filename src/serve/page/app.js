// The page of `wrapper serve`: plain JavaScript over the JSON API. Agent output is
// untrusted, so text only ever enters the DOM through textContent, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { page: 1, session: null, oldestPage: 1, eventsTotal: 0, stream: null, liveStream: null };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// --- the token ------------------------------------------------------------------------
// The URL `wrapper serve` printed carries the token in its fragment (`/#token=…`), which the
// browser sends to no server. It is kept in this tab's sessionStorage (kept apart by origin,
// port included, unlike a cookie, which every port of the host would receive; and gone with
// the tab, so a later program on the same port finds nothing), taken out of the address bar,
// and sent as `Authorization: Bearer` with every request (src/serve/auth.rs). A refused
// token is forgotten.
const TOKEN_KEY = "wrapper-serve-token";
let tokenInMemory = null;

function takeToken() {
  const m = location.hash.match(/^#token=([^&]*)(?:&(.*))?$/);
  if (!m) return;
  let t = m[1];
  try { t = decodeURIComponent(t); } catch (_) { /* not %-encoded: as it is */ }
  tokenInMemory = t;
  try { sessionStorage.setItem(TOKEN_KEY, t); } catch (_) { /* storage off: this page only */ }
  history.replaceState(null, "", location.pathname + location.search + (m[2] ? `#${m[2]}` : ""));
}

function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || tokenInMemory; } catch (_) { return tokenInMemory; }
}

function forgetToken() {
  tokenInMemory = null;
  try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* nothing kept */ }
}

function headers(extra) {
  const t = token();
  return Object.assign(t ? { Authorization: `Bearer ${t}` } : {}, extra || {});
}

async function failure(r) {
  if (r.status === 401) forgetToken();
  const body = await r.json().catch(() => ({}));
  const e = new Error((body.error && body.error.message) || `${r.status} ${r.statusText}`);
  e.final = r.status === 401 || r.status === 403;
  return e;
}

async function api(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const url = q.toString() ? `${path}?${q}` : path;
  const r = await fetch(url, { headers: headers({ Accept: "application/json" }) });
  if (!r.ok) throw await failure(r);
  return r.json();
}

// Server-Sent Events read with fetch (EventSource cannot send the token): `on[name](data)`
// for each event; after an error or the end, again in 2 s from the last id seen (the server
// resumes after `Last-Event-ID`). Returns { close }.
function eventStream(url, on) {
  let closed = false;
  let abort = null;
  let lastId = null;
  const dispatch = (block) => {
    let name = "message";
    const data = [];
    for (const raw of block.split("\n")) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "" || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
      else if (field === "id") lastId = value;
    }
    if (data.length && on[name]) on[name](data.join("\n"));
    else if (name !== "message" && on[name]) on[name]("");
  };
  (async () => {
    while (!closed) {
      const ac = new AbortController();
      abort = ac;
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (lastId !== null) h["Last-Event-ID"] = lastId;
        const r = await fetch(url, { headers: h, signal: ac.signal });
        if (!r.ok) throw await failure(r);
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let end;
          while ((end = buf.search(/\r?\n\r?\n/)) >= 0) {
            const m = buf.slice(end).match(/^\r?\n\r?\n/);
            dispatch(buf.slice(0, end));
            buf = buf.slice(end + m[0].length);
          }
        }
      } catch (e) {
        if (closed) return;
        if (on.error) on.error(e);
        // Refused (no token, a wrong one, another origin): asking again would not help.
        if (e.final) return;
      }
      if (!closed) await new Promise((res) => setTimeout(res, 2000));
    }
  })();
  return { close() { closed = true; if (abort) abort.abort(); } };
}

function status(text, isError) {
  const s = $("status");
  s.textContent = text || "";
  s.className = isError ? "error" : "";
}

const time = (ts) => (ts ? ts.replace("T", " ").replace("Z", "") : "");
const clock = (ts) => (ts ? ts.slice(11, 23) : "");
const short = (id) => (id || "").slice(0, 8);

function duration(a, b) {
  if (!a || !b) return "";
  const ms = Date.parse(b) - Date.parse(a);
  if (!(ms >= 0)) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.floor(ms / 1000) % 60} s`;
}

function command(json) {
  try {
    return JSON.parse(json).join(" ");
  } catch (_) {
    return json || "";
  }
}

function show(which) {
  for (const id of ["welcome", "session", "search-results", "live"]) $(id).hidden = id !== which;
}

// --- sessions -------------------------------------------------------------------------

async function loadAgents() {
  const stats = await api("/api/query/stats");
  const sel = $("f-agent");
  for (const a of stats.by_agent) sel.append(el("option", { value: a.agent_name }, a.agent_name));
  const t = $("totals");
  t.replaceChildren(
    el("p", {}, `${stats.sessions} sessions (${stats.active_sessions} active), ${stats.events} events`),
    el("ul", { class: "chips" }, ...stats.by_type.map((c) => el("li", { class: `type-${c.event_type}` }, `${c.event_type} ${c.n}`))),
  );
}

function sessionFilters() {
  return { agent: $("f-agent").value, days: $("f-days").value, active: $("f-active").checked ? "true" : "" };
}

async function loadSessions(append) {
  state.page = append ? state.page + 1 : 1;
  const r = await api("/api/query/sessions", { ...sessionFilters(), limit: 50, page: state.page });
  const list = $("sessions");
  if (!append) list.replaceChildren();
  for (const s of r.sessions) {
    const li = el("li", { "data-session": s.session_id, class: `state-${s.state}`, tabIndex: 0 },
      el("span", { class: "agent" }, s.agent_name),
      el("span", { class: "state" }, s.state),
      el("span", { class: "when" }, time(s.started_at)),
      el("span", { class: "cmd" }, command(s.command_json)),
      el("span", { class: "n" }, `${s.total_extraction_events} events`));
    li.addEventListener("click", () => openSession(s.session_id));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") openSession(s.session_id); });
    if (s.session_id === state.session) li.classList.add("selected");
    list.append(li);
  }
  $("sessions-count").textContent = `${r.total} session${r.total === 1 ? "" : "s"}`;
  $("sessions-more").hidden = r.page * r.limit >= r.total;
}

// --- one session ----------------------------------------------------------------------

async function openSession(id, focusEvent) {
  state.session = id;
  for (const li of document.querySelectorAll("#sessions li")) li.classList.toggle("selected", li.dataset.session === id);
  if (location.hash !== `#session=${id}`) history.replaceState(null, "", `#session=${id}`);
  const d = await api(`/api/query/session/${encodeURIComponent(id)}`);
  const s = d.session;
  show("session");
  $("session-title").textContent = `${s.agent_name} · ${short(s.session_id)} · ${s.state}`;
  const facts = [
    ["session", s.session_id], ["command", command(s.command_json)], ["started", time(s.started_at)],
    ["ended", time(s.ended_at)], ["duration", duration(s.started_at, s.ended_at)],
    ["exit code", s.exit_code ?? ""], ["cwd", s.cwd || ""], ["lines", s.total_lines_processed],
    ["events", s.total_extraction_events], ["code blocks", d.code_blocks_total],
  ];
  $("session-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const types = {};
  for (const c of d.event_counts) types[c.event_type] = (types[c.event_type] || 0) + c.n;
  $("session-counts").replaceChildren(el("ul", { class: "chips" },
    ...Object.entries(types).map(([t, n]) => el("li", { class: `type-${t}` }, `${t} ${n}`))));
  const sel = $("f-type");
  sel.replaceChildren(el("option", { value: "" }, "all events"),
    ...Object.keys(types).sort().map((t) => el("option", { value: t }, t)));
  state.stateChanges = d.state_changes;
  showPlayer(s, d.capture);
  await loadTimeline(false, focusEvent);
  follow(s);
}

// The captured output in asciinema-player (vendored, Apache-2.0), from the asciicast export.
function showPlayer(s, capture) {
  if (state.player) { state.player.dispose(); state.player = null; }
  const box = $("player-box");
  const playerEl = $("player");
  playerEl.replaceChildren();
  box.hidden = !(capture && !capture.dropped_at && window.AsciinemaPlayer);
  if (box.hidden) return;
  const url = `/api/export/session/${encodeURIComponent(s.session_id)}.cast`;
  // A plain link would go without the token: fetched, then saved from memory.
  $("cast-link").onclick = (ev) => {
    ev.preventDefault();
    fetch(url, { headers: headers() })
      .then(async (r) => { if (!r.ok) throw await failure(r); return r.blob(); })
      .then((b) => {
        const a = el("a", { href: URL.createObjectURL(b), download: `${s.session_id}.cast` });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      })
      .catch(fail);
  };
  // The poster is the last screen: what the user saw when the agent finished.
  const end = (Math.max(0, capture.duration_us) / 1e6 + 0.001).toFixed(3);
  state.player = window.AsciinemaPlayer.create({ url, fetchOpts: { headers: headers() } }, playerEl, {
    fit: "width", idleTimeLimit: 2, poster: `npt:${end}`, terminalFontSize: "13px",
  });
}

async function loadTimeline(earlier, focusEvent) {
  if (!earlier) state.oldestPage = 1; else state.oldestPage += 1;
  const r = await api("/api/query/extractions", {
    session: state.session, type: $("f-type").value, limit: 200, page: state.oldestPage,
  });
  const body = $("timeline").tBodies[0];
  const rows = r.extractions.slice().reverse().map(eventRow);
  if (!earlier) {
    body.replaceChildren();
    // State changes among the events, at their times.
    const states = $("f-type").value ? [] : state.stateChanges.map(stateRow);
    const all = rows.concat(states).sort((a, b) => (a.dataset.ts < b.dataset.ts ? -1 : a.dataset.ts > b.dataset.ts ? 1 : 0));
    body.append(...all);
  } else {
    body.prepend(...rows);
  }
  $("timeline-earlier").hidden = r.page * r.limit >= r.total;
  if (focusEvent) {
    const row = body.querySelector(`tr[data-event="${focusEvent}"]`);
    if (row) { row.classList.add("focus"); row.scrollIntoView({ block: "center" }); }
  }
}

function eventRow(e) {
  return el("tr", { class: `event type-${e.event_type}`, "data-event": e.id, "data-ts": e.timestamp },
    el("td", { class: "when", title: e.timestamp }, clock(e.timestamp)),
    el("td", { class: "num" }, e.line_number ?? ""),
    el("td", { class: "what" }, e.event_type),
    el("td", {}, e.pattern),
    el("td", { class: `risk risk-${e.risk_level || "none"}` }, e.risk_level || ""),
    el("td", { class: "value" }, e.matched_value ?? e.original_line ?? ""));
}

function stateRow(c) {
  return el("tr", { class: `state-change state-${c.state}`, "data-ts": c.timestamp },
    el("td", { class: "when", title: c.timestamp }, clock(c.timestamp)), el("td", {}, ""),
    el("td", { class: "what" }, c.state), el("td", {}, ""), el("td", {}, ""),
    el("td", { class: "value" }, c.exit_code !== null ? `exit ${c.exit_code}` : ""));
}

// A running session's new events arrive on the stream and join the timeline.
function follow(s) {
  if (state.stream) { state.stream.close(); state.stream = null; }
  if (s.state !== "started" && s.state !== "running") return;
  state.stream = eventStream(`/api/events/stream?session=${encodeURIComponent(s.session_id)}`, {
    extraction: (data) => {
      const e = JSON.parse(data);
      if ($("f-type").value && $("f-type").value !== e.event_type) return;
      if (!document.querySelector(`#timeline tr[data-event="${e.id}"]`)) $("timeline").tBodies[0].append(eventRow(e));
    },
  });
}

// --- search ---------------------------------------------------------------------------

async function search(q) {
  const r = await api("/api/query/search", { q, agent: $("f-agent").value, limit: 50 });
  show("search-results");
  $("search-info").textContent = `${r.hits.length} hit${r.hits.length === 1 ? "" : "s"} for “${r.query}”` +
    (r.not_indexed > 0 ? ` (${r.not_indexed} newer rows are not indexed yet)` : "");
  $("hits").replaceChildren(...r.hits.map((h) => {
    const snippet = el("span", { class: "snippet" });
    // Matches are wrapped in U+0002 … U+0003.
    for (const [i, part] of h.snippet_marked.split(/[\u0002\u0003]/).entries()) {
      snippet.append(i % 2 ? el("mark", {}, part) : part);
    }
    const li = el("li", { class: "hit", tabIndex: 0 },
      el("span", { class: "agent" }, h.agent_name), el("span", { class: "when" }, time(h.timestamp)),
      el("span", { class: "what" }, h.kind === "event" ? h.event_type : `code ${h.language || ""}`),
      snippet);
    li.addEventListener("click", () => openSession(h.session_id, h.kind === "event" ? h.id : null).catch(fail));
    return li;
  }));
}

// --- live tail ------------------------------------------------------------------------

function toggleLive() {
  const b = $("live-toggle");
  if (state.liveStream) {
    state.liveStream.close();
    state.liveStream = null;
    b.setAttribute("aria-pressed", "false");
    return;
  }
  show("live");
  b.setAttribute("aria-pressed", "true");
  const agent = $("f-agent").value;
  state.liveStream = eventStream(`/api/events/stream${agent ? `?agent=${encodeURIComponent(agent)}` : ""}`, {
    ready: () => status("following new events"),
    error: (e) => status(e.final ? e.message : "stream interrupted; reconnecting…", true),
    extraction: (data) => {
      const e = JSON.parse(data);
      const tr = el("tr", { class: `event type-${e.event_type}`, "data-event": e.id },
        el("td", { class: "when", title: e.timestamp }, clock(e.timestamp)), el("td", {}, e.agent_name),
        el("td", { class: "session" }, short(e.session_id)), el("td", { class: "what" }, e.event_type),
        el("td", { class: "value" }, e.matched_value ?? e.original_line ?? ""));
      tr.addEventListener("click", () => openSession(e.session_id, e.id).catch(fail));
      const body = $("live-events").tBodies[0];
      body.prepend(tr);
      while (body.rows.length > 500) body.deleteRow(-1);
    },
  });
}

// --- wiring ---------------------------------------------------------------------------

function fail(e) {
  status(e.message, true);
}

document.addEventListener("DOMContentLoaded", () => {
  takeToken();
  for (const id of ["f-agent", "f-days", "f-active"]) $(id).addEventListener("change", () => loadSessions(false).catch(fail));
  $("sessions-more").addEventListener("click", () => loadSessions(true).catch(fail));
  $("f-type").addEventListener("change", () => loadTimeline(false).catch(fail));
  $("timeline-earlier").addEventListener("click", () => loadTimeline(true).catch(fail));
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("search").value.trim();
    if (q) search(q).catch(fail);
  });
  $("live-toggle").addEventListener("click", toggleLive);
  Promise.all([loadAgents(), loadSessions(false)])
    .then(() => {
      const m = location.hash.match(/^#session=(.+)$/);
      if (m) return openSession(decodeURIComponent(m[1]));
      return null;
    })
    .then(() => document.body.setAttribute("data-ready", "1"))
    .catch(fail);
});
