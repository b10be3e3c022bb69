"""The main job (``scripts/main`` runs it after installing): the platform end to end.

1. start ``sos server`` (local runtime) with its state in ``.sos-data/``;
2. build the MovieLens recommender (``examples/movielens``) with ``sos build`` and push it
   (an artifact the server already has with the same bytes is not pushed again);
3. deploy it as revision 1 (pipeline v1) and, from the same artifact, revision 2
   (``MOVIELENS_VERSION=v2``): a revision that already has exactly that spec is reused;
4. split traffic 90/10 with the tag ``canary`` on the new one;
5. send requests through the router and show who served each (``Sos-Revision``), both
   answers side by side, and the per-operator log of one request (``sos logs``);
6. say where the web UI and the explorer are, and serve until Ctrl-C (then stop cleanly).

Every step runs the ``sos`` command a user would type and shows it. Options: ``--fresh``
(start over: delete ``.sos-data/`` first), ``--exit`` (stop after the tour instead of
serving), ``--requests N``. Environment: ``SOS_PORT`` (8700) and ``SOS_ROUTER_PORT`` (8080),
taken when free, else a free port; ``MOVIELENS_DIR`` (the data), ``MOVIELENS_USER`` (1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.columns import Columns
from rich.console import Console
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from sos import Client, NotFoundError, Revision, SOSError
from sos.build.api import read_metadata
from sos.cli.deploy import load_deploy_file
from sos.server.deploy import same_spec

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "movielens"
DEPLOY_FILE = EXAMPLE / "deploy.py"
SERVICE = "movielens"
TAG = "canary"
SPLIT = (90, 10)
SOS = str(Path(sys.executable).parent / "sos")

console = Console(highlight=False, soft_wrap=True)  # URLs and log lines stay whole


class JobError(Exception):
    """A step failed; the message says what to do. Shown without a traceback."""


def rel(path: Path) -> str:
    """A path as the user sees it from the repository."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(REPO))
    return str(path)


def short(revision_id: str) -> str:
    return revision_id.rsplit("-", 1)[-1]


def step(number: int, title: str) -> float:
    console.print()
    console.print(Rule(Text.assemble((f" {number} ", "bold reverse"), f"  {title} "), align="left"))
    return time.monotonic()


def done(text: str, started: float) -> None:
    console.print(f"[bold green]✓[/] {text} [dim]({time.monotonic() - started:.1f} s)[/]")


def command(args: Sequence[str], env_prefix: str = "") -> None:
    console.print(Text.assemble(("$ ", "dim"), (env_prefix + " ".join(args), "bold cyan")))


# --------------------------------------------------------------------------- the server


