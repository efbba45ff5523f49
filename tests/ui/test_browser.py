"""The UI in a real headless Chromium (Debian's, driven by Playwright): the list, a
dispatch followed live, a node's stdout, a sublattice and back, and a cancel.

Screenshots go to tests/artifacts/ (ignored by git).
"""

import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import qflow
from qflow._api import _runtime
from tests.ui.workflows import one_point

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
TAG = "br" + uuid.uuid4().hex[:6]


@qflow.electron
def step(x, seconds):
    print(f"step {x}: working for {seconds} s")
    time.sleep(seconds)
    return x + 1


@qflow.electron
def double(x):
    print(f"doubling {x}")
    return 2 * x


@qflow.lattice
def child(x):
    return double(double(x))


def _named(name, fn):
    fn.__name__ = fn.__qualname__ = name
    return qflow.lattice(fn)


def _chain(x):
    for _ in range(3):
        x = step(x, 3)
    return x


chain3 = _named(f"{TAG}_chain", _chain)
nested = _named(f"{TAG}_nested", lambda x: double(qflow.electron(child)(x)))
long_nap = _named(f"{TAG}_long", lambda: step(0, 120))


@qflow.electron
def fragile(x):
    if x == 3:
        raise ValueError("point 3 diverged")
    return x


half_broken = _named(f"{TAG}_broken", lambda n: [fragile(i) for i in range(n)])


@pytest.fixture(scope="module")
def chromium_path():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ensure_chromium.py")],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    if out.returncode == 3:
        pytest.skip(out.stderr.strip())
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


#: The token of the server on each port.
_TOKEN: dict[int, str] = {}


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from qflow.ui.app import create_app
    from qflow.ui.security import Guard

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(_runtime().store, Guard.for_bind("127.0.0.1", port))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "the UI server did not start"
        time.sleep(0.05)
    _TOKEN[port] = app.guard.token
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # --no-sandbox: Chromium refuses its sandbox when run as root, as CI machines do.
        b = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    # Log in once: the cookie the token is swapped for stays with the context.
    pg.goto(f"{server}/?token={_TOKEN[int(server.rsplit(':', 1)[1])]}")
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_list_page_shows_dispatches_and_counts(page, server):
    done = qflow.dispatch(nested)(1)
    qflow.get_result(done, wait=True)
    page.goto(f"{server}/?q={TAG}")
    page.wait_for_selector(f"tr[data-id='{done}']")
    row = page.locator(f"tr[data-id='{done}']")
    assert "completed" in row.inner_text()  # as people say it; the API keeps COMPLETED
    assert "3/3" in row.inner_text()  # the sublattice node, the last double, the return
    chips = page.locator("#chips").inner_text()
    assert "completed" in chips and "cancelled" in chips and "pending" in chips
    headers = page.locator("#dispatches thead").inner_text()
    assert "Time" in headers and "Duration" in headers and "Started" not in headers
    page.screenshot(path=str(ARTIFACTS / "list.png"), full_page=True)


def test_a_failed_dispatch_shows_red_in_the_list_and_says_no_result(page, server):
    failed = qflow.dispatch(half_broken)(4)
    qflow.get_result(failed, wait=True)
    page.goto(f"{server}/?q={TAG}")
    row = page.locator(f"tr[data-id='{failed}']")
    row.wait_for()
    assert "failed" in row.inner_text() and "1 failed" in row.inner_text()
    red = row.locator(".bar span.failed")
    assert red.evaluate("e => e.getBoundingClientRect().width") > 0
    colour = red.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(214, 69, 69)"  # --fail
    # Newest first by default: the arrow on Time points down, and flips when clicked.
    time_header = page.locator("th[data-sort='created_at']")
    arrow = "e => getComputedStyle(e, '::after').content"
    assert "\u25be" in time_header.evaluate(arrow)
    time_header.click()
    page.wait_for_function(
        "getComputedStyle(document.querySelector(\"th[data-sort='created_at']\"), "
        "'::after').content.includes('\u25b4')"
    )
    page.screenshot(path=str(ARTIFACTS / "list-failed.png"), full_page=True)
    page.goto(f"{server}/dispatch/{failed}")
    page.wait_for_function("document.getElementById('result').textContent.length > 0")
    assert page.locator("#result").inner_text() == "no result (failed)"
    # The timeline pins the failed node first, marked.
    page.locator(".tabs button[data-tab='timeline']").click()
    first = page.locator("#timeline svg.gantt g[data-node]").first
    assert first.get_attribute("class") == "s-FAILED"
    assert "fragile" in first.locator("text").text_content()
    assert "1 failed, listed first" in page.locator("#timeline p").inner_text()
    inside = page.locator("#timeline svg").evaluate(
        "s => { const b = s.getBoundingClientRect(); return [...s.querySelectorAll('text')]"
        ".every(t => t.getBoundingClientRect().right <= b.right + 0.5); }"
    )
    assert inside  # no tick label is cut off
    page.screenshot(path=str(ARTIFACTS / "timeline-failed.png"))


