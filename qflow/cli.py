"""The ``qflow`` command line: run ``qflow --help``."""

from __future__ import annotations

import re
import sys
from typing import Any

import click

from qflow.exceptions import ClusterError, QflowError
from qflow.settings import Settings

# CSI and OSC sequences, then any other C0/C1 control but tab and newline.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def printable(text: str) -> str:
    r"""``text`` without terminal control sequences, so that what an electron printed
    cannot move the cursor, retitle the window or hide lines in the user's terminal.

    Example:
        >>> printable("\x1b[31mred\x1b[0m\r\x1b]0;title\x07ok")
        'redok'
    """
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QflowError as exc:
            _fail(exc)


@click.group(cls=_Group)
@click.version_option(package_name="qflow-runtime")
def main() -> None:
    """qflow: Covalent-compatible quantum-classical workflows on Ray."""


@main.command()
@click.option(
    "--num-cpus",
    type=click.IntRange(min=1),
    default=None,
    help="CPUs the head offers (default: all).",
)
@click.option(
    "--resources",
    default=None,
    metavar="JSON",
    help="Custom resources the head offers, e.g. '{\"qpu:simulated\": 1}'.",
)
@click.option("--ui", "with_ui", is_flag=True, help="Also serve the web UI (`qflow ui`).")
@click.option(
    "--ui-host",
    default="127.0.0.1",
    show_default=True,
    help="Where the UI listens; a non-loopback address requires its token.",
)
@click.option("--ui-port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="Also serve the web UI and the HTTP API here, for clients on other machines "
    "(QFLOW_SERVER=URL and QFLOW_TOKEN, or `qflow login URL`; `qflow token` prints it).",
)
@click.option("--certfile", default=None, help="With --listen: serve HTTPS with this certificate.")
@click.option("--keyfile", default=None, help="With --listen: the certificate's private key.")
@click.option(
    "--address",
    default=None,
    metavar="HOST:PORT",
    help="Attach to the Ray cluster already running there (default: $RAY_ADDRESS) instead "
    "of starting a head; run it on a node of that cluster.",
)
def start(
    num_cpus: int | None,
    resources: str | None,
    with_ui: bool,
    ui_host: str,
    ui_port: int,
    listen: str | None,
    certfile: str | None,
    keyfile: str | None,
    address: str | None,
) -> None:
    """Start a persistent local Ray head and dispatcher, so dispatches outlive the client.

    With --address (or RAY_ADDRESS), attach the dispatcher to that Ray cluster instead."""
    from qflow.runtime import service
    from qflow.server.serve import parse_listen
    from qflow.settings import parse_resources

    parsed = parse_resources(resources, "--resources") if resources else ()
    if (certfile is None) != (keyfile is None) or (certfile and listen is None):
        raise click.UsageError("--certfile and --keyfile go together, with --listen.")
    settings = Settings.from_env()
    address = address or settings.ray_address
    if address is not None and (num_cpus is not None or parsed):
        raise click.UsageError(
            "--num-cpus and --resources describe a head qflow starts; with --address (or "
            "RAY_ADDRESS) the cluster's own `ray start` sets them."
        )
    state = service.start(
        settings,
        address=address,
        num_cpus=num_cpus,
        resources=parsed,
        ui=(ui_host, ui_port) if with_ui else None,
        listen=parse_listen(listen) if listen else None,
        tls=(certfile, keyfile) if certfile and keyfile else None,
    )
    if state.get("attached"):
        click.echo(
            f"qflow attached to the Ray cluster at {state['address']}: dispatcher service "
            f"pid {state['service_pid']}, home {state['home']}"
        )
    else:
        click.echo(
            f"qflow head running: pid {state['pid']}, address {state['address']}, "
            f"dispatcher service pid {state['service_pid']}, home {state['home']}"
        )
    if "ui_url" in state:
        click.echo(f"qflow UI at {state['ui_url']}")
    if "server_url" in state:
        click.echo(
            f"qflow server at {state['server_url']} (API and UI; `qflow token` prints its "
            "token; clients: `qflow login URL`)"
        )


