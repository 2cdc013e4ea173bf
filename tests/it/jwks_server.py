"""A scriptable HTTP server standing in for a JWKS endpoint or an OIDC issuer.

Started by tests/it/remote.rs as `python3 jwks_server.py --dir DIR`; stdlib
only. It listens on 127.0.0.1 with an ephemeral port and writes that port to
DIR/port (tmp file then rename, so a reader never sees half a number).

Every request re-reads DIR/routes.json, so a test changes the server's
behaviour by replacing that file (also tmp + rename). It maps a path to a
route:

    {"/keys": {"status": 200, "body": "...", "headers": {"Cache-Control": "max-age=1"},
               "delay_ms": 0, "etag": "\"v1\""}}

All members are optional (status 200, empty body). With `"chunked": true`
the body is sent with chunked transfer encoding (no Content-Length, so a
size cap must be enforced while reading). `delay_ms` sleeps before
answering (a large value simulates a hanging server). With `etag`, a request
whose If-None-Match equals it gets 304 with no body; any other gets the ETag
header with its answer. An unknown path is 404; a missing or unreadable
routes.json is 503.

Each request is appended to DIR/requests.log as one JSON line when it
arrives (before any delay): {"path": ..., "if_none_match": ... or null,
"status": the status it is answered with}.

The server exits when its standard input closes or on SIGTERM.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def write_atomically(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "jwks-test-server"

    def do_GET(self):
        route = self.route()
        status = route.get("status", 200)
        body = route.get("body", "").encode()
        headers = dict(route.get("headers", {}))
        etag = route.get("etag")
        if_none_match = self.headers.get("If-None-Match")
        if etag is not None:
            headers["ETag"] = etag
            if if_none_match == etag:
                status, body = 304, b""
        # Logged on arrival, so a test sees a hanging request as it starts.
        self.server.log_request_line(self.path, if_none_match, status)
        time.sleep(route.get("delay_ms", 0) / 1000)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        chunked = route.get("chunked", False) and status != 304
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not chunked:
            self.wfile.write(body)
            return
        for start in range(0, len(body), 1024):
            piece = body[start:start + 1024]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def route(self):
        """The route for this path, read fresh from routes.json."""
        try:
            with open(os.path.join(self.server.dir, "routes.json")) as f:
                routes = json.load(f)
        except (OSError, ValueError):
            return {"status": 503}
        return routes.get(self.path, {"status": 404})

    def log_message(self, *args):
        pass  # requests.log is the record; keep the test output clean


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory):
        super().__init__(("127.0.0.1", 0), Handler)
        self.dir = directory
        self.log_lock = threading.Lock()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
        # A client that gave up (a fetch timeout) is expected: stay quiet.

    def log_request_line(self, path, if_none_match, status):
        line = json.dumps({"path": path, "if_none_match": if_none_match, "status": status})
        with self.log_lock, open(os.path.join(self.dir, "requests.log"), "a") as f:
            f.write(line + "\n")
            f.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="directory of routes.json, port, requests.log")
    args = parser.parse_args()
    server = Server(args.dir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    write_atomically(os.path.join(args.dir, "port"), str(server.server_address[1]))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stdin.read()  # returns at EOF: the test closed our stdin or died


if __name__ == "__main__":
    main()