def test_a_dispatch_followed_live_and_a_nodes_stdout(page, server):
    dispatch_id = qflow.dispatch(chain3)(0)
    page.goto(f"{server}/dispatch/{dispatch_id}")
    page.wait_for_selector("#graph .node")
    assert page.locator("#graph .node.s-COMPLETED").count() < 3
    # A node that has run for a second is told apart from the ones still queued, and
    # its panel tails what it printed so far.
    page.wait_for_selector("#graph .node.s-RUNNING:not(.queued)", timeout=20_000)
    running = page.locator("#graph .node.s-RUNNING:not(.queued)").first
    running.click()
    page.wait_for_function(
        "(document.getElementById('stdout') || {}).textContent?.includes('working for 3 s')",
        timeout=10_000,
    )
    page.screenshot(path=str(ARTIFACTS / "dispatch-running.png"))
    # No reload: the event stream turns the nodes green as they finish.
    page.wait_for_function(
        # three steps and the return value (literal arguments are not drawn)
        "document.querySelectorAll('#graph .node.s-COMPLETED').length === 4",
        timeout=60_000,
    )
    page.wait_for_selector("#title .chip.s-COMPLETED", timeout=30_000)
    page.locator("#graph .node[data-node='3']").click()  # the second step
    # The panel of node 0 (opened above) has a #stdout too: wait for node 3's panel.
    page.wait_for_function(
        "(document.querySelector('#node h2') || {}).textContent?.includes('(3)')"
    )
    assert "step 1: working for 3 s" in page.locator("#stdout").inner_text()
    # Where it ran: the host's name and address, the Ray node id in the tooltip.
    import socket

    ran_on = page.locator("#ran-on")
    assert ran_on.inner_text().startswith(socket.gethostname())
    assert ran_on.get_attribute("title").startswith("Ray node ")
    assert (
        "UTC" in page.locator(".node-panel dl").inner_text()
        or "GMT" in page.locator(".node-panel dl").inner_text()
    )
    page.locator(".tabs button[data-tab='timeline']").click()
    assert page.locator("#timeline svg.gantt g[data-node]").count() == 4
    ticks = page.locator("#timeline .ttick").all_text_contents()
    assert len(ticks) >= 3 and ticks[0] == "0 ms" and ticks[-1].endswith(" s")  # a time axis
    page.screenshot(path=str(ARTIFACTS / "dispatch-done.png"))
    # Zoom: in (the wheel or +) shows part of the run, Fit all of it again.
    page.locator("#timeline [data-zoom='in']").click()
    assert re.search(
        r"; showing [0-9.]+ m?s to [0-9.]+ m?s", page.locator("#timeline p").inner_text()
    )
    page.locator("#timeline svg.gantt").hover()
    page.mouse.wheel(0, -100)
    page.screenshot(path=str(ARTIFACTS / "timeline-zoomed.png"))
    page.locator("#timeline [data-zoom='fit']").click()
    assert "showing" not in page.locator("#timeline p").inner_text()


