// One dispatch: header and actions, the graph (pan and zoom), a timeline, the node panel.
"use strict";
(function () {
  let d = JSON.parse(document.getElementById("initial").textContent);
  const id = d.dispatch_id, api = "/api/dispatches/" + encodeURIComponent(id);
  const W = 150, H = 34;
  let selected = null, view = null;
  const FINAL = ["COMPLETED", "FAILED", "CANCELLED"];
  // Fan-outs wider than FOLD (nodes of one name with the same parents) are drawn as
  // one block that counts their statuses; a click on it unfolds it.
  const FOLD = 50, unfolded = new Set();

  function foldGroups() {
    const groups = new Map();
    for (const n of d.nodes) {
      if (n.kind === "parameter") continue;
      const key = n.name + "|" + n.parents.join(",");
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(n);
    }
    return [...groups.entries()].filter(([key, ms]) => ms.length > FOLD && !unfolded.has(key));
  }

  function foldText(members) {
    const counts = {};
    for (const m of members) counts[m.status] = (counts[m.status] || 0) + 1;
    const parts = STATUSES.filter(st => counts[st]).map(st => `${counts[st]} ${STATUS_WORDS[st]}`);
    return `${members.length} \u00d7 ${members[0].name}: ${parts.join(", ")}`;
  }

  // Failed nodes listed above the graph, each a link that selects it and, when it is
  // drawn, centres the graph on it: a failure among hundreds is one click away.
  function drawFailures() {
    const bad = d.nodes.filter(n => n.status === "FAILED");
    const bar = document.getElementById("failures");
    bar.hidden = !bad.length;
    bar.innerHTML = bad.length ? `<b>${bad.length} failed:</b> ` + bad.slice(0, 20).map(n =>
      `<a href="#" data-fail="${n.node_id}">${esc(n.name)}(${n.node_id})</a>`).join(", ") +
      (bad.length > 20 ? ` and ${bad.length - 20} more` : "") : "";
  }

  function focusNode(nid) {
    const n = d.nodes.find(x => x.node_id === nid);
    if (!n) return;
    const key = n.name + "|" + n.parents.join(",");
    if (foldGroups().some(([k]) => k === key)) { unfolded.add(key); drawGraph(); }
    const p = placement().pos[nid];
    if (p && view) {
      const w = Math.min(view.w, 900), h = Math.min(view.h, 600);
      view = {x: p[0] - w / 2, y: p[1] - h / 2, w, h};
      const svg = document.getElementById("graph-svg");
      if (svg) svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
    }
    showNode(nid);
  }

  function header() {
    document.getElementById("crumbs").innerHTML = d.breadcrumbs.map((c, i) =>
      i === d.breadcrumbs.length - 1 ? `<span>${esc(c.name)}</span>`
        : `<a href="/dispatch/${encodeURIComponent(c.dispatch_id)}">${esc(c.name)}</a>`).join(" / ");
    document.getElementById("title").innerHTML = `${esc(d.name)} ${chip(d.status)} ${tagChips(d.tags)}`;
    document.getElementById("meta").innerHTML =
      `<span class="mono">${esc(id)}</span> &middot; created ${fmtTime(d.created_at)}` +
      (d.start_time ? ` &middot; started ${fmtTime(d.start_time)}` : "") +
      (d.end_time ? ` &middot; ended ${fmtTime(d.end_time)}` : "") +
      ` &middot; runtime ${fmtSeconds(runtime(d))} &middot; ${d.progress.done}/${d.progress.total} nodes completed`;
    const err = document.getElementById("error");
    err.hidden = !d.error; err.textContent = d.error || "";
    const summary = document.getElementById("summary");
    summary.hidden = !d.summary; summary.textContent = d.summary || "";
    document.getElementById("cancel").disabled = FINAL.includes(d.status);
    // A sublattice runs and reruns with its parent: its actions are the parent's.
    for (const b of ["cancel", "redispatch", "redispatch-reuse"])
      document.getElementById(b).hidden = Boolean(d.parent_id);
    document.getElementById("inputs").textContent = d.inputs_text || "";
    // A loop's result as its summary says it; the full value (its chunks' states) folded.
    const result = document.getElementById("result");
    if (d.status === "COMPLETED" && d.summary)
      result.innerHTML = `${esc(d.summary)}<details><summary>full value</summary>${esc(d.result_text || "")}</details>`;
    else result.textContent = d.status === "COMPLETED" ? (d.result_text || "")
      : d.status === "FAILED" ? "no result (failed)"
      : d.status === "CANCELLED" ? "no result (cancelled)" : "(none yet)";
    document.getElementById("source").textContent = d.source || "(source not available)";
    document.getElementById("json").href = api;
    document.getElementById("csv").href = api + "?format=csv";
  }

  // Where each drawn node goes once folded fan-outs are collapsed: a folded block is one
  // row high, and everything below it moves up by the rows it no longer needs.
  const BH = H + 16;
  function placement() {
    const raw = d.layout.nodes, spans = [];
    for (const [key, members] of foldGroups()) {
      const ids = members.map(m => m.node_id).filter(i => raw[i]);
      if (!ids.length) continue;
      const xs = ids.map(i => raw[i][0]), ys = ids.map(i => raw[i][1]);
      spans.push({key, members, ids, x: (Math.min(...xs) + Math.max(...xs)) / 2,
                  top: Math.min(...ys) - H / 2, bottom: Math.max(...ys) + H / 2});
    }
    const lift = y => spans.reduce((t, sp) => t + (y > sp.bottom ? sp.bottom - sp.top - BH : 0), 0);
    const pos = {}, folded = new Map();
    for (const sp of spans) {
      sp.y = sp.top - lift(sp.top) + BH / 2;
      for (const i of sp.ids) folded.set(+i, sp);
    }
    for (const [i, p] of Object.entries(raw)) {
      const sp = folded.get(+i);
      pos[i] = sp ? [sp.x, sp.y] : [p[0], p[1] - lift(p[1])];
    }
    // The drawn extent: folded layers no longer set the width.
    const xs = [];
    for (const [i, p] of Object.entries(pos)) if (!folded.has(+i)) xs.push(p[0] - W / 2, p[0] + W / 2);
    for (const sp of spans) xs.push(sp.x - 1.5 * W, sp.x + 1.5 * W);
    const left = xs.length ? Math.min(...xs) : 0, right = xs.length ? Math.max(...xs) : d.layout.width;
    return {pos, spans, folded, left, width: right - left, height: d.layout.height - lift(Infinity)};
  }

  function drawGraph() {
    const box = document.getElementById("graph");
    const L = d.layout, placed = placement(), pos = placed.pos;
    if (!view) {
      // One SVG unit per pixel unless the graph is larger: small graphs are not blown up.
      const w = Math.max(placed.width + 40, box.clientWidth || 800), h = Math.max(placed.height + 40, box.clientHeight || 500);
      const scale = Math.max(w / (box.clientWidth || w), h / (box.clientHeight || h));
      view = {x: placed.left - 20, y: -20, w: (box.clientWidth || w) * scale, h: (box.clientHeight || h) * scale};
    }
    let edges = "", nodes = "";
    // A node with more than BUNDLE children (or parents) gets one thick edge to the
    // block they form: hundreds of single edges across a folded layer are only noise.
    const BUNDLE = 40, children = {};
    for (const n of d.nodes) for (const p of n.parents) (children[p] = children[p] || []).push(n.node_id);
    const block = ids => {
      const xs = ids.filter(i => pos[i]).map(i => pos[i][0]), ys = ids.filter(i => pos[i]).map(i => pos[i][1]);
      return {x: (Math.min(...xs) + Math.max(...xs)) / 2, top: Math.min(...ys) - H / 2, bottom: Math.max(...ys) + H / 2};
    };
    const curve = (x1, y1, x2, y2, cls) =>
      `<path class="${cls}" d="M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}"/>`;
    for (const [p, kids] of Object.entries(children)) {
      if (kids.length > BUNDLE && pos[p]) {
        const b = block(kids);
        edges += curve(pos[p][0], pos[p][1] + H / 2, b.x, b.top, "bundle");
      }
    }
    const hidden = placed.folded;
    for (const sp of placed.spans) {
      const members = sp.members, fw = 3 * W;
      const worst = members.some(m => m.status === "FAILED") ? "FAILED"
        : members.every(m => m.status === "COMPLETED") ? "COMPLETED"
        : members.some(m => m.status === "RUNNING") ? "RUNNING" : members[0].status;
      const text = foldText(members);
      nodes += `<g class="node fold s-${worst}" data-fold="${esc(sp.key)}" transform="translate(${sp.x - fw / 2},${sp.y - BH / 2})">
        <rect width="${fw}" height="${BH}" rx="8"/><text x="${fw / 2}" y="${BH / 2}">${esc(text)}</text>
        <text x="${fw / 2}" y="${BH / 2 + 13}" class="hint">click to unfold</text><title>${esc(text)}</title></g>`;
    }
    for (const n of d.nodes) {
      if (!pos[n.node_id] || hidden.has(n.node_id)) continue;  // parameters; folded ones
      const [x, y] = pos[n.node_id];
      if (n.parents.length > BUNDLE) {
        const b = block(n.parents);
        edges += curve(b.x, b.bottom, x, y - H / 2, "bundle");
      } else {
        for (const p of n.parents) {
          if (!pos[p] || hidden.has(p) || (children[p] || []).length > BUNDLE) continue;
          edges += curve(pos[p][0], pos[p][1] + H / 2, x, y - H / 2, "");
        }
      }
      const label = n.name.length > 18 ? n.name.slice(0, 17) + "\u2026" : n.name;
      nodes += `<g class="node s-${n.status} k-${n.kind}${queued(n) ? " queued" : ""}${selected === n.node_id ? " sel" : ""}" data-node="${n.node_id}" transform="translate(${x - W / 2},${y - H / 2})">
        <rect width="${W}" height="${H}" rx="6"/><text x="${W / 2}" y="${H / 2 + 4}">${esc(label)} \u00b7 ${n.node_id}</text>
        <title>${esc(n.name)} (${n.node_id}) ${statusText(n)}</title></g>`;
    }
    box.innerHTML = `<svg id="graph-svg" viewBox="${view.x} ${view.y} ${view.w} ${view.h}"><g class="edges">${edges}</g>${nodes}</svg>`;
  }

  // RUNNING is written when a node is handed to Ray; its start, when it has run for a
  // second (or when it ends). Until then it may still be queued.
  function queued(n) { return n.status === "RUNNING" && !n.start_time; }
  function statusText(n) {
    return queued(n) ? "RUNNING (handed to Ray: queued, or started under a second ago)" : n.status;
  }

  // The timeline's window in ms from the first start: null shows everything. The wheel
  // zooms around the pointer; the buttons zoom, fit, or zoom to the failed nodes.
  let span = null;
  function timelineRows() {
    // Failed nodes first (pinned), then by start: a failure among hundreds is in view.
    return d.nodes.filter(n => n.start_time && n.kind !== "parameter").sort((a, b) =>
      (b.status === "FAILED") - (a.status === "FAILED") || new Date(a.start_time) - new Date(b.start_time));
  }
  function timelineTimes(rows) {
    const t0 = Math.min(...rows.map(n => +new Date(n.start_time)));
    const t1 = Math.max(...rows.map(n => n.end_time ? +new Date(n.end_time) : Date.now()));
    return {t0, total: Math.max(t1 - t0, 1)};
  }
  const TL = {width: 900, left: 220, right: 14};

  function drawTimeline() {
    const rows = timelineRows();
    const box = document.getElementById("timeline");
    if (!rows.length) { box.innerHTML = `<p class="muted">No node has started yet.</p>`; return; }
    const {t0, total} = timelineTimes(rows);
    const from = span ? span[0] : 0, to = span ? span[1] : total;
    const {width, left, right} = TL, rowH = 18, top = 24;
    const ticks = niceTicks(from / 1000, to / 1000).filter(t => t * 1000 >= from - 1e-6);
    const lo = span ? from : 0, hi = span ? to : ticks[ticks.length - 1] * 1000;
    const X = ms => left + (ms - lo) / (hi - lo) * (width - left - right);
    const shown = ticks.filter(t => t * 1000 <= hi + 1e-6);
    // The last label ends at the axis's end, so it is never cut off.
    const axis = shown.map((t, i) => `<line x1="${X(t * 1000)}" x2="${X(t * 1000)}" y1="${top - 4}" y2="${top + rows.length * rowH}" class="tgrid"/>` +
      `<text x="${X(t * 1000)}" y="${top - 8}" class="ttick" text-anchor="${i === shown.length - 1 ? "end" : "middle"}">${fmtSeconds(t)}</text>`).join("");
    const bars = rows.map((n, i) => {
      const s = +new Date(n.start_time) - t0, e = (n.end_time ? +new Date(n.end_time) : Date.now()) - t0;
      const y = top + i * rowH, label = `<text x="4" y="${y + 13}">${n.status === "FAILED" ? "\u2716 " : ""}${esc(n.name)} (${n.node_id})</text>`;
      if (e < lo || s > hi) return `<g class="s-${n.status}" data-node="${n.node_id}">${label}</g>`;
      const x = X(Math.max(s, lo)), w = Math.max(X(Math.min(e, hi)) - x, 3);
      const where = (n.host ? ` on ${n.host}` : n.ray_node_id ? ` on Ray node ${n.ray_node_id.slice(0, 8)}` : "") +
        (n.slurm_job_id ? ` in Slurm job ${n.slurm_job_id}` : "");
      return `<g class="s-${n.status}" data-node="${n.node_id}">${label}
        <rect x="${x}" y="${y + 3}" width="${w}" height="${rowH - 6}"><title>${esc(n.name)} (${n.node_id}) ${STATUS_WORDS[n.status] || n.status}: ${fmtSeconds((e - s) / 1000)}${esc(where)}</title></rect></g>`;
    }).join("");
    const failed = rows.filter(n => n.status === "FAILED").length;
    box.innerHTML = `<p class="muted tl-bar"><span>from ${fmtTime(new Date(t0).toISOString())}, ${fmtSeconds(total / 1000)} in all` +
      (span ? `; showing ${fmtSeconds(from / 1000)} to ${fmtSeconds(to / 1000)}` : "") +
      (failed ? `; <span class="fail-count">${failed} failed, listed first</span>` : "") + `</span>
      <button data-zoom="in" title="Zoom in (or turn the wheel over the chart)">+</button><button data-zoom="out" title="Zoom out">\u2212</button><button data-zoom="fit">Fit</button>` +
      (failed ? `<button data-zoom="failed">Zoom to failures</button>` : "") + `</p>
      <svg class="gantt" width="${width}" height="${top + rows.length * rowH + 6}"><g class="taxis">${axis}</g>${bars}</svg>`;
  }

  function zoomTimeline(how, atFraction) {
    const rows = timelineRows();
    if (!rows.length) return;
    const {t0, total} = timelineTimes(rows);
    const [from, to] = span || [0, total];
    if (how === "fit") span = null;
    else if (how === "failed") {
      const bad = rows.filter(n => n.status === "FAILED");
      const s = Math.min(...bad.map(n => +new Date(n.start_time) - t0));
      const e = Math.max(...bad.map(n => (n.end_time ? +new Date(n.end_time) : Date.now()) - t0));
      const pad = Math.max((e - s) * 0.1, 5);
      span = [Math.max(0, s - pad), Math.min(total, e + pad)];
    } else {
      const k = how === "in" ? 0.5 : 2, f = atFraction ?? 0.5, at = from + (to - from) * f;
      const w = Math.min(total, Math.max((to - from) * k, 5));
      const start = Math.min(Math.max(0, at - w * f), total - w);
      span = w >= total ? null : [start, start + w];
    }
    drawTimeline();
  }

  async function showNode(nid) {
    selected = nid;
    const r = await fetch(`${api}/nodes/${nid}`);
    if (!r.ok) return;
    const n = await r.json();
    if (nid !== selected) return;  // another node was clicked while this one loaded
    const sub = n.sublattice_id ? `<p><a class="sub" href="/dispatch/${encodeURIComponent(n.sublattice_id)}">Open the sublattice's graph \u2192</a></p>` : "";
    document.getElementById("node").innerHTML = `<h2>${esc(n.name)} <span class="muted">(${n.node_id})</span></h2>
      <p>${chip(n.status)} <span class="muted">${esc(n.kind)}${n.sublattice_depth ? `, nested ${n.sublattice_depth} deep` : ""}</span>${queued(n) ? ` <span class="muted">handed to Ray; not started yet, or started under a second ago</span>` : ""}</p>${sub}
      <dl><dt>Executor</dt><dd>${esc(n.executor || "—")}${n.slurm_job_id ? ` (Slurm job ${esc(n.slurm_job_id)})` : ""}</dd><dt>Started</dt><dd>${fmtTime(n.start_time) || "\u2014"}</dd><dt>Ended</dt><dd>${fmtTime(n.end_time) || "\u2014"}</dd>
      <dt>Runtime</dt><dd>${fmtSeconds(n.runtime_s) || "\u2014"}</dd><dt>Ran on</dt><dd id="ran-on" title="${n.ray_node_id ? "Ray node " + esc(n.ray_node_id) : ""}">${esc(n.host || (n.ray_node_id ? "Ray node " + n.ray_node_id.slice(0, 12) : "\u2014"))}</dd></dl>
      <h3>Inputs</h3><pre class="out">${esc(n.inputs_text ?? "")}</pre>
      <h3>Output</h3><pre class="out">${esc(n.output_text ?? "")}</pre>
      ${n.error ? `<h3>Error</h3><pre class="error">${esc(n.error)}</pre>` : ""}
      <h3>stdout</h3><pre class="log" id="stdout">${esc(n.stdout)}</pre>
      <h3>stderr</h3><pre class="log">${esc(n.stderr)}</pre>
      ${n.source ? `<details><summary>Function source</summary><pre>${esc(n.source)}</pre></details>` : ""}`;
    const log = document.getElementById("stdout");
    log.scrollTop = log.scrollHeight;  // a live tail: newest lines in view
    document.querySelectorAll("#graph .node").forEach(g => g.classList.toggle("sel", +g.dataset.node === nid));
  }

  // Metrics: a chart per name, or per chart= shared by several (a scan's VQE and exact
  // energies against R). A metric logged once by each of several sublattices is one
  // curve; otherwise a line per dispatch (legend: the dispatch's name, e.g. "R = 0.74 Å"),
  // with the best (lowest) value so far dashed. A reference metric (an exact energy) is
  // a dashed line across; a value with an error gets an error bar. A chart against
  // anything but the step also lists its points in a table.
  async function drawMetrics() {
    const r = await fetch(api + "/metrics");
    if (!r.ok) return;
    const m = await r.json(), meta = m.meta || {}, names = Object.keys(m.metrics);
    document.getElementById("metrics").hidden = !names.length;
    const charts = new Map();
    for (const name of names) {
      const c = (meta[name] || {}).chart || name;
      if (!charts.has(c)) charts.set(c, []);
      charts.get(c).push(name);
    }
    document.getElementById("charts").innerHTML = [...charts.entries()].map(([title, members]) => chart(title, members, m, meta)).join("");
  }

  const COLORS = ["#2f6fed", "#1f9d55", "#d64545", "#d98a1c", "#7c3aed", "#0e7490"];

  function chart(title, members, m, meta) {
    const info = Object.assign({}, ...members.map(n => meta[n] || {}));
    const unit = info.unit || "", xTitle = info.x || "step";
    const refs = members.filter(n => (meta[n] || {}).reference), curves = members.filter(n => !refs.includes(n));
    let series = [];
    for (const name of curves) {
      const groups = {};
      for (const p of m.metrics[name]) (groups[p.dispatch_id] = groups[p.dispatch_id] || []).push(p);
      let mine = Object.entries(groups).map(([did, pts]) => ({dispatch: m.dispatch_names[did] || did, pts}));
      // One value per dispatch against a coordinate (a scan's energy per point): one curve.
      const across = (meta[name] || {}).x || !(meta[name] || {}).chart;
      if (across && mine.length > 1 && mine.every(s => s.pts.length === 1)) mine = [{dispatch: "", pts: m.metrics[name].slice()}];
      for (const s of mine) series.push({name, dispatch: s.dispatch, pts: s.pts});
    }
    // Several loops on one chart (a scan's points, a QAOA's starts): a colour per loop,
    // its costs a line, its final value a dot; otherwise a colour per metric.
    const dispatches = [...new Set(series.map(s => s.dispatch))], several = dispatches.length > 1;
    const keys = several ? dispatches : curves;
    for (const s of series) {
      s.pts.sort((a, b) => a.step - b.step);
      s.color = COLORS[keys.indexOf(several ? s.dispatch : s.name) % COLORS.length];
      s.label = several ? s.dispatch : s.name;
    }
    const lines = refs.flatMap(n => {
      const groups = {};
      for (const p of m.metrics[n]) groups[m.dispatch_names[p.dispatch_id] || p.dispatch_id] = p.value;
      return Object.entries(groups).map(([dispatch, value]) => ({name: n, dispatch, value,
        color: several && dispatches.includes(dispatch) ? COLORS[dispatches.indexOf(dispatch) % COLORS.length] : "#111"}));
    });
    const all = series.flatMap(s => s.pts), W = 620, H = 300;
    const xs = all.map(p => p.step), ys = all.flatMap(p => p.error ? [p.value - p.error, p.value + p.error] : [p.value]).concat(lines.map(l => l.value));
    if (!xs.length) xs.push(0, 1);
    const xt = niceTicks(Math.min(...xs), Math.max(...xs)), yt = niceTicks(Math.min(...ys), Math.max(...ys));
    const x0 = xt[0], x1 = xt[xt.length - 1], y0 = yt[0], y1 = yt[yt.length - 1];
    const yLabels = yt.map(v => fmtTick(v, yt)), xLabels = xt.map(v => fmtTick(v, xt));
    // Room for the longest y label (a minus sign included) and the axis title: never clipped.
    const left = 30 + 7 * Math.max(...yLabels.map(t => t.length)), right = 16, top = 12, bottom = 48;
    const X = v => left + (v - x0) / ((x1 - x0) || 1) * (W - left - right);
    const Y = v => H - bottom - (v - y0) / ((y1 - y0) || 1) * (H - top - bottom);
    const grid = yt.map((v, i) => `<line x1="${left}" x2="${W - right}" y1="${Y(v)}" y2="${Y(v)}" class="grid"/><text x="${left - 6}" y="${Y(v) + 3}" class="tick" text-anchor="end">${yLabels[i]}</text>`).join("") +
      xt.map((v, i) => `<line x1="${X(v)}" x2="${X(v)}" y1="${H - bottom}" y2="${H - bottom + 4}" class="axis"/><text x="${X(v)}" y="${H - bottom + 16}" class="tick" text-anchor="middle">${xLabels[i]}</text>`).join("");
    const u = unit ? " " + unit : "";
    const drawn = series.map(s => {
      const c = s.color;
      const path = s.pts.map((p, j) => `${j ? "L" : "M"}${X(p.step).toFixed(1)},${Y(p.value).toFixed(1)}`).join("");
      let best = "", low = Infinity;
      if (s.pts.length >= 3 && xTitle === "step") best = `<path class="best" stroke="${c}" d="${s.pts.map((p, j) => { low = Math.min(low, p.value); return `${j ? "L" : "M"}${X(p.step).toFixed(1)},${Y(low).toFixed(1)}`; }).join("")}"/>`;
      const bars = s.pts.filter(p => p.error).map(p => `<path class="errbar" stroke="${c}" d="M${X(p.step) - 4},${Y(p.value - p.error)}H${X(p.step) + 4}M${X(p.step)},${Y(p.value - p.error)}V${Y(p.value + p.error)}M${X(p.step) - 4},${Y(p.value + p.error)}H${X(p.step) + 4}"/>`).join("");
      const dots = s.pts.length <= 60 ? s.pts.map(p => `<circle cx="${X(p.step)}" cy="${Y(p.value)}" r="2.5" fill="${c}"><title>${esc(s.label || s.name)}, ${esc(xTitle)} ${p.step}: ${p.value}${p.error ? " \u00b1 " + p.error : ""}${esc(u)}</title></circle>`).join("") : "";
      return `${s.pts.length > 1 ? `<path class="line" stroke="${c}" d="${path}"/>` : ""}${best}${bars}${dots}`;
    }).join("") + lines.map(l => `<line class="reference" style="stroke:${l.color}" x1="${left}" x2="${W - right}" y1="${Y(l.value)}" y2="${Y(l.value)}"><title>${esc(l.name)}${several ? ", " + esc(l.dispatch) : ""}: ${l.value}${esc(u)}</title></line>`).join("");
    const entries = new Map(series.map(s => [s.label, s.color]));
    const legend = [...entries].slice(0, 8).map(([label, c]) => `<span style="color:${c}">\u25cf ${esc(label)}</span>`).join(" ") +
      (entries.size > 8 ? ` +${entries.size - 8} more` : "") +
      (several ? (lines.length ? ` <span class="ref-key">\u2504 ${esc(lines[0].name)} (each loop's, in its colour)</span>` : "")
        : lines.map(l => ` <span class="ref-key">\u2504 ${esc(l.name)} ${l.value.toPrecision(8)}${esc(u)}</span>`).join(""));
    const values = all.map(p => p.value), count = values.length;
    const yTitle = (info.y || title) + (unit ? ` (${unit})` : "");
    return `<figure class="chart" data-metric="${esc(title)}"><figcaption><b>${esc(title)}</b> <span class="muted">${count} values${count ? `, lowest ${Math.min(...values).toPrecision(8)}${esc(u)}` : ""}</span></figcaption>
      <svg width="${W}" height="${H}" role="img" aria-label="${esc(yTitle)} against ${esc(xTitle)}">${grid}
      <line x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}" class="axis"/><line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" class="axis"/>
      <text x="${(left + W - right) / 2}" y="${H - 10}" class="axis-title" text-anchor="middle">${esc(xTitle)}</text>
      <text transform="translate(14 ${(top + H - bottom) / 2}) rotate(-90)" class="axis-title" text-anchor="middle">${esc(yTitle)}</text>
      ${drawn}</svg><div class="legend">${legend}</div>${xTitle !== "step" ? pointTable(curves, m, xTitle, unit) : ""}</figure>`;
  }

  // A chart against a coordinate as a table: one row per x, a column per metric, and
  // the error against an "exact ..." metric (in mHa for energies in Ha).
  function pointTable(curves, m, xTitle, unit) {
    const rows = new Map();
    for (const name of curves) for (const p of m.metrics[name]) {
      if (!rows.has(p.step)) rows.set(p.step, {});
      rows.get(p.step)[name] = p.value;
    }
    if (rows.size > 60) return "";
    const exact = curves.find(n => /^exact\b/i.test(n)), other = curves.find(n => n !== exact);
    const diff = exact && other ? (unit === "Ha" ? "error (mHa)" : "error") : null;
    const head = [xTitle, ...curves.map(n => n + (unit ? ` (${unit})` : "")), ...(diff ? [diff] : [])];
    const body = [...rows.entries()].sort((a, b) => a[0] - b[0]).map(([x, v]) => {
      const cells = [x, ...curves.map(n => v[n] === undefined ? "\u2014" : v[n].toFixed(6))];
      if (diff) cells.push(v[exact] === undefined || v[other] === undefined ? "\u2014"
        : ((v[other] - v[exact]) * (unit === "Ha" ? 1000 : 1)).toFixed(3));
      return `<tr>${cells.map(c => `<td>${c}</td>`).join("")}</tr>`;
    }).join("");
    return `<table class="points"><thead><tr>${head.map(h => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${body}</tbody></table>`;
  }

  // On each change: statuses and times only, patched into the drawn page. The whole
  // view (texts, result, error) is fetched again once the dispatch has ended.
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch(api + "/state");
      if (!r.ok) return;
      const st = await r.json();
      if (FINAL.includes(st.status) && !FINAL.includes(d.status)) { await reload(); return; }
      const byId = new Map(d.nodes.map(n => [n.node_id, n]));
      let selectedChanged = false, changed = false;
      for (const row of st.nodes) {
        const n = byId.get(row[0]);
        if (!n) continue;
        const [, status, start, end, ray, slurm, sub, host] = row;
        if (n.node_id === selected && status === "RUNNING") selectedChanged = true;  // live tail
        if (n.status !== status || n.start_time !== start || n.end_time !== end ||
            n.sublattice_id !== sub) {
          changed = true;
          if (n.node_id === selected) selectedChanged = true;
          const g = document.querySelector(`#graph .node[data-node="${n.node_id}"]`);
          Object.assign(n, {status, start_time: start, end_time: end, ray_node_id: ray,
                            slurm_job_id: slurm, sublattice_id: sub, host});
          if (g) {
            g.setAttribute("class", g.getAttribute("class").replace(/\bs-\w+/, "s-" + status));
            g.classList.toggle("queued", queued(n));
            g.querySelector("title").textContent = `${n.name} (${n.node_id}) ${statusText(n)}`;
          }
        }
      }
      Object.assign(d, {status: st.status, start_time: st.start_time, end_time: st.end_time,
                        error: st.error, progress: st.progress});
      header();
      if (changed) { drawFailures(); if (foldGroups().length) drawGraph(); }
      if (changed && !document.getElementById("timeline").hidden) drawTimeline();
      if (selectedChanged) showNode(selected);
      if (changed) drawMetrics();
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  async function reload() {
    const r = await fetch(api);
    if (!r.ok) return;
    d = await r.json();
    header(); drawFailures(); drawGraph(); drawTimeline(); drawMetrics();
    if (selected !== null) showNode(selected);
  }

  // Pan and zoom by editing the viewBox: the SVG stays crisp at any scale.
  const graph = document.getElementById("graph");
  graph.addEventListener("wheel", ev => {
    ev.preventDefault();
    const svg = document.getElementById("graph-svg"), rect = svg.getBoundingClientRect();
    const k = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
    const fx = (ev.clientX - rect.left) / rect.width, fy = (ev.clientY - rect.top) / rect.height;
    const nw = view.w * k, nh = view.h * k;
    view = {x: view.x + (view.w - nw) * fx, y: view.y + (view.h - nh) * fy, w: nw, h: nh};
    svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  }, {passive: false});
  let drag = null;
  graph.addEventListener("mousedown", ev => { drag = {x: ev.clientX, y: ev.clientY, moved: false}; });
  window.addEventListener("mouseup", () => { setTimeout(() => { drag = null; }, 0); });
  graph.addEventListener("mousemove", ev => {
    if (!drag || !(ev.buttons & 1)) return;
    const svg = document.getElementById("graph-svg"), rect = svg.getBoundingClientRect();
    const dx = (ev.clientX - drag.x) * view.w / rect.width, dy = (ev.clientY - drag.y) * view.h / rect.height;
    if (Math.abs(dx) + Math.abs(dy) > 0) drag.moved = true;
    view.x -= dx; view.y -= dy; drag.x = ev.clientX; drag.y = ev.clientY;
    svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  });
  graph.addEventListener("click", ev => {
    if (drag && drag.moved) return;
    const fold = ev.target.closest("[data-fold]");
    if (fold) { unfolded.add(fold.dataset.fold); drawGraph(); return; }
    const g = ev.target.closest("[data-node]");
    if (g) showNode(+g.dataset.node);
  });
  document.getElementById("failures").addEventListener("click", ev => {
    const a = ev.target.closest("[data-fail]");
    if (!a) return;
    ev.preventDefault();
    focusNode(+a.dataset.fail);
  });
  const timeline = document.getElementById("timeline");
  timeline.addEventListener("click", ev => {
    const b = ev.target.closest("[data-zoom]");
    if (b) { zoomTimeline(b.dataset.zoom); return; }
    const g = ev.target.closest("[data-node]");
    if (g) showNode(+g.dataset.node);
  });
  timeline.addEventListener("wheel", ev => {
    const svg = timeline.querySelector("svg.gantt");
    if (!svg || !svg.contains(ev.target)) return;
    ev.preventDefault();
    const rect = svg.getBoundingClientRect();
    const f = Math.min(Math.max((ev.clientX - rect.left - TL.left) / (TL.width - TL.left - TL.right), 0), 1);
    zoomTimeline(ev.deltaY > 0 ? "out" : "in", f);
  }, {passive: false});
  document.querySelectorAll(".tabs button").forEach(b => b.addEventListener("click", () => {
    document.querySelectorAll(".tabs button").forEach(x => x.classList.toggle("on", x === b));
    document.getElementById("graph").hidden = b.dataset.tab !== "graph";
    document.getElementById("timeline").hidden = b.dataset.tab !== "timeline";
    if (b.dataset.tab === "timeline") drawTimeline();
  }));

  async function act(what, body, question) {
    if (!confirm(question)) return;
    try {
      const out = await post(`${api}/${what}`, body);
      if (out.dispatch_id) location.href = "/dispatch/" + encodeURIComponent(out.dispatch_id);
      else reload();
    } catch (e) { alert(e.message); }
  }
  document.getElementById("cancel").onclick = () => act("cancel", {}, `Cancel dispatch ${d.name} (${id})?`);
  document.getElementById("redispatch").onclick = () => act("redispatch", {reuse: false}, `Run ${d.name} again with the same inputs?`);
  document.getElementById("redispatch-reuse").onclick = () => act("redispatch", {reuse: true}, `Run ${d.name} again, reusing unchanged results?`);

  header(); drawFailures(); drawGraph(); drawTimeline(); drawMetrics();
  follow("dispatch=" + encodeURIComponent(id), refresh);
})();
