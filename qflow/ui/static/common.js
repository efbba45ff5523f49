// Shared helpers for the qflow UI pages: time formatting, escaping, live updates.
"use strict";
const STATUSES = ["NEW_OBJECT", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"];

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

// Stored times are UTC; show them in the viewer's zone, and say which zone.
function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, {year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"});
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function runtime(row) {
  if (!row.start_time) return null;
  const end = row.end_time ? new Date(row.end_time) : new Date();
  return (end - new Date(row.start_time)) / 1000;
}

// Statuses as people say them; the API and the store keep Covalent's values.
const STATUS_WORDS = {NEW_OBJECT: "pending", RUNNING: "running", COMPLETED: "completed",
  FAILED: "failed", CANCELLED: "cancelled"};

function chip(status) {
  const word = STATUS_WORDS[status] || String(status ?? "").toLowerCase();
  return `<span class="chip s-${esc(status)}" title="${esc(status)}">${esc(word)}</span>`;
}

// Calls onChange whenever the store changes; shows whether the stream is connected.
function follow(query, onChange) {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events" + (query ? "?" + query : ""));
  source.addEventListener("change", ev => onChange(JSON.parse(ev.data)));
  source.onopen = () => live.classList.add("on");
  source.onerror = () => live.classList.remove("on");
  return source;
}

async function post(url, body) {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const r = await fetch(url, {method: "POST", headers: {"X-CSRF-Token": csrf,
    "Content-Type": "application/json"}, body: JSON.stringify(body || {})});
  const data = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

// Tags are stored as a JSON list; shown as small labels.
function tagChips(json) {
  let tags = [];
  if (Array.isArray(json)) tags = json;  // a dispatch view's tags are a list already
  else { try { tags = JSON.parse(json || "[]"); } catch (e) { tags = []; } }
  return tags.map(t => `<span class="tag">${esc(t)}</span>`).join("");
}

// About five round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart).
function niceTicks(lo, hi) {
  if (!(hi > lo)) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
  const raw = (hi - lo) / 5, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(f => f * mag).find(s => s >= raw);
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  if (out[out.length - 1] < hi) out.push(+(out[out.length - 1] + step).toPrecision(12));
  return out;
}

// A tick's text with the decimals its spacing needs: -1.14, -1.12, ... not 0.000.
function fmtTick(v, ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  const decimals = Math.max(0, Math.min(10, -Math.floor(Math.log10(step))));
  return v.toFixed(decimals);
}