def test_into_a_sublattice_and_back(page, server):
    dispatch_id = qflow.dispatch(nested)(5)
    assert qflow.get_result(dispatch_id, wait=True).result == 40
    page.goto(f"{server}/dispatch/{dispatch_id}")
    page.locator("#graph .node.k-sublattice").first.click()
    page.locator("a.sub").click()
    page.wait_for_selector("#crumbs a")
    assert page.locator("#title").inner_text().startswith("child")
    page.wait_for_selector("#graph .node.s-COMPLETED")
    page.screenshot(path=str(ARTIFACTS / "sublattice.png"))
    page.locator("#crumbs a").first.click()
    page.wait_for_selector("#title")
    assert page.locator("#title").inner_text().startswith(f"{TAG}_nested")


def test_cancel_from_the_page(page, server):
    dispatch_id = qflow.dispatch(long_nap)()
    page.goto(f"{server}/dispatch/{dispatch_id}")
    page.wait_for_selector("#graph .node")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel").click()
    page.wait_for_selector("#title .chip.s-CANCELLED", timeout=60_000)
    assert qflow.get_result(dispatch_id, wait=True, timeout=60).status == "CANCELLED"
    page.screenshot(path=str(ARTIFACTS / "cancelled.png"))


def test_a_500_node_graph_is_laid_out_in_layers(page, server):
    from qflow.store.base import now_iso

    store = _runtime().store
    did = f"{TAG}-500"
    nodes = [
        {
            "node_id": 0,
            "name": "prepare",
            "kind": "electron",
            "status": "COMPLETED",
            "parents": "[]",
        }
    ]
    nodes += [
        {
            "node_id": k,
            "name": "evaluate",
            "kind": "electron",
            "status": ["COMPLETED", "RUNNING", "FAILED"][k % 3],
            "parents": "[0]",
        }
        for k in range(1, 499)
    ]
    nodes.append(
        {
            "node_id": 499,
            "name": "reduce",
            "kind": "electron",
            "status": "NEW_OBJECT",
            "parents": repr(list(range(1, 499))),
        }
    )
    store.create_dispatch(
        {"dispatch_id": did, "name": f"{TAG}_wide", "status": "RUNNING", "created_at": now_iso()},
        nodes,
    )
    t0 = time.perf_counter()
    page.goto(f"{server}/dispatch/{did}")
    # The 498-wide fan-out is one block that counts its statuses, in people's words.
    fold = page.locator("#graph .node.fold")
    fold.wait_for()
    assert time.perf_counter() - t0 < 10
    assert fold.locator("text").first.text_content() == (
        "498 \u00d7 evaluate: 166 running, 166 completed, 166 failed"
    )
    assert page.locator("#graph .node").count() == 3  # prepare, the block, reduce
    # The failures are listed above the graph; one click selects one and unfolds.
    failures = page.locator("#failures")
    assert failures.inner_text().startswith("166 failed:")
    page.screenshot(path=str(ARTIFACTS / "graph-500-folded.png"))
    failures.locator("a").first.click()
    page.wait_for_function("document.querySelectorAll('#graph .node').length === 500")
    page.wait_for_selector("#node h2")
    assert "evaluate" in page.locator("#node h2").inner_text()
    page.goto(f"{server}/dispatch/{did}")
    page.locator("#graph .node.fold").click()  # a click on the block unfolds it
    page.wait_for_function("document.querySelectorAll('#graph .node').length === 500")
    page.screenshot(path=str(ARTIFACTS / "graph-500.png"))
    # Zoom in on the top left with the wheel: the labels become readable.
    box = page.locator("#graph").bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    for _ in range(12):
        page.mouse.wheel(0, -200)
    page.screenshot(path=str(ARTIFACTS / "graph-500-zoomed.png"))
    view_box = page.locator("#graph-svg").get_attribute("viewBox")
    assert float(view_box.split()[2]) < 2000
    assert page.locator("#graph path.bundle").count() == 2  # fan-out and fan-in, not 996


sweep = _named(f"{TAG}_sweep", lambda xs: [qflow.electron(one_point)(x) for x in xs])