@main.command(hidden=True)
@click.option("--listen", required=True, metavar="HOST:PORT")
@click.option("--certfile", default=None)
@click.option("--keyfile", default=None)
def serve(listen: str, certfile: str | None, keyfile: str | None) -> None:
    """The qflow server process that `qflow start --listen` runs."""
    from qflow.runtime.head_state import live_address
    from qflow.server.serve import parse_listen
    from qflow.server.serve import serve as run
    from qflow.server.tokens import make_token

    settings = Settings.from_env()
    if live_address(settings) is None:
        raise ClusterError(
            f"No qflow head runs for {settings.home}: the server hands dispatches to it. "
            "Run `qflow start --listen HOST:PORT` instead."
        )
    host, port = parse_listen(listen)
    run(settings.home, host, port, make_token(settings.home), certfile, keyfile)


@main.command()
def token() -> None:
    """Print the token of this home's qflow server (clients send it as QFLOW_TOKEN)."""
    from qflow.server.tokens import read_token

    click.echo(read_token(Settings.from_env().home))


@main.command()
@click.argument("url")
@click.option(
    "--token",
    "token_value",
    default=None,
    help="The server's token (`qflow token` there); asked for if not given.",
)
def login(url: str, token_value: str | None) -> None:
    """Send this machine's dispatches and reads to the qflow server at URL from now on."""
    from qflow.remote.client import Client, server_url
    from qflow.remote.client import login as save

    url = server_url(url)
    if token_value is None:
        token_value = click.prompt("token", hide_input=True)
    Client(url, token_value).json("GET", "/versions")  # a wrong token or URL fails here
    path = save(url, token_value)
    click.echo(f"logged in to {url} (kept in {path}; remove it to run locally again)")


@main.group()
def secret() -> None:
    """Keep credentials where the dispatcher runs; electrons ask with secrets=[...].

    Values are never printed. With QFLOW_SERVER set, `qflow login` made, or --server,
    they are kept by that qflow server; otherwise in $QFLOW_HOME/secrets.
    """


_SERVER_OPTION = click.option(
    "--server", default=None, help="A qflow server's URL (its token from QFLOW_TOKEN or login)."
)


@secret.command("set")
@click.argument("name")
@click.option("--from-env", "from_env", default=None, help="Take the value from this variable.")
@_SERVER_OPTION
def secret_set(name: str, from_env: str | None, server: str | None) -> None:
    """Keep secret NAME, read from a prompt that does not echo, or from stdin."""
    import os
    import urllib.parse

    from qflow.remote.client import client_for
    from qflow.secrets.keep import SecretKeep, check_name

    check_name(name)
    if from_env is not None:
        value = os.environ.get(from_env)
        if value is None:
            raise click.UsageError(f"--from-env {from_env}: that variable is not set.")
    elif sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True, prompt_suffix=": ")
    else:
        value = sys.stdin.read().rstrip("\r\n")
    client = client_for(server)
    if client is not None:
        client.json("PUT", f"/secrets/{urllib.parse.quote(name)}", {"value": value})
        click.echo(f"secret {name} set on {client.url}")
    else:
        keep = SecretKeep.of_home(Settings.from_env().home)
        keep.set(name, value)
        click.echo(f"secret {name} set in {keep.folder}")


@secret.command("list")
@_SERVER_OPTION
def secret_list(server: str | None) -> None:
    """Show each secret's name and when it was set (never its value)."""
    from qflow.remote.client import client_for
    from qflow.secrets.keep import SecretKeep

    client = client_for(server)
    if client is not None:
        entries = client.json("GET", "/secrets")["secrets"]
    else:
        keep = SecretKeep.of_home(Settings.from_env().home)
        entries = [{"name": e.name, "set_at": e.set_at} for e in keep.entries()]
    if not entries:
        click.echo("no secrets kept (set one with `qflow secret set NAME`)")
    for entry in entries:
        click.echo(f"{entry['name']:<32} set {entry['set_at']}")