def port_or_free(port: int) -> int:
    """``port`` if nothing listens there, else 0 (the server then picks a free one)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


@dataclass
class Server:
    """``sos server`` in its own session (Ctrl-C reaches the main job, which stops it)."""

    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int
    url: str = ""
    router_port: int = 0
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def router(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def service_url(self, host: str = SERVICE) -> str:
        return f"http://{host}.localhost:{self.router_port}"

    def output(self) -> str:
        with self.log_path.open("rb") as handle:
            handle.seek(self.log_offset)
            return handle.read().decode(errors="replace")

    def wait_started(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            text = self.output()
            api = re.search(r"listening on (http://\S+)", text)
            router = re.search(r"router listening on http://[^\s:]+:(\d+)", text)
            if api and router:
                self.url, self.router_port = api.group(1), int(router.group(1))
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        tail = "\n".join(self.output().strip().splitlines()[-15:])
        raise JobError(f"sos server did not start; its output ({rel(self.log_path)}):\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # what Ctrl-C does: instances stop too
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(data_dir: Path) -> Server:
    data_dir.mkdir(parents=True, exist_ok=True)
    api_port = port_or_free(int(os.environ.get("SOS_PORT", "8700")))
    router_port = port_or_free(int(os.environ.get("SOS_ROUTER_PORT", "8080")))
    args = ["sos", "server", "--data-dir", rel(data_dir)]
    args += ["--port", str(api_port), "--router-port", str(router_port)]
    command(args)
    log_path = data_dir / "server.log"
    with log_path.open("ab") as log:
        log.write(f"\n=== scripts/main {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        offset = log.tell()
        env = {k: v for k, v in os.environ.items() if k not in ("SOS_PORT", "SOS_ROUTER_PORT")}
        process = subprocess.Popen(
            [SOS, *args[1:]],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(data_dir, process, log_path, offset)
    try:
        server.wait_started()
    except BaseException:  # not started, or Ctrl-C meanwhile: leave nothing running
        server.stop()
        raise
    for wanted, name in ((api_port, "SOS_PORT"), (router_port, "SOS_ROUTER_PORT")):
        if wanted == 0:
            default = "8700" if name == "SOS_PORT" else "8080"
            busy = os.environ.get(name, default)
            console.print(f"[yellow]port {busy} is busy: took a free one ({name} picks another)")
    token_file = data_dir / "admin-token"
    if not token_file.is_file():
        server.stop()
        raise JobError(
            f"{rel(token_file)} is gone, so the main job cannot sign in to its server; "
            "start over with `scripts/main --fresh` (deletes .sos-data/)"
        )
    server.token = token_file.read_text().strip()
    server.env = {
        **env,
        "SOS_URL": server.url,
        "SOS_TOKEN": server.token,
        "SOS_HOME": str(data_dir / "home"),  # builds pushed here: reset with the data
        "COLUMNS": str(max(80, console.width - 4) if console.is_terminal else 160),
    }
    return server


def run(server: Server, args: Sequence[str], env: dict[str, str] | None = None) -> str:
    """Run a ``sos`` command as a user would, its output shown indented as it comes."""
    prefix = "".join(f"{k}={v} " for k, v in (env or {}).items())
    command(args, prefix)
    process = subprocess.Popen(
        [SOS, *args[1:]],
        cwd=REPO,
        env={**server.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        console.print(Text("  │ ", style="dim") + Text(line.rstrip("\n")))
    if process.wait() != 0:
        raise JobError(f"`{prefix}{' '.join(args)}` failed (exit code {process.returncode})")
    return "".join(lines)


# --------------------------------------------------------------------------- the steps


def build_and_push(server: Server, client: Client) -> str:
    """Build the example and put it on the server; returns the version to deploy.

    Bytes the server has already are not pushed again. When the code changed since the
    project's version was pushed (a pushed version never changes its bytes), this build
    goes up as a local version of it, ``1.0.0+<digest>``, and the deploys make new
    revisions from it."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    name, version = str(project["name"]), str(project["version"])
    trainer = EXAMPLE / "movielens_model.py"
    if not (EXAMPLE / "models" / "als" / "model.json").is_file():  # pipeline v3's model
        command(["python", rel(trainer)])
        subprocess.run([sys.executable, str(trainer)], cwd=REPO, env=server.env, check=True)
    run(server, ["sos", "build", rel(EXAMPLE)])
    artifact = EXAMPLE / "dist" / f"{name}-{version}.pyz"
    built = read_metadata(artifact)
    known = {a.version: a for a in client.list_artifacts(name)}
    same = sorted(v for v, a in known.items() if a.digest == built.digest)
    if same:
        have = version if version in same else same[0]
        console.print(f"  the server has these bytes already as {name} {have}: nothing to push")
        return have
    if version in known:
        local = f"{version}+{built.digest.removeprefix('sha256:')[:12]}"
        console.print(
            f"  the code changed since {name} {version} was pushed, and a pushed version "
            f"never changes its bytes: this build goes up as the local version [bold]{local}"
            f"[/] (bump `version` in {rel(EXAMPLE / 'pyproject.toml')} for a release)"
        )
        version = local
    console.print(f"  pushing it (as `sos push {rel(artifact)}` does) ...")
    pushed = client.push_artifact(artifact, metadata=built.model_copy(update={"version": version}))
    console.print(f"  pushed {pushed.name} {pushed.version} ({pushed.digest[:19]}…)")
    return version


def deploy_env(pipeline: str, artifact_version: str) -> dict[str, str]:
    """What the deploy file reads: the pipeline, and the artifact version if not the
    project's own."""
    env = {"MOVIELENS_VERSION": pipeline} if pipeline != "v1" else {}
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    if artifact_version != project["version"]:
        env["ARTIFACT_VERSION"] = artifact_version
    return env


def find_same(client: Client, env: dict[str, str]) -> Revision | None:
    """The newest revision that already has exactly the spec the deploy file asks for."""
    saved = {k: os.environ.get(k) for k in ("MOVIELENS_VERSION", "ARTIFACT_VERSION")}
    os.environ.update(env)
    try:
        plan = load_deploy_file(DEPLOY_FILE)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value
    try:
        revisions = client.list_revisions(SERVICE)
        service = client.get_service(SERVICE)
    except NotFoundError:
        return None
    for revision in reversed(revisions):
        if plan.revision is not None and same_spec(
            revision, plan.revision, service.env_vars, service.files
        ):
            return revision
    return None