def test_charts_of_a_variational_loop_and_a_sweep(page, server):
    import pennylane as qml

    from qflow.variational import minimize

    def circuit(p):
        qml.RX(p[0], wires=0)
        qml.RY(p[1], wires=0)
        return qml.expval(qml.PauliZ(0))

    loop = minimize(
        circuit,
        [0.3, 0.2],
        wires=1,
        steps=30,
        pack=10,
        about={"quantity": "energy", "unit": "Ha", "exact": -1.0},
        report=lambda params, cost: {"answer": 42},
    )
    assert loop.found == {"answer": 42}
    page.goto(f"{server}/dispatch/{loop.dispatch_id}")
    chart = page.locator("figure.chart[data-metric='energy convergence']")
    chart.wait_for()
    assert chart.locator("path.line").count() == 1 and chart.locator("path.best").count() == 1
    assert "31 values" in chart.inner_text()  # 30 steps and the final value
    assert chart.locator("line.reference").count() == 1  # the exact value, across
    assert "exact -1.0000000 Ha" in chart.locator(".legend").inner_text()
    # The loop's result in one line, above everything else, with what its report found.
    summary = page.locator("#summary").inner_text()
    assert summary.startswith("energy -") and "(exact -1.000000 Ha, error" in summary
    assert summary.endswith("30 steps; answer 42")
    # ... which is also its result, the chunks' states folded away below it.
    result = page.locator("#result")
    assert result.inner_text().startswith(summary) and "ChunkState" not in result.inner_text()
    assert result.locator("details summary").inner_text() == "full value"
    # Its inputs, as a researcher reads them: not the loop's internals.
    inputs = page.locator("#inputs").inner_text()
    assert inputs.startswith("backend lightning.qubit, exact expectation values")
    assert "up to 30 steps in chunks of 10" in inputs and "LoopSpec" not in inputs
    # Axis titles with the unit, round ticks, and every label inside the chart.
    titles = chart.locator("text.axis-title").all_text_contents()
    assert titles == ["step", "energy (Ha)"]
    ticks = chart.locator("text.tick").all_text_contents()
    assert "0.000" not in ticks and any(t.startswith("-") for t in ticks)
    inside = chart.evaluate(
        "f => { const s = f.querySelector('svg').getBoundingClientRect();"
        " return [...f.querySelectorAll('svg text')].every(t => {"
        " const r = t.getBoundingClientRect();"
        " return r.left >= s.left - 0.5 && r.right <= s.right + 0.5; }); }"
    )
    assert inside
    page.locator("#metrics").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "metrics-loop.png"), full_page=True)

    dispatch_id = qflow.dispatch(sweep)([1.0, 1.2, 1.4, 1.6, 1.8])
    qflow.get_result(dispatch_id, wait=True)
    page.goto(f"{server}/dispatch/{dispatch_id}")
    chart = page.locator("figure.chart[data-metric='energy']")
    chart.wait_for()
    # Energy and exact energy on one chart against R: a curve each across the points.
    assert chart.locator("path.line").count() == 2
    assert chart.locator("circle").count() == 10
    assert chart.locator("path.errbar").count() == 5
    titles = chart.locator("text.axis-title").all_text_contents()
    assert titles == ["R (Å)", "energy (Ha)"]
    # ... and as a table of points, with the error against the exact value in mHa.
    rows = chart.locator("table.points tbody tr")
    assert rows.count() == 5
    assert rows.first.locator("td").all_text_contents() == ["1", "-0.750000", "-0.752000", "2.000"]
    page.screenshot(path=str(ARTIFACTS / "metrics-sweep.png"), full_page=True)


def test_bulk_delete_from_the_list(page, server):
    ids = [qflow.dispatch(nested)(i) for i in (7, 8)]
    for i in ids:
        qflow.get_result(i, wait=True)
    page.goto(f"{server}/?q={TAG}_nested")
    for i in ids:
        page.locator(f"tr[data-id='{i}'] input.pick").check()
    assert page.locator("#delete").inner_text() == "Delete 2 selected"
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete").click()
    page.wait_for_function(f"!document.querySelector(\"tr[data-id='{ids[0]}']\")", timeout=30_000)
    from qflow.exceptions import DispatchNotFoundError

    for i in ids:
        with pytest.raises(DispatchNotFoundError):
            qflow.get_result(i)
