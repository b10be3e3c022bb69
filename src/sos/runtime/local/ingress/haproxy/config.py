"""HAProxy's configuration and routing map (pure text): one frontend on the inherited
listening socket, the Python router as the default backend, the slot backends, and the
map that names the slot of every host, label, tag and revision."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sos.runtime.local.ingress.haproxy.plan import SPLIT

__all__ = ["DOWN_TEXT", "Server", "down_map", "map_text", "render_config", "safe_entries"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Server:
    """A server as HAProxy knows it: name, address and weight, and its revision."""

    name: str
    address: str
    weight: int
    revision: str = ""


def address(host: str, port: int) -> str:
    return f"ipv6@[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(
    *,
    socket_path: Path,
    down_map: Path,
    listen_fd: int,
    python_port: int,
    map_file: Path,
    request_timeout: float,
    threads: int,
    slots: Mapping[str, Sequence[Server]],
    sticky: Sequence[tuple[str, str]] = (),
) -> str:
    """HAProxy's configuration: one frontend on the inherited listening socket, the
    Python router as the default backend, and the slot backends (``r*`` roundrobin, for
    splits; ``l*`` leastconn, for one revision) with the servers they hold now.

    ``down_map`` names the Python router's servers (``python``, activators ``_a*``): a
    refused connection to one means the server is down, and the 503 says so.

    ``sticky``: the (source, name) keys of sticky splits; the map's ``{service}+`` names
    the one a service reads (``k{index}``), and ``{service}+{percentile}`` the slot of the
    revision that a key's bucket (``crc32,mod(10000)``, as ``sos.traffic.bucket``) falls in."""
    timeout = max(1, round(request_timeout * 1000))
    mapping = f"map({map_file})"
    lines = [
        "global",
        f"  nbthread {threads}",
        # expose-fd: a restarted server takes the listening socket from this process
        f"  stats socket {socket_path} mode 600 level admin expose-fd listeners",
        "  stats timeout 24h",
        f"  hard-stop-after {max(60, round(request_timeout) + 10)}s",
        "  log ring@sos local0",
        "ring sos",
        "  description sos-requests",
        "  format raw",
        "  maxlen 512",
        "  size 8388608",
        "defaults",
        "  mode http",
        "  log global",
        "  option dontlognull",
        '  log-format "%[var(txn.route)] %s %ST %Ta %tsc"',
        "  timeout connect 5s",
        f"  timeout client {timeout}ms",
        "  timeout http-request 10s",  # a request's headers arrive in 10 s or it is cut off
        f"  timeout http-keep-alive {timeout}ms",
        f"  timeout server {timeout}ms",
        "  timeout tunnel 1h",
        "  option forwardfor",
        "  option abortonclose",
        # a reload leaves clients' idle keep-alive connections open: the next request on
        # one is answered (Connection: close) instead of finding the connection closed
        "  option idle-close-on-response",
        "  retries 2",
        "  option redispatch 1",
        "  retry-on conn-failure empty-response",
        '  http-error status 502 content-type "text/plain; charset=utf-8" lf-string '
        '"instance %[srv_name] closed the connection or answered bad HTTP"',
        '  http-error status 503 content-type "text/plain; charset=utf-8" lf-string '
        f'"%[srv_name,map_reg({down_map},instance)] %[srv_name] refused the connection"',
        '  http-error status 504 content-type "text/plain; charset=utf-8" lf-string '
        f'"instance %[srv_name] did not answer within {request_timeout:g}s"',
        "frontend sos",
        f"  bind fd@{listen_fd}",
        "  http-request set-header X-Forwarded-Host %[req.hdr(host)] if { req.hdr(host) -m found }",
        "  http-request set-header X-Forwarded-Proto http "
        "unless { req.hdr(x-forwarded-proto) -m found }",
        "  http-request disable-l7-retry "
        "unless METH_GET or METH_HEAD or METH_OPTIONS or { method PUT DELETE TRACE }",
        # 1. Host: {label}.{domain}
        f"  http-request set-var(txn.route) req.hdr(host),field(1,:),lower,{mapping}",
        # 2. /s/{label}/... (the prefix goes), 3. /r/{revision}/...
        f"  http-request set-var(txn.spath) path,field(3,/),concat(/),{mapping} "
        "if !{ var(txn.route) -m found } { path_beg /s/ }",
        "  http-request set-var(txn.route) var(txn.spath) if { var(txn.spath) -m found }",
        f"  http-request set-var(txn.rpath) path,field(3,/),concat(@),{mapping} "
        "if !{ var(txn.route) -m found } { path_beg /r/ }",
        "  http-request set-var(txn.route) var(txn.rpath) if { var(txn.rpath) -m found }",
        # 4. Sos-Tag: the service's tagged revision, or the Python router's 404
        "  http-request set-var(txn.tag) req.hdr(sos-tag),lower if { req.hdr(sos-tag) -m found }"
        " { var(txn.route) -m found } !{ var(txn.rpath) -m found }",
        "  http-request set-var(txn.svc) var(txn.route),field(2,/) if { var(txn.tag) -m found }",
        f"  http-request set-var(txn.tagged) var(txn.svc),concat(@,txn.tag),{mapping} "
        "if { var(txn.tag) -m found }",
        "  http-request set-var(txn.route) var(txn.tagged) if { var(txn.tagged) -m found }",
        "  http-request unset-var(txn.route) "
        "if { var(txn.tag) -m found } !{ var(txn.tagged) -m found }",
        *_sticky_lines(mapping, sticky),
        "  http-request set-path %[path,regsub(^/s/[^/]*/?,/)] "
        "if { var(txn.spath) -m found } { var(txn.route) -m found }",
        "  http-request set-path %[path,regsub(^/r/[^/]*/?,/)] if { var(txn.rpath) -m found }",
        # every answer names its revision; a refused connection is a 502, as in Python
        f"  http-after-response set-var(txn.rev) srv_name,concat(!),{mapping}",
        "  http-after-response set-header Sos-Revision %[var(txn.rev)] "
        "if { var(txn.rev) -m found }",
        "  http-after-response set-status 502 "
        "if { status 503 } { srv_name -m found } !{ var(txn.app) -m found } "
        f"!{{ srv_name,map_reg({down_map}) -m found }}",
        "  use_backend %[var(txn.route),field(1,/)] if { var(txn.route) -m found }",
        "  default_backend python",
        "backend python",
        "  http-response set-var(txn.app) bool(true)",
        f"  server python 127.0.0.1:{python_port}",
    ]
    for name, servers in slots.items():
        lines += [
            f"backend {name}",
            f"  balance {'roundrobin' if name.startswith(SPLIT) else 'leastconn'}",
            "  http-response set-var(txn.app) bool(true)",
        ]
        lines += [f"  server {s.name} {s.address} weight {s.weight}" for s in servers]
    return "\n".join(lines) + "\n"