def deploy(server: Server, client: Client, pipeline: str, artifact_version: str) -> Revision:
    env = deploy_env(pipeline, artifact_version)
    existing = find_same(client, env)
    if existing is not None and existing.id:
        console.print(
            f"  revision {short(existing.id)} already serves pipeline {pipeline} from this "
            "artifact (the same spec): reused, nothing to deploy"
        )
        return client.wait_ready(SERVICE, existing.id, timeout=180)
    run(server, ["sos", "deploy", rel(DEPLOY_FILE)], env)
    found = find_same(client, env)
    if found is None or not found.id:
        raise JobError(f"sos deploy made no revision for pipeline {pipeline}")
    return client.wait_ready(SERVICE, found.id, timeout=180)


def split_traffic(server: Server, client: Client, old: Revision, new: Revision) -> None:
    assert old.id and new.id
    want = {(old.id, SPLIT[0], None), (new.id, SPLIT[1], TAG)}
    current = client.get_service(SERVICE).traffic
    have = {(r.revision, r.percent, r.tag) for r in current.routes} if current else set()
    args = ["sos", "traffic", SERVICE, f"{int(short(old.id))}={SPLIT[0]}"]
    args.append(f"{int(short(new.id))}={SPLIT[1]}@{TAG}")
    if have == want:
        command(args)
        console.print("  the traffic is split like this already: nothing to change")
        return
    run(server, args)


@dataclass
class Answer:
    path: str
    status: int
    revision: str
    trace_id: str
    ms: float
    body: dict[str, Any]


def ask(http: httpx.Client, host: str, path: str) -> Answer:
    started = time.perf_counter()
    response = http.get(path, headers={"Host": host})
    ms = (time.perf_counter() - started) * 1000
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:200]}
    return Answer(
        path,
        response.status_code,
        response.headers.get("sos-revision", "?"),
        response.headers.get("x-trace-id", ""),
        ms,
        body if isinstance(body, dict) else {"answer": body},
    )


def titles(body: dict[str, Any], n: int = 3, width: int = 26) -> str:
    found = body.get("title") or []
    picks = [t if len(t) <= width else t[: width - 1] + "…" for t in found[:n]]
    return " · ".join(picks) or str(body.get("reason") or body.get("error") or "")