@secret.command("rm")
@click.argument("name")
@_SERVER_OPTION
def secret_rm(name: str, server: str | None) -> None:
    """Forget secret NAME."""
    import urllib.parse

    from qflow.remote.client import client_for
    from qflow.secrets.keep import SecretKeep, check_name

    check_name(name)
    client = client_for(server)
    if client is not None:
        removed = client.json("DELETE", f"/secrets/{urllib.parse.quote(name)}")["removed"]
    else:
        removed = SecretKeep.of_home(Settings.from_env().home).remove(name)
    if not removed:
        raise click.ClickException(f"no secret {name} is kept")
    click.echo(f"secret {name} removed")


@main.command()
@click.option("--chunks", type=int, default=8, show_default=True, help="Parallel electrons.")
@click.option("--samples", type=int, default=200_000, show_default=True, help="Per electron.")
def demo(chunks: int, samples: int) -> None:
    """Run an example workflow on the embedded local Ray (or the running head)."""
    from qflow._demo import run

    res = run(chunks, samples)
    sys.exit(0 if res.status == "COMPLETED" else 1)


@main.command()
@click.option(
    "--bonds",
    default="0.5,0.6,0.74,0.9,1.1,1.3",
    show_default=True,
    help="H-H distances in --unit, comma-separated.",
)
@click.option(
    "--unit",
    type=click.Choice(["angstrom", "bohr"]),
    default="angstrom",
    show_default=True,
    help="The unit of --bonds.",
)
@click.option("--backend", default="lightning.qubit", show_default=True, help="Backend name.")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help="Max VQE steps per point.",
)
@click.option(
    "--pack",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Steps per actor call.",
)
@click.option("--plot", default="h2_scan.png", show_default=True, help="Where to write the PNG.")
def scan(bonds: str, unit: str, backend: str, steps: int, pack: int, plot: str) -> None:
    """The main job: an H2 potential-energy scan with VQE, one sublattice per bond length."""
    from qflow.algorithms import scan_h2
    from qflow.backends import get_backend

    try:
        lengths = [float(b) for b in bonds.split(",") if b.strip()]
    except ValueError:
        raise click.BadParameter(
            f"takes numbers like 1.0,1.4; got {bonds!r}", param_hint="--bonds"
        ) from None
    try:
        get_backend(backend)
    except QflowError as exc:
        raise click.BadParameter(str(exc), param_hint="--backend") from None
    click.echo(
        f"VQE scan of H2 at {len(lengths)} bond lengths ({unit}) on {backend} (pack={pack}) ..."
    )
    res = scan_h2(
        lengths, backend=backend, steps=steps, pack=pack, plot=plot, progress=click.echo, unit=unit
    )
    click.echo(res.table())
    click.echo(
        f"{res.seconds:.1f} s; dispatch {res.dispatch_id}; plot written to "
        f"{res.plot.resolve() if res.plot else '-'}"
    )


@main.command()
def stop() -> None:
    """Stop exactly the processes `qflow start` started (never `ray stop`)."""
    from qflow.runtime import service

    pids = service.stop(Settings.from_env())
    click.echo(f"stopped {len(pids)} processes" if pids else "no qflow head was running")


@main.command()
def status() -> None:
    """Say whether a qflow head is running for this QFLOW_HOME."""
    from qflow.runtime import service

    settings = Settings.from_env()
    info = service.status(settings)
    if info["running"]:
        click.echo(
            f"running: pid {info['pid']}, address {info['address']}, dispatcher "
            f"service pid {info['service_pid']}, since {info['started_at']}, "
            f"home {info['home']}"
        )
        if "ui_url" in info:
            click.echo(f"UI: {info['ui_url'].split('?')[0]} (pid {info['ui_pid']})")
    elif info["head"]:
        click.echo(f"broken: {info['reason']}")
    else:
        click.echo(
            f"not running: {info['reason']} (home {info['home']}); the next dispatch "
            "starts an embedded Ray"
        )
    from qflow.runtime.lease import reap_all
    from qflow.runtime.process import current as _runtime

    store = _runtime().store
    ended = reap_all(store)
    if ended:
        click.echo(f"ended {ended} dispatch(es) that nothing was running any more")
    click.echo(
        f"store {settings.db_path}: {_size(store.size_bytes())} "
        "(`qflow gc --older-than 30d` removes old dispatches)"
    )
    if "pid" in info and not info["running"]:
        sys.exit(1)


