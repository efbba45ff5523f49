// The dispatch list: status chips with counts, search, sorting, pages, live rows.
"use strict";
(function () {
  const params = new URLSearchParams(location.search);
  let data = JSON.parse(document.getElementById("initial").textContent);
  const picked = new Set();

  function render() {
    const counts = data.counts, all = Object.values(counts).reduce((a, b) => a + b, 0);
    const current = params.get("status") || "";
    const chipLink = (status, label, n) =>
      `<a href="#" data-status="${status}" class="chip-link ${current === status ? "on" : ""}">${label} <b>${n}</b></a>`;
    document.getElementById("chips").innerHTML = chipLink("", "All", all) +
      STATUSES.map(s => chipLink(s, chip(s), counts[s] || 0)).join("");
    const body = document.querySelector("#dispatches tbody");
    body.innerHTML = data.rows.map(r => {
      const total = r.nodes_total || 0, done = r.nodes_done || 0, failed = r.nodes_failed || 0;
      const pct = total ? Math.round(100 * done / total) : 0;
      const bad = total ? Math.max(failed ? 2 : 0, Math.round(100 * failed / total)) : 0;
      const said = `${done} of ${total} nodes completed` + (failed ? `, ${failed} failed` : "");
      const finished = ["COMPLETED", "FAILED", "CANCELLED"].includes(r.status) && r.end_time;
      return `<tr data-id="${esc(r.dispatch_id)}">
        <td><input type="checkbox" class="pick" value="${esc(r.dispatch_id)}" ${finished ? "" : "disabled title=\"still running: cancel it first\""} ${picked.has(r.dispatch_id) ? "checked" : ""}></td>
        <td><a href="/dispatch/${encodeURIComponent(r.dispatch_id)}">${esc(r.name)}</a> ${tagChips(r.tags)}</td>
        <td>${chip(r.status)}</td>
        <td><div class="bar" title="${said}"><span style="width:${pct}%"></span><span class="failed" style="width:${bad}%"></span></div> ${done}/${total}${failed ? ` <span class="fail-count">${failed} failed</span>` : ""}</td>
        <td title="created ${esc(fmtTime(r.created_at))}">${fmtTime(r.start_time || r.created_at)}</td>
        <td>${fmtSeconds(runtime(r))}</td><td class="mono">${esc(r.dispatch_id.slice(0, 8))}</td></tr>`;
    }).join("") || `<tr><td colspan="8" class="muted">No dispatches match.</td></tr>`;
    document.getElementById("delete").disabled = picked.size === 0;
    document.getElementById("delete").textContent = picked.size ? `Delete ${picked.size} selected` : "Delete selected";
    const pages = Math.max(1, Math.ceil(data.total / data.per_page));
    document.getElementById("pageinfo").textContent = `page ${data.page} of ${pages} (${data.total} dispatch${data.total === 1 ? "" : "es"})`;
    document.getElementById("prev").disabled = data.page <= 1;
    document.getElementById("next").disabled = data.page >= pages;
    document.querySelectorAll("th[data-sort]").forEach(th => {
      const on = (params.get("sort") || "created_at") === th.dataset.sort;
      th.classList.toggle("sorted", on);
      th.dataset.order = on && params.get("order") !== "asc" ? "desc" : "asc";
    });
  }

  async function reload(push) {
    const r = await fetch("/api/dispatches?" + params.toString());
    if (r.ok) { data = await r.json(); render(); }
    if (push) history.replaceState(null, "", "?" + params.toString());
  }

  document.getElementById("chips").addEventListener("click", ev => {
    const a = ev.target.closest("a[data-status]");
    if (!a) return;
    ev.preventDefault();
    a.dataset.status ? params.set("status", a.dataset.status) : params.delete("status");
    params.delete("page");
    reload(true);
  });
  document.getElementById("search").addEventListener("submit", ev => ev.preventDefault());
  let typing;
  document.getElementById("q").addEventListener("input", ev => {
    clearTimeout(typing);
    typing = setTimeout(() => { params.set("q", ev.target.value); params.delete("page"); reload(true); }, 200);
  });
  document.querySelectorAll("th[data-sort]").forEach(th => th.addEventListener("click", () => {
    const on = (params.get("sort") || "created_at") === th.dataset.sort;
    params.set("sort", th.dataset.sort);
    params.set("order", on && params.get("order") !== "asc" ? "asc" : "desc");
    reload(true);
  }));
  document.getElementById("prev").onclick = () => { params.set("page", data.page - 1); reload(true); };
  document.getElementById("next").onclick = () => { params.set("page", data.page + 1); reload(true); };
  document.querySelector("#dispatches tbody").addEventListener("change", ev => {
    if (!ev.target.classList.contains("pick")) return;
    ev.target.checked ? picked.add(ev.target.value) : picked.delete(ev.target.value);
    render();
  });
  document.getElementById("all").addEventListener("change", ev => {
    document.querySelectorAll(".pick:not(:disabled)").forEach(b => {
      ev.target.checked ? picked.add(b.value) : picked.delete(b.value);
    });
    render();
  });
  document.getElementById("delete").onclick = async () => {
    if (!confirm(`Delete ${picked.size} dispatch(es), their sublattices and stored outputs? This cannot be undone.`)) return;
    try { await post("/api/delete", {ids: [...picked]}); picked.clear(); } catch (e) { alert(e.message); }
    document.getElementById("all").checked = false;
    reload(false);
  };
  render();
  follow("", () => reload(false));
})();
