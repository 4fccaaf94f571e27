// The shmbus dashboard: polls /api/segments every second (what `shmbus list --json` prints)
// and draws one row per segment with a sparkline of its last minute; a clicked row opens a
// detail view from /api/segments/NAME (what `shmbus info NAME --json` prints).
// Every string from the server is set as text, never parsed as HTML.
"use strict";

const POLL_MS = 1000;
const HISTORY = 60;

// Per segment (file and creator: a segment made again under a name starts over): recent
// samples of what its sparkline draws, and the counter its rate comes from.
const seen = new Map();
let selected = null;
let detailTimer = null;
// The latest one-second window of /api/segments/NAME/hz for the selected bus or records
// segment: its rates and what a read-only subscriber of the server lost.
let hzOf = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function rate(v) {
  if (v === null || v === undefined) return "-";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M/s";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k/s";
  return (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + "/s";
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n >= 10 ? 0 : 1) : n) + " " + units[i];
}

function spark(values, cls) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", cls || "spark");
  svg.setAttribute("viewBox", "0 0 " + (HISTORY - 1) + " 20");
  svg.setAttribute("preserveAspectRatio", "none");
  // From zero to a little above the largest value: a steady rate is a level line, not a
  // line pinned to the top.
  const max = Math.max(1e-9, ...values) * 1.15;
  const pts = values.map((v, i) =>
    (HISTORY - values.length + i) + "," + (19.5 - (v / max) * 19).toFixed(2));
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(line);
  return svg;
}

// What a row shows of an entry of /api/segments, by kind: its shape, its count, its rate
// (a bus's and records segment's as the server sampled it; a queue's and board's from the
// change of a counter between two polls), what the sparkline draws, its participants.
const KINDS = {
  bus: (s) => ({
    shape: `${s.slots} slots × ${s.capacity} B, ${s.producer_mode} producer`,
    count: s.published, counter: null, rate: s.last_publish.per_s,
    sparkOf: "rate", participants: `${s.producers} producer${s.producers === 1 ? "" : "s"}`,
  }),
  records: (s) => ({
    shape: `${bytes(s.ring_bytes)} ring, records ≤ ${s.max_record} B`,
    count: s.records_published, counter: null, rate: s.last_publish.per_s,
    sparkOf: "rate", participants: s.producer_alive ? "producer" : "no producer",
  }),
  queue: (s) => ({
    shape: `${s.capacity} items × ${s.item_size} B`,
    count: s.len, counter: s.tail, rate: undefined, sparkOf: "depth",
    participants: `${s.senders} sender${s.senders === 1 ? "" : "s"}, ` +
      `${s.receivers} receiver${s.receivers === 1 ? "" : "s"}`,
  }),
  board: (s) => ({
    shape: `${s.cells} cells × ${s.value_size} B${s.keys ? ", keyed" : ""}`,
    count: s.updates, counter: s.updates, rate: undefined, sparkOf: "rate",
    participants: s.writers_alive ? "writer" : "no writer",
  }),
};

function view(entry, now) {
  const s = entry[entry.kind];
  const v = KINDS[entry.kind](s);
  const key = entry.file + "/" + s.creator_pid;
  let h = seen.get(key);
  if (!h) { h = { values: [], counter: null, at: null }; seen.set(key, h); }
  if (v.counter !== null) {
    const dt = h.at === null ? 0 : (now - h.at) / 1000;
    v.rate = dt > 0 ? Math.max(0, v.counter - h.counter) / dt : null;
    h.counter = v.counter; h.at = now;
  }
  h.values.push(v.sparkOf === "depth" ? s.len : (v.rate || 0));
  if (h.values.length > HISTORY) h.values.shift();
  v.history = h;
  v.state = s.stale ? "stale" : "live";
  v.stateClass = s.stale ? "stale" : "";
  v.rateText = v.sparkOf === "depth" ? `${rate(v.rate)} in` : rate(v.rate);
  return v;
}

function row(entry, now) {
  const name = entry.name === null ? entry.file : entry.name;
  if (!KINDS[entry.kind]) {
    const why = entry.kind === "error" ? "error: " + entry.error : "not a shmbus segment";
    return el("tr", { class: "segment error", "data-name": name, "data-kind": entry.kind },
      el("td", {}, name), el("td", { class: "kind" }, entry.kind),
      el("td", { class: "error", colspan: 6 }, why));
  }
  const v = view(entry, now);
  return el("tr", {
    class: "segment" + (name === selected ? " selected" : ""),
    "data-name": name, "data-kind": entry.kind, "data-samples": v.history.values.length,
  },
  el("td", {}, name), el("td", { class: "kind" }, entry.kind), el("td", {}, v.shape),
  el("td", { class: "num count" }, v.count), el("td", { class: "num rate" }, v.rateText),
  el("td", {}, spark(v.history.values)), el("td", {}, v.participants),
  el("td", { class: v.stateClass }, v.state));
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("/api/segments", { cache: "no-store" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    const now = Date.now();
    const rows = body.map((e) => row(e, now));
    document.querySelector("#segments tbody").replaceChildren(...rows);
    document.getElementById("empty").hidden = rows.length > 0;
    status.textContent = `${rows.length} segment${rows.length === 1 ? "" : "s"} · ` +
      new Date(now).toLocaleTimeString();
    status.dataset.polls = String(Number(status.dataset.polls || 0) + 1);
  } catch (e) {
    status.textContent = "cannot read /api/segments: " + e.message;
  }
}

function dl(pairs) {
  const d = el("dl");
  for (const [k, v] of pairs) d.append(el("dt", {}, k), el("dd", {}, v));
  return d;
}

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))));
}