@main.command(name="list")
@click.option("--limit", type=int, default=20, show_default=True, help="How many to show.")
def list_(limit: int) -> None:
    """Show recent dispatches, newest first."""
    rows = _store().list_dispatches(limit)
    if not rows:
        click.echo("no dispatches yet")
    for r in rows:
        click.echo(f"{r['dispatch_id']}  {r['status']:<10} {r['created_at'][:19]}  {r['name']}")


def _store() -> Any:
    """The results store commands read: the chosen server's, or this home's (with
    dispatches nothing runs any more ended first)."""
    from qflow.remote.store import chosen_store
    from qflow.runtime.lease import reap_all
    from qflow.runtime.process import current as _runtime

    remote = chosen_store()
    if remote is not None:
        return remote
    store = _runtime().store
    reap_all(store)
    return store


def _view(dispatch_id: str) -> dict[str, Any]:
    from qflow._api import _not_found
    from qflow.exceptions import DispatchNotFoundError
    from qflow.remote.store import RemoteStore
    from qflow.runtime.process import current as _runtime
    from qflow.ui.views import dispatch_view

    store = _store()
    view = dispatch_view(store, dispatch_id, with_layout=False)
    if view is None:
        if isinstance(store, RemoteStore):
            raise DispatchNotFoundError(f"No dispatch {dispatch_id!r} on the server {store.path}.")
        raise _not_found(_runtime(), dispatch_id)
    return view


def _full_id(given: str) -> str:
    """The dispatch id ``given`` names: itself, or the one id it is a unique prefix of.

    Raises:
        DispatchNotFoundError: no id starts with it.
        QflowInputError: several do; they are listed.
    """
    from qflow.exceptions import DispatchNotFoundError, QflowInputError

    store = _store()
    if store.get_status(given) is not None:
        return given
    found = store.match_ids(given, 6) if given else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise DispatchNotFoundError(
            f"No dispatch {given!r}: no id is or starts with it in {store.path}; "
            "`qflow list` shows recent ones."
        )
    more = "at least " if len(found) > 5 else ""
    raise QflowInputError(
        f"{given!r} starts {more}{len(found)} dispatch ids ({', '.join(found[:5])}): give "
        "more of the id."
    )


def _took(node: dict[str, Any]) -> str:
    if not (node["start_time"] and node["end_time"]):
        return ""
    seconds = (node["end_time"] - node["start_time"]).total_seconds()
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


@main.command()
@click.argument("dispatch_id")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the dispatch as JSON (the UI's /api/dispatches/ID).",
)
@click.option("--all", "show_all", is_flag=True, help="Include parameter nodes.")
@click.option("--failed", is_flag=True, help="Only nodes that failed or were cancelled.")
def show(dispatch_id: str, as_json: bool, show_all: bool, failed: bool) -> None:
    """Show a dispatch: a summary, its nodes, statuses, timings, errors and graph.

    DISPATCH_ID may be any unique start of an id.
    """
    import collections

    import qflow
    from qflow.core.status import Status

    dispatch_id = _full_id(dispatch_id)
    if as_json:
        import json

        click.echo(json.dumps(_view(dispatch_id), indent=1))
        return
    res = qflow.get_result(dispatch_id)
    nodes = res.get_all_node_results()
    work = [n for n in nodes if n["kind"] != "parameter"]
    counts = collections.Counter(Status(n["status"]).word for n in work)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    click.echo(f"dispatch {res.dispatch_id}  lattice {res.lattice_name}  status {res.status}")
    click.echo(f"{len(work)} nodes: {summary or 'none'}")
    click.echo(f"started {res.start_time}  ended {res.end_time}")
    shown = nodes if show_all else work
    if failed:
        shown = [n for n in shown if str(n["status"]) in ("FAILED", "CANCELLED")]
    labels = [f"{n['node_name']}({n['node_id']})" for n in shown]
    width = max((len(label) for label in labels), default=0) + 2
    for label, node in zip(labels, shown, strict=True):
        click.echo(f"  {label:<{width}}{node['status']!s:<11}{_took(node)}")
        if node["error"]:
            click.echo("    " + node["error"].strip().splitlines()[-1])
        if node["sublattice_result"] is not None:
            click.echo(f"    sublattice: {node['sublattice_result'].dispatch_id}")
    if res.error:
        click.echo("error:\n" + res.error)
    if not failed:
        click.echo(res.graph_text)


