"""A small HTTP app for the local runtime tests, stdlib only, started like an artifact.

It honours the start contract (PORT, HOST, SOS_REVISION) and offers a few paths that
let tests make it misbehave: ``/slow?ms=N``, ``/crash``, ``/sick`` (liveness fails from
then on), ``/alloc?mb=N``, ``/env``, ``/stream`` (a chunked answer), and echoes POST bodies.
The env var ``HELLO_FAIL`` makes it exit at start-up (``HELLO_RAISE``: with a traceback
and noise after it); ``HELLO_PORT_TAKEN_ONCE=FILE`` makes its first start fail as if its
port had been taken; ``HELLO_START_DELAY`` delays its listening socket;
``HELLO_LOAD_MB=N`` makes it hold N MiB from its start on (a model it loads; past its
memory limit: a MemoryError at start-up); ``HELLO_NEVER_READY`` makes ``/ready`` answer 503
forever; ``HELLO_FAIL_PATH=/x`` makes
that path answer 500 (a bug only some requests meet). For shadow traffic:
``HELLO_ITEMS=a,b,c`` makes ``/recs`` answer Flight-shaped JSON
(``{"items": [{"item_id": "a"}, ...]}``), ``HELLO_DELAY_MS=N`` delays every answer of
``/recs`` and ``HELLO_STATUS=500`` makes ``/recs`` answer that status.
"""

import json
import os
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

REVISION = os.environ.get("SOS_REVISION", "?")
STATE = {"sick": False}
#: what it holds for good (``HELLO_LOAD_MB``)
LOADED: list[bytearray] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write("access %s\n" % (format % args))

    def _send(
        self, code: int, body: bytes, ctype: str = "text/plain", one_write: bool = False
    ) -> None:
        """``one_write``: the head and the body in one write (one segment), as most app
        servers send a small answer (two writes can meet Nagle and delayed ACKs on a
        forwarded network: a 40 ms stall that is no proxy's doing)."""
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if one_write and self.command != "HEAD":
            self._headers_buffer.append(b"\r\n" + body)  # end_headers' blank line, the body
            self.wfile.write(b"".join(self._headers_buffer))
            self._headers_buffer = []
            return
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == os.environ.get("HELLO_FAIL_PATH"):
            self._send(500, f"bug in {REVISION}\n".encode())
        elif url.path == "/recs":
            time.sleep(int(os.environ.get("HELLO_DELAY_MS", "0")) / 1000)
            items = [i for i in os.environ.get("HELLO_ITEMS", "").split(",") if i]
            body = json.dumps({"items": [{"item_id": i} for i in items], "by": REVISION})
            code = int(os.environ.get("HELLO_STATUS", "200"))
            self._send(code, body.encode(), "application/json", one_write=True)
        elif url.path == "/ready":
            never = os.environ.get("HELLO_NEVER_READY")
            self._send(503 if never else 200, b"not ready\n" if never else b"ready\n")
        elif url.path == "/live":
            self._send(500 if STATE["sick"] else 200, b"sick\n" if STATE["sick"] else b"ok\n")
        elif url.path == "/sick":
            STATE["sick"] = True
            self._send(200, b"now sick\n")
        elif url.path == "/crash":
            self._send(200, b"bye\n")
            self.wfile.flush()
            os._exit(3)
        elif url.path == "/slow":
            time.sleep(int(query.get("ms", ["100"])[0]) / 1000)
            self._send(200, f"slow {REVISION}\n".encode())
        elif url.path == "/alloc":
            try:
                block = bytearray(int(query.get("mb", ["1"])[0]) * 2**20)
                self._send(200, f"allocated {len(block) // 2**20} MiB\n".encode())
            except MemoryError:
                self._send(500, b"MemoryError\n")
        elif url.path == "/env":
            self._send(200, json.dumps(dict(os.environ)).encode(), "application/json")
        elif url.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                data = f"part {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")
        else:
            body = f"hello from {REVISION} path={self.path} host={self.headers.get('Host')}\n"
            self._send(200, body.encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        self._send(200, b"echo " + data)


def main() -> None:
    print(f"hello {REVISION} starting", flush=True)
    marker = os.environ.get("HELLO_PORT_TAKEN_ONCE")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        print("OSError: [Errno 98] Address already in use", file=sys.stderr, flush=True)
        sys.exit(1)
    if os.environ.get("HELLO_RAISE"):  # a traceback, then boot noise (as gunicorn prints)
        try:
            raise FileNotFoundError(os.environ["HELLO_RAISE"])
        except FileNotFoundError:
            traceback.print_exc()
        for i in range(12):
            print(f"[INFO] worker {i} exiting (pid: {os.getpid()})", file=sys.stderr)
        sys.exit(3)
    if os.environ.get("HELLO_FAIL"):
        print(f"failing on purpose: {os.environ['HELLO_FAIL']}", file=sys.stderr, flush=True)
        sys.exit(2)
    LOADED.append(bytearray(int(os.environ.get("HELLO_LOAD_MB", "0")) * 2**20))
    time.sleep(float(os.environ.get("HELLO_START_DELAY", "0")))
    server = ThreadingHTTPServer(
        (os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler
    )
    server.daemon_threads = True
    print(f"hello {REVISION} listening on {server.server_address[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


main()