function historyOf(name) {
  for (const [key, h] of seen) if (key.startsWith("shmbus." + name + "/")) return h;
  return null;
}

// What a reader that reads every item lost in the last window (the segment keeps no loss
// count: each subscriber counts its own).
function lossLine(name) {
  if (!hzOf || hzOf.name !== name) return "measuring…";
  if (hzOf.error) return "cannot measure: " + hzOf.error;
  const w = hzOf.body;
  return `${w.lost} lost in the last ${w.window_s.toFixed(1)} s (${rate(w.lost_per_s)}, ` +
    `${(100 * w.loss_ratio).toFixed(2)}%) by a read-only subscriber reading every item`;
}

function windowLine(name) {
  if (!hzOf || hzOf.name !== name || hzOf.error) return "-";
  const r = hzOf.body.msgs_per_s;
  return `${rate(r.mean)} (min ${rate(r.min)}, max ${rate(r.max)} over 100 ms ticks), ` +
    `${bytes(hzOf.body.bytes_per_s)}/s`;
}

const DETAILS = {
  bus: (r, h) => [
    dl([["published", r.summary.published], ["cursor", r.summary.cursor],
      ["rate", rate(r.summary.last_publish.per_s)], ["last second", windowLine(r.name)],
      ["lap / loss", lossLine(r.name)],
      ["slots", `${r.summary.slots} × ${r.summary.capacity} B`],
      ["message type", r.summary.message_type]]),
    h ? spark(h.values, "spark") : null,
    el("h3", {}, `producers (${r.producers.length} live)`),
    table(["#", "pid", "liveness", "activity stamp"], r.producers.map((p) => [p.index, p.pid,
      "alive", p.stamp_ns_ago === null ? "-" : (p.stamp_ns_ago / 1e9).toFixed(1) + " s ago"])),
    r.census ? dl([["slots written", r.census.written], ["being written", r.census.being_written],
      ["empty", r.census.empty]]) : null,
  ],
  queue: (r, h) => [
    dl([["depth", r.summary.len], ["head / tail", `${r.summary.head} / ${r.summary.tail}`],
      ["skipped", r.summary.skipped], ["lost", r.summary.lost]]),
    el("h3", {}, "depth over time"), h ? spark(h.values, "spark") : null,
    el("h3", {}, "participants"),
    table(["#", "pid", "role", "liveness"], r.participants.map((p) =>
      [p.index, p.pid, p.role, p.alive ? "alive" : "dead"])),
  ],
  board: (r) => [
    dl([["cells", `${r.summary.cells} × ${r.summary.value_size} B`],
      ["cells written", r.summary.cells_written], ["updates", r.summary.updates]]),
    table(["index", "key", "version", "age", "text", "hex"], r.cells.map((c) => [c.index,
      c.key === null ? "-" : c.key, c.version,
      c.age_ms === null ? "-" : (c.age_ms / 1000).toFixed(1) + " s",
      c.error ? "error: " + c.error : (c.value === null
        ? (c.len === null ? "-" : `(${c.len} bytes, hidden: --show-payloads)`) : c.value),
      c.value_hex === null ? "-" : c.value_hex])),
  ],
  records: (r, h) => [
    dl([["records", r.records_published], ["bytes", r.bytes_published],
      ["rate", rate(r.last_publish.per_s)], ["last second", windowLine(r.name)],
      ["lap / loss", lossLine(r.name)], ["ring", bytes(r.ring_bytes)],
      ["producer", r.producer_alive ? "alive" : "none"]]),
    h ? spark(h.values, "spark") : null,
  ],
};

async function showDetail() {
  if (selected === null) return;
  const body = document.getElementById("detail-body");
  try {
    const r = await fetch("/api/segments/" + encodeURIComponent(selected), { cache: "no-store" });
    const rep = await r.json();
    if (!r.ok) throw new Error(rep.error || r.statusText);
    const parts = rep.error || !DETAILS[rep.kind]
      ? [el("p", { class: "dead" }, "cannot read: " + (rep.error || rep.kind)),
        rep.checks ? table(["check", "status", "detail"],
          rep.checks.map((c) => [c.check, c.status, c.detail])) : null]
      : DETAILS[rep.kind](rep, historyOf(selected));
    body.replaceChildren(...parts.filter((p) => p !== null));
  } catch (e) {
    body.replaceChildren(el("p", { class: "dead" }, e.message));
  }
}

// Measures one-second windows of the selected segment, one after the other, while it stays
// selected.
async function hzLoop(name) {
  while (selected === name) {
    let ok = false;
    try {
      const r = await fetch("/api/segments/" + encodeURIComponent(name) + "/hz",
        { cache: "no-store" });
      const body = await r.json();
      ok = r.ok;
      if (selected === name) hzOf = ok ? { name, body } : { name, error: body.error };
    } catch (e) {
      if (selected === name) hzOf = { name, error: e.message };
    }
    if (!ok) await new Promise((done) => setTimeout(done, POLL_MS));
  }
}

function select(name, kind) {
  selected = name;
  hzOf = null;
  clearInterval(detailTimer);
  document.getElementById("detail").hidden = name === null;
  if (name === null) return;
  if (kind === "bus" || kind === "records") hzLoop(name);
  document.getElementById("detail-name").textContent = name;
  document.getElementById("detail-body").replaceChildren(el("p", { class: "muted" }, "loading…"));
  showDetail();
  detailTimer = setInterval(showDetail, POLL_MS);
}

document.querySelector("#segments tbody").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr.segment");
  if (tr) select(tr.dataset.name, tr.dataset.kind);
});
document.getElementById("detail-close").addEventListener("click", () => select(null));

poll();
setInterval(poll, POLL_MS);