@main.command()
@click.argument("dispatch_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="json: the whole dispatch; csv: a row per node.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to this file instead of standard output.",
)
def export(dispatch_id: str, fmt: str, output: str | None) -> None:
    """Export a dispatch's record (outputs as their recorded text, never unpickled)."""
    import json

    from qflow.ui.views import nodes_csv, with_logs

    dispatch_id = _full_id(dispatch_id)
    view = _view(dispatch_id)
    if fmt == "csv":  # with what each node printed
        view = with_logs(_store(), view)
    text = json.dumps(view, indent=1) + "\n" if fmt == "json" else nodes_csv(view)
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"wrote {output}")


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; any non-loopback address requires a token.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option(
    "--socket",
    "socket_path",
    default=None,
    metavar="PATH",
    help="Listen on this Unix socket instead (in a folder only you can open).",
)
def ui(host: str, port: int, socket_path: str | None) -> None:
    """Serve the web UI over this QFLOW_HOME's results store until stopped (Ctrl-C)."""
    try:
        from qflow.ui.app import serve
    except ImportError as exc:
        raise QflowError(
            f"The web UI needs the ui extra ({exc.name} is missing): "
            "pip install 'qflow-runtime[ui]'."
        ) from exc
    import os

    from qflow.store.sqlite import SQLiteStore

    settings = Settings.from_env()
    serve(
        SQLiteStore(settings.db_path),
        host=host,
        port=port,
        token=os.environ.get("QFLOW_UI_TOKEN") or None,
        announce=lambda line: click.echo(line, err=False),
        socket_path=socket_path,
    )


@main.command()
@click.argument("dispatch_id")
@click.option("--node", "nodes", type=int, multiple=True, help="Cancel only this node (repeat).")
def cancel(dispatch_id: str, nodes: tuple[int, ...]) -> None:
    """Cancel a dispatch, or some of its nodes."""
    import qflow

    click.echo(qflow.cancel(_full_id(dispatch_id), list(nodes) or None))


@main.command()
@click.argument("dispatch_id")
@click.option("--reuse", is_flag=True, help="Reuse the outputs of unchanged completed electrons.")
def redispatch(dispatch_id: str, reuse: bool) -> None:
    """Run a dispatch again on the `qflow start` head; print the new dispatch's id."""
    import qflow
    from qflow.runtime.head_state import live_address

    settings = Settings.from_env()
    if live_address(settings) is None and not settings.ray_address:
        raise ClusterError(
            "`qflow redispatch` hands the dispatch to a `qflow start` head, and none runs "
            "for this QFLOW_HOME (a dispatch run inside this command would die when it "
            "exits). Run `qflow start` first, or call qflow.redispatch(...) in a script "
            "that waits for the result."
        )
    click.echo(qflow.redispatch(_full_id(dispatch_id), reuse_previous_results=reuse)())