def answer_table(answer: Answer, pipeline: str) -> Table:
    table = Table(
        title=f"{short(answer.revision)} · pipeline {pipeline}",
        title_style="bold",
        caption=f"GET {answer.path} → {answer.status}",
        box=None,
        pad_edge=False,
    )
    for column, justify in (("#", "right"), ("title", "left"), ("genre", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("score", justify="right")
    body = answer.body
    for rank, (title, genre, score) in enumerate(
        zip(body.get("title", []), body.get("main_genre", []), body.get("score", []), strict=False),
        1,
    ):
        table.add_row(str(rank), title, genre, f"{score:.2f}")
    return table


def requests(server: Server, versions: dict[str, str], count: int, user: int) -> Answer:
    """Send the requests and show them; returns the v2 answer whose log is shown next."""
    host = f"{SERVICE}.localhost:{server.router_port}"
    path = "/recs/for_user?user_id={}"
    console.print(
        f"{count} requests: GET {server.service_url()}{path.format('N')} for users N = "
        f"{user}..{user + count - 1} (the router splits them)"
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("user", "served by (Sos-Revision)", "pipeline", "HTTP", "ms"):
        table.add_column(column, justify="right" if column in ("user", "ms") else "left")
    table.add_column("top picks", no_wrap=True, overflow="ellipsis")
    served: Counter[str] = Counter()
    answers: list[Answer] = []
    with httpx.Client(base_url=server.router, timeout=60) as http:
        for n in range(user, user + count):
            answer = ask(http, host, path.format(n))
            answers.append(answer)
            served[answer.revision] += 1
            pipeline = versions.get(answer.revision, "?")
            style = "magenta" if pipeline == "v2" else ""
            table.add_row(
                str(n),
                Text(answer.revision, style=style),
                Text(pipeline, style=style),
                str(answer.status),
                f"{answer.ms:.0f}",
                titles(answer.body),
            )
        console.print(table)
        seen = "  ·  ".join(
            f"{short(rev)} served {k} of {count} ({100 * k / count:.0f}%)"
            for rev, k in sorted(served.items())
        )
        console.print(f"[bold]split seen:[/] {seen}   [dim](set: {SPLIT[0]}/{SPLIT[1]})[/]")
        failed = Counter(a.status for a in answers if a.status != 200)
        if failed:  # a demo that shows error pages has failed, whatever else it printed
            raise JobError(
                f"{sum(failed.values())} of {count} requests got no recommendations (HTTP "
                + ", ".join(f"{status} x{k}" for status, k in sorted(failed.items()))
                + f"); see `sos logs {SERVICE}` and {rel(server.log_path)}"
            )

        console.print()
        old = next(rev for rev, pipeline in versions.items() if pipeline == "v1")
        one = path.format(user)
        # the same user from each revision: /r/ names the old one, the tag URL the new one
        v1 = ask(http, f"127.0.0.1:{server.router_port}", f"/r/{old}{one}")
        v2 = ask(http, f"{TAG}-{SERVICE}.localhost:{server.router_port}", one)
    console.print(
        f"User {user}, from each revision: [cyan]{server.router}/r/{old}{one}[/] (one revision "
        f"by name) and [cyan]{server.service_url(f'{TAG}-{SERVICE}')}{one}[/] (the tag)"
    )
    console.print(
        Columns([answer_table(v1, versions.get(v1.revision, "?")), answer_table(v2, "v2")])
    )
    for answer in (v1, v2):
        if answer.status != 200:
            raise JobError(
                f"GET {answer.path} answered {answer.status}, not recommendations: "
                f"{titles(answer.body)}; see `sos logs {SERVICE}`"
            )
    return v2


def operator_log(client: Client, answer: Answer) -> None:
    """The service's own log lines of one request (one per operator), found by trace id."""
    console.print(
        f"The instance's JSON log lines with trace id {answer.trace_id} (request above, "
        f"served by {short(answer.revision)}):"
    )
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the service writes its log from a background thread
        lines = []
        for record in client.logs(SERVICE, answer.revision, tail=500):
            with contextlib.suppress(ValueError):
                line = json.loads(record.text)
                if isinstance(line, dict) and line.get("trace_id") == answer.trace_id:
                    lines.append(line)
        if any(line.get("logger") == "flight.serving.access" for line in lines):
            break
        time.sleep(0.3)
    if not lines:
        console.print("  [yellow]no log lines of that request yet; try `sos logs movielens`")
    for line in lines:
        logger = line.get("logger", "")
        style = "dim" if logger != "flight.engine" else ""
        where = line.get("operator") or ("summary" if logger == "flight.engine" else "access")
        console.print(Text.assemble("  ", (f"{where:<20}", "bold"), (line["message"], style)))


def where_to_look(server: Server, versions: dict[str, str], user: int) -> None:
    token_file = rel(server.data_dir / "admin-token")
    explore = f"/explorer/?a=recommend_v1&b=recommend_v2&ctx.user_id={user}"
    old, new = (int(short(rev)) for rev in versions)
    console.print()
    console.print(Rule("[bold green]Where to look", align="left", style="green"))
    rows = [
        ("Web UI", f"{server.url}/ui/", f"sign in with the admin token: cat {token_file}"),
        ("Explorer", f"{server.service_url()}{explore}", "v1 and v2 side by side, step by step"),
        (
            "",
            f"{server.router}/s/{SERVICE}{explore}",
            "the same, where *.localhost does not resolve",
        ),
        ("API docs", f"{server.url}/api/v1/docs", ""),
        ("Logs", rel(server.log_path), f"and {rel(server.data_dir)}/runtime/logs/{SERVICE}/"),
    ]
    for label, where, note in rows:
        console.print(
            Text.assemble((f"{label:<10}", "bold"), (where, "cyan"), ("  " + note, "dim"))
        )
    console.print(Text("Try", style="bold"))
    for line in (
        f"source .venv/bin/activate; export SOS_URL={server.url} SOS_TOKEN=$(cat {token_file})",
        f"sos traffic {SERVICE} {old}=50 {new}=50    # move traffic",
        f"sos rollback {SERVICE}                # back to {SPLIT[0]}/{SPLIT[1]} in one step",
        f"sos revisions {SERVICE}; sos history {SERVICE}",
        f"curl -H 'Sos-Tag: {TAG}' '{server.router}/s/{SERVICE}/recs/for_user?user_id={user}'",
        f"sos logs {SERVICE} --follow",
    ):
        console.print(Text("  " + line, style="cyan"))


# --------------------------------------------------------------------------- main


def data_location() -> Path:
    env = os.environ.get("MOVIELENS_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "data" / "movielens-small").resolve()


def tour(server: Server, args: argparse.Namespace) -> None:
    with Client(server.url, server.token) as client:
        services = {s.name: s for s in client.list_services()}
        if SERVICE in services:
            n = len(client.list_revisions(SERVICE))
            console.print(
                f"  picked up the last run: service {SERVICE} with {n} revision{'s' * (n != 1)}"
            )

        started = step(2, "Build the recommender and push it to the server")
        artifact_version = build_and_push(server, client)
        done("the artifact is on the server", started)

        started = step(3, "Deploy it: a revision serving pipeline v1")
        first = deploy(server, client, "v1", artifact_version)
        done(f"revision {short(first.id or '')} is ready", started)

        started = step(4, "Deploy the same artifact again, serving v2 (MOVIELENS_VERSION=v2)")
        second = deploy(server, client, "v2", artifact_version)
        done(f"revision {short(second.id or '')} is ready", started)

        started = step(5, f"Split traffic {SPLIT[0]}/{SPLIT[1]}, tag the new revision {TAG!r}")
        split_traffic(server, client, first, second)
        done("traffic is split", started)

        assert first.id and second.id
        versions = {first.id: "v1", second.id: "v2"}
        started = step(6, "Ask for recommendations through the router")
        v2_answer = requests(server, versions, args.requests, args.user)
        done("answered", started)

        started = step(7, "What each operator did in one request (sos logs)")
        command(["sos", "logs", SERVICE, "--revision", str(int(short(second.id)))])
        operator_log(client, v2_answer)
        done("logged", started)
        where_to_look(server, versions, args.user)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/main", description=__doc__.split("\n")[0])
    parser.add_argument("--fresh", action="store_true", help="delete .sos-data/ first")
    parser.add_argument("--exit", action="store_true", help="stop after the tour")
    parser.add_argument("--requests", type=int, default=20, help="how many requests (20)")
    parser.add_argument("--user", type=int, default=int(os.environ.get("MOVIELENS_USER", "1")))
    return parser.parse_args(argv)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the job cleanly, even when started with SIGINT ignored (a
    background job of a script)."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    began = float(os.environ.get("MAIN_STARTED") or time.time())
    data_dir = Path(os.environ.get("SOS_DATA_DIR") or REPO / ".sos-data").resolve()
    console.print(
        Panel(
            "Build the MovieLens recommender, deploy two revisions, split traffic, "
            "ask it for movies.",
            title="[bold]Flight + SOS: the main job",
            title_align="left",
            border_style="cyan",
        ),
        soft_wrap=False,
    )
    data = data_location()
    if not (data / "ratings.csv").is_file():
        console.print(
            f"[red]error:[/] the MovieLens data is not in {data}: set MOVIELENS_DIR to the "
            "folder of ml-latest-small (movies.csv, ratings.csv); see examples/movielens/README.md"
        )
        return 1
    os.environ["MOVIELENS_DIR"] = str(data)
    if args.fresh and data_dir.exists():
        console.print(f"--fresh: deleting {rel(data_dir)}/")
        shutil.rmtree(data_dir)
    server: Server | None = None
    with signals_as_interrupt():
        try:
            started = step(1, "Start SOS: the API server and the local runtime")
            server = start_server(data_dir)
            done(
                f"API {server.url} · services {server.service_url('NAME')} · state in "
                f"{rel(data_dir)}/",
                started,
            )
            tour(server, args)
            took = time.time() - began
            if args.exit:
                console.print(f"[bold green]Done[/] in {took:.0f} s; stopping (--exit).")
                return 0
            console.print(
                f"[bold green]Ready[/] in {took:.0f} s. Serving until [bold]Ctrl-C[/] "
                f"(server log: {rel(server.log_path)})."
            )
            while server.process.poll() is None:
                time.sleep(0.5)
            console.print(f"[red]sos server exited ({server.process.returncode}); see its log")
            return 1
        except KeyboardInterrupt:
            console.print()
            console.print("stopping (Ctrl-C)")
            return 130 if server is None else 0
        except (JobError, SOSError, httpx.HTTPError) as exc:
            message = exc.message if isinstance(exc, SOSError) else str(exc)
            console.print(f"[red]error:[/] {message}")
            return 1
        finally:
            if server is not None:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: still stop
                with console.status("stopping sos server and its instances ..."):
                    server.stop()
                console.print(
                    f"stopped sos server and its instances; state kept in {rel(data_dir)}/ "
                    "(scripts/main again picks it up; scripts/main --fresh starts over)"
                )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
