"""Start a server command on a free port, GET one path when it answers, print the answer
as JSON, stop the server. Used by the build tests (possibly inside a network namespace)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", default="/")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + args.timeout
    status, body = 0, ""
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{args.path}", timeout=5) as r:
                    status, body = r.status, r.read().decode("utf-8", "replace")
                    break
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read().decode("utf-8", "replace")
                break
            except OSError:
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        output = proc.stdout.read().decode("utf-8", "replace") if proc.stdout else ""
    print(json.dumps({"status": status, "body": body, "output": output[-4000:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
