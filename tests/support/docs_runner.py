"""Run the code examples of a Markdown document as a user would, in a fresh copy of the
repository.

What runs (fenced blocks, in document order, in one session per document):

- ``bash``/``sh``: each block as a script (``set -euo pipefail``) in the session's folder and
  environment. A line that starts a server (``sos server``, ``flight serve``, optionally
  after ``cd DIR &&``) runs in the background, as in another terminal: the session waits
  until it listens, points ``SOS_URL``/``SOS_TOKEN`` at a ``sos server``, and stops it at the
  end of the document.
- ``python``: in one interpreter per document, blocks sharing their names, like a notebook;
  top-level ``await`` works.
- ``json``, ``yaml``, ``toml``: data; they must parse.
- Blocks without a language, or ``text``, are not code.

Well-known ports (8700, 8080, 8000, 9000) in code are replaced by free ones, so examples
show the ports users type and tests never assume a port is free. ``HOME`` is the session's
own (fresh ``~/.local/share/sos``, ``~/.config/sos``); build and pip caches are shared.

HTML comments just before a block steer it (several may be stacked)::

    <!-- doctest: skip REASON -->      not run; the reason says why (it is required)
    <!-- doctest: file PATH -->        also write the block to PATH (session folder)
    <!-- doctest: cwd DIR -->          run this and the following blocks in DIR
    <!-- doctest: before               bash run before the block (may span lines)
    COMMANDS -->
    <!-- doctest: after COMMANDS -->   bash run after the block
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from processes import interrupt

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PORTS = (8700, 8080, 8000, 9000)
RUN = {"bash", "sh", "python"}
DATA = {"json", "yaml", "toml"}
NOT_CODE = {"", "text"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*doctest:\s*(?P<name>[a-z]+)\s?(?P<rest>.*)$")
_SERVER = re.compile(
    r"^(?:cd\s+(?P<cd>\S+)\s*&&\s*)?(?P<cmd>(?:[A-Z_]+=\S+\s+)*(?:\S*/)?(?:sos\s+server|flight\s+serve)\b.*)$"
)


@dataclass
class Block:
    doc: str  # the document, as the repository names it
    line: int
    lang: str
    code: str
    directives: list[tuple[str, str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    def directive(self, name: str) -> str | None:
        return next((rest for n, rest in self.directives if n == name), None)


def blocks(doc: Path, root: Path = REPO) -> list[Block]:
    """The fenced blocks of ``doc`` (in the repository at ``root``) with the directives
    written just before each."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    name = str(doc.relative_to(root))
    found: list[Block] = []
    pending: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        directive = _DIRECTIVE.match(lines[i])
        if directive:
            rest = directive["rest"]
            while "-->" not in rest and i + 1 < len(lines):
                i += 1
                rest += "\n" + lines[i]
            pending.append((directive["name"], rest.split("-->")[0].strip()))
            i += 1
            continue
        fence = _FENCE.match(lines[i])
        if fence:
            indent, start = fence["indent"], i
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != fence["fence"]:
                line = lines[i]
                body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
                i += 1
            lang = (fence["info"].split() or [""])[0].lower()
            lang = {"sh": "bash", "shell": "bash", "py": "python", "yml": "yaml"}.get(lang, lang)
            found.append(Block(name, start + 1, lang, "\n".join(body) + "\n", pending))
            pending = []
        elif lines[i].strip():
            pending = []
        i += 1
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scratch_copy(target: Path) -> Path:
    """The repository's files (tracked, and new ones git does not ignore) copied to
    ``target``, as a fresh clone would have them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = REPO / name.decode()
        if source.is_file():
            dest = target / name.decode()
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
    (target / ".venv").symlink_to(
        VENV_BIN.parent
    )  # the installed platform, as scripts/setup made it
    return target


class DocError(AssertionError):
    """A code example failed; the message says which, and what it printed."""


@dataclass
class Server:
    process: subprocess.Popen[str]
    lines: list[str]
    command: str

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, seconds: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise DocError(f"`{self.command}` did not start ({pattern!r}):\n{self.output[-3000:]}")

    def stop(self) -> None:
        interrupt(self.process, 30, group=True)


class Session:
    """One document's run: its folder, environment, servers and Python interpreter."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.cwd = root
        self.ports = {port: free_port() for port in PORTS}
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        drop = ("VIRTUAL_ENV", "SOS_URL", "SOS_TOKEN", "SOS_CONFIG", "SOS_DATA_DIR", "SOS_HOME")
        self.env = {k: v for k, v in os.environ.items() if k not in drop and k != "PORT"}
        self.env.update(
            HOME=str(home),
            PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            SOS_CACHE_DIR=os.environ.get("SOS_CACHE_DIR") or str(cache / "sos"),
            PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR") or str(cache / "pip"),
            SOS_PORT=str(self.ports[8700]),
            SOS_ROUTER_PORT=str(self.ports[8080]),
            COLUMNS="120",
            NO_COLOR="1",
            MOVIELENS_DIR=os.environ.get("MOVIELENS_DIR")
            or str((REPO.parent / "shared" / "data" / "movielens-small").resolve()),
        )
        self.env.pop("XDG_DATA_HOME", None)
        self.env.pop("XDG_CONFIG_HOME", None)
        self.servers: list[Server] = []
        self.python: subprocess.Popen[str] | None = None
        self.transcript: list[str] = []

    # ---- the pieces

    def ported(self, code: str) -> str:
        return re.sub(
            r"(?<![\d.])(8700|8080|8000|9000)(?!\d)", lambda m: str(self.ports[int(m[1])]), code
        )

    def bash(self, script: str, where: str) -> str:
        done = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        out = done.stdout + done.stderr
        self.transcript.append(f"$ {script.strip()}\n{out}")
        if done.returncode != 0:
            raise DocError(
                f"{where}: exit code {done.returncode}\n$ {script.strip()}\n{out[-4000:]}"
            )
        return out

    def start_server(self, line: str, where: str) -> None:
        found = _SERVER.match(line.strip())
        assert found is not None
        cwd = self.cwd / found["cd"] if found["cd"] else self.cwd
        process = subprocess.Popen(
            ["bash", "-c", "exec " + found["cmd"]],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        server = Server(process, [], line.strip())
        threading.Thread(
            target=lambda: server.lines.extend(process.stdout or []), daemon=True
        ).start()
        self.servers.append(server)
        if re.search(r"\bsos\s+server\b", found["cmd"]):
            url = server.wait_for(r"listening on (http://\S+)")[1]
            if "--backend" not in line or "local" in line:
                server.wait_for(r"router listening on")
            self.env["SOS_URL"] = url
            token = re.search(r"admin token: in (\S+)", server.output)
            if token:
                self.env["SOS_TOKEN"] = Path(token[1]).read_text().strip()
        else:
            server.wait_for(r"running on http://")
        self.transcript.append(f"$ {line.strip()}   (in the background)\n")

    def run_bash_block(self, code: str, where: str) -> None:
        chunk: list[str] = []
        for line in re.sub(r"\\\n\s*", " ", code).splitlines():
            if _SERVER.match(line.strip()):
                if chunk:
                    self.bash("\n".join(chunk), where)
                    chunk = []
                self.start_server(line, where)
            else:
                chunk.append(line)
        if any(line.strip() and not line.strip().startswith("#") for line in chunk):
            self.bash("\n".join(chunk), where)

    def run_python(self, code: str, where: str) -> None:
        if self.python is None:
            self.python = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("docs_python.py"))],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        assert self.python.stdin is not None and self.python.stdout is not None
        message = {"code": code, "name": where, "env": self.env, "cwd": str(self.cwd)}
        self.python.stdin.write(json.dumps(message) + "\n")
        self.python.stdin.flush()
        printed: list[str] = []
        for line in self.python.stdout:
            if line.startswith("\0doctest "):
                result = json.loads(line[len("\0doctest ") :])
                self.transcript.append(f">>> {where}\n{''.join(printed)}")
                if not result["ok"]:
                    raise DocError(
                        f"{where}: the Python example failed\n{''.join(printed)}{result['error']}"
                    )
                return
            printed.append(line)
        raise DocError(f"{where}: the Python interpreter ended\n{''.join(printed)[-3000:]}")

    # ---- a whole block

    def run(self, block: Block) -> str:
        """Run one block; what happened, for the report."""
        for name, rest in block.directives:
            if name == "cwd":
                self.cwd = self.root / rest
        if block.directive("skip") is not None:
            return "skipped: " + block.directive("skip")  # type: ignore[operator]
        code = self.ported(block.code)
        path = block.directive("file")
        if path:
            target = self.cwd / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code)
        before = block.directive("before")
        if before:
            self.run_bash_block(self.ported(before), block.where + " (before)")
        if block.lang == "bash":
            self.run_bash_block(code, block.where)
        elif block.lang == "python":
            self.run_python(code, block.where)
        elif block.lang in DATA:
            parse = {"json": json.loads, "yaml": yaml.safe_load, "toml": tomllib.loads}
            try:
                parse[block.lang](block.code)
            except ValueError as exc:
                raise DocError(f"{block.where}: the {block.lang} does not parse: {exc}") from None
        after = block.directive("after")
        if after:
            self.run_bash_block(self.ported(after), block.where + " (after)")
        return "ran" if block.lang in RUN else "parsed"

    def close(self) -> None:
        if self.python is not None:
            self.python.kill()
            self.python.wait()
        for server in reversed(self.servers):
            server.stop()