#: HAProxy's fetch of each sticky key source, as ``sos.runtime.local.ingress.sticky_key``
#: reads it: a header's full last value, a query parameter's raw first value (ending at
#: ``&`` or ``;``), a cookie's last value
FETCHES = {"header": "req.fhdr({})", "query": "url_param({})", "cookie": "req.cook({})"}


def _sticky_lines(mapping: str, sticky: Sequence[tuple[str, str]]) -> list[str]:
    """A split route's revision by its sticky key, when the request carries one."""
    if not sticky:
        return []
    lines = [
        f"  http-request set-var(txn.sk) var(txn.route),field(2,/),concat(+),{mapping} "
        "if { var(txn.route),field(1,/) -m beg r }"
    ]
    for index, (source, name) in enumerate(sticky):
        fetch = FETCHES[source].format(name)
        lines.append(
            f"  http-request set-var(txn.skey) {fetch} if {{ var(txn.sk) -m str k{index} }}"
        )
    lines += [
        "  http-request set-var(txn.pct) var(txn.skey),crc32,mod(10000),div(100) "
        "if { var(txn.skey) -m len 1: }",
        f"  http-request set-var(txn.sticky) var(txn.route),field(2,/),concat(+,txn.pct),"
        f"{mapping} if {{ var(txn.pct) -m found }}",
        "  http-request set-var(txn.route) var(txn.sticky) if { var(txn.sticky) -m found }",
    ]
    return lines


#: the start of HAProxy's 503 when the Python router (the server) refuses a connection
DOWN_TEXT = (
    "sos server (the control plane) is down and is being restarted; retry shortly. "
    "Services with running instances still answer;"
)


#: what a key or value of the routing map may hold: host names, paths, slot, service, tag
#: and instance names; never a space or a line break, which would split an entry in two
MAP_TOKEN = re.compile(r"[A-Za-z0-9._:/!@%+-]{1,253}")


def safe_entries(entries: Mapping[str, str]) -> dict[str, str]:
    """``entries`` without any that HAProxy could misread (each one logged): a bad entry
    is never sent, so it cannot break another tenant's routes (names are checked long
    before they get here; this is the last line)."""
    safe: dict[str, str] = {}
    for key, value in entries.items():
        if MAP_TOKEN.fullmatch(key) and MAP_TOKEN.fullmatch(value):
            safe[key] = value
        else:
            log.error("HAProxy: routing entry %r -> %r is not safe to send; left out", key, value)
    return safe


def map_text(entries: Mapping[str, str]) -> str:
    return "".join(f"{key} {value}\n" for key, value in sorted(safe_entries(entries).items()))


def down_map() -> str:
    """The map that names the Python router's servers in HAProxy (their refused
    connections mean the server is down) with the start of the 503's text."""
    return "".join(f"{pattern} {DOWN_TEXT}\n" for pattern in ("^python$", "^_a[0-9]+$"))