@main.command()
@click.argument("dispatch_id")
@click.argument("node", required=False)
def logs(dispatch_id: str, node: str | None) -> None:
    """Print what the electrons printed (stdout and stderr), for one node or all.

    NODE is a node number or an electron name (every node of that name). DISPATCH_ID may
    be any unique start of an id.
    """
    import qflow
    from qflow.exceptions import QflowInputError

    res = qflow.get_result(_full_id(dispatch_id))
    every = res.get_all_node_results()
    if node is None:
        nodes = [n for n in every if n["stdout"] or n["stderr"] or n["error"]]
    elif node.isdigit():
        nodes = [res.get_node_result(int(node))]
    else:
        nodes = [n for n in every if n["node_name"] == node]
        if not nodes:
            names = sorted({n["node_name"] for n in every if n["kind"] != "parameter"})
            raise QflowInputError(
                f"Dispatch {res.dispatch_id} has no node named {node!r}; its nodes are "
                f"named {', '.join(names)} (or give a node number)."
            )
    for n in nodes:
        click.echo(f"== {n['node_name']}({n['node_id']}) [{n['status']}]")
        stderr, error = n["stderr"] or "", (n["error"] or "").rstrip()
        if error and stderr.rstrip().endswith(error):  # Covalent appends it: print it once
            stderr = stderr.rstrip()[: -len(error)]
        if n["stdout"]:
            click.echo(printable(n["stdout"]).rstrip())
        if stderr.strip():
            click.echo("-- stderr\n" + printable(stderr).rstrip())
        if error:
            click.echo("-- error\n" + printable(error))


@main.command()
@click.argument("dispatch_ids", nargs=-1, required=True)
def delete(dispatch_ids: tuple[str, ...]) -> None:
    """Delete finished dispatches with their nodes, sublattices and blob files."""
    import qflow

    n = qflow.delete([_full_id(d) for d in dispatch_ids])
    click.echo(f"deleted {n} dispatch record(s)")


@main.command()
@click.option(
    "--older-than",
    default="30d",
    show_default=True,
    help="Age such as 30d, 12h or 90m; dispatches that ended before it go.",
)
def gc(older_than: str) -> None:
    """Delete every finished dispatch that ended more than --older-than ago."""
    import qflow
    from qflow.runtime.process import current as _runtime

    before = _runtime().store.size_bytes()
    n = qflow.gc(older_than)
    after = _runtime().store.size_bytes()
    click.echo(f"deleted {n} dispatch record(s); store {_size(before)} -> {_size(after)}")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@main.group()
def slurm() -> None:
    """Ray-on-Slurm: Slurm jobs that add Ray worker nodes to the running qflow head."""


@slurm.command("up")
@click.option("--nodes", type=int, default=1, show_default=True, help="Ray nodes (Slurm tasks).")
@click.option("--time", "time_min", type=int, default=60, show_default=True, help="Minutes.")
@click.option("--cpus", type=int, default=1, show_default=True, help="CPUs per node.")
@click.option("--partition", default=None, help="Slurm partition.")
def slurm_up_cmd(nodes: int, time_min: int, cpus: int, partition: str | None) -> None:
    """Submit a job whose tasks join the qflow head as Ray nodes (resource slurm:<jobid>)."""
    from dataclasses import asdict

    from qflow.exceptions import ClusterError
    from qflow.runtime.ray_cluster import ensure_ray
    from qflow.runtime.slurm_cluster import record, recorded, slurm_up

    settings = Settings.from_env()
    if ensure_ray(settings) == "embedded":
        raise ClusterError(
            "No persistent Ray head to join: run `qflow start` first, or set "
            "RAY_ADDRESS to a running cluster."
        )
    alloc = slurm_up(nodes, time_min=time_min, cpus_per_task=cpus, partition=partition)
    record(settings, [*recorded(settings), asdict(alloc)])
    click.echo(
        f"Slurm job {alloc.job_id}: {nodes} Ray node(s) joined; target them with "
        f"resources={{'{alloc.resource}': 1}}"
    )


@slurm.command("down")
@click.argument("job_ids", nargs=-1)
def slurm_down_cmd(job_ids: tuple[str, ...]) -> None:
    """Cancel Ray-on-Slurm jobs (default: all that `qflow slurm up` started here)."""
    import subprocess

    from qflow.runtime.slurm_cluster import record, recorded

    settings = Settings.from_env()
    allocs = recorded(settings)
    chosen = [a for a in allocs if not job_ids or a["job_id"] in job_ids]
    for alloc in chosen:
        subprocess.run(["scancel", alloc["job_id"]], check=False, capture_output=True)
        click.echo(f"cancelled Slurm job {alloc['job_id']}")
    record(settings, [a for a in allocs if a not in chosen])
    if not chosen:
        click.echo("no Ray-on-Slurm allocation to take down")


if __name__ == "__main__":
    main()
