"""A standard-library HTTP server that takes its port on the command line."""

import argparse
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"tick\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    host = os.environ.get("HOST", "127.0.0.1")
    ThreadingHTTPServer((host, args.port), Handler).serve_forever()


main()
