#!/usr/bin/env python3
"""Resource-exhaustion attacker for benches/exhaust.sh (see there).

    exhaust.py SCENARIO PID DIR ADMIN_PORT

Runs one attack against the jwtd whose pid is PID (sockets in DIR: jwtd.sock,
http.sock, grpc.sock; admin on 127.0.0.1:ADMIN_PORT), holds it, and prints one
line: scenario, RSS before / at the peak of the attack (MiB), connections
held, and whether a fresh client of each front was served during the attack.
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

scenario, pid, d, admin = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
HOLD = 5.0  # seconds the attack is held before measuring


def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def unix(path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(d, path))
    return s


def http_served():
    """A fresh HTTP front client gets an answer (401: no token)."""
    try:
        s = unix("http.sock")
        s.settimeout(5)
        s.sendall(b"GET /verify HTTP/1.0\r\n\r\n")
        return b" 401 " in s.recv(64)
    except OSError:
        return False


def native_served():
    jwtd = os.environ["JWTD"]
    r = subprocess.run([jwtd, "ping", "--socket", os.path.join(d, "jwtd.sock")],
                       capture_output=True, timeout=10)
    return r.returncode == 0


def admin_served():
    try:
        s = socket.create_connection(("127.0.0.1", admin), timeout=5)
        s.sendall(b"GET /livez HTTP/1.0\r\n\r\n")
        return b" 200 " in s.recv(64)
    except OSError:
        return False


# --- HTTP/2 by hand (enough for gRPC requests; no HPACK decoding) ---------

def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    # Literal header field without indexing, new name, no Huffman.
    def s(b):
        assert len(b) < 127
        return bytes([len(b)]) + b
    return b"\x00" + s(name) + s(value)


HEADERS = b"".join(literal(n, v) for n, v in [
    (b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"jwtd"),
    (b":path", b"/envoy.service.auth.v3.Authorization/Check"),
    (b"content-type", b"application/grpc"), (b"te", b"trailers"),
])


class H2:
    """One HTTP/2 connection; a reader thread tracks the connection's send
    window and which streams got response headers."""

    def __init__(self):
        self.s = unix("grpc.sock")
        self.s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
        self.window = 65535
        self.answered = set()
        self.cv = threading.Condition()
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        buf = b""
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 9:
                    n = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + n:
                        break
                    kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                    payload, buf = buf[9:9 + n], buf[9 + n:]
                    with self.cv:
                        if kind == 4 and not flags & 1:
                            self.s.sendall(frame(4, 1, 0, b""))
                        elif kind == 8 and stream == 0:
                            self.window += int.from_bytes(payload[:4], "big")
                        elif kind in (1, 3):  # HEADERS or RST_STREAM
                            self.answered.add(stream)
                        elif kind == 6 and not flags & 1:
                            self.s.sendall(frame(6, 1, 0, payload))
                        self.cv.notify_all()
        except OSError:
            return

    def stream(self, sid, announced, sent, end=False):
        """Opens stream `sid`: the gRPC prefix announcing `announced` bytes,
        then `sent` of them (respecting the connection window)."""
        self.s.sendall(frame(1, 4, sid, HEADERS))
        data = b"\x00" + struct.pack(">I", announced) + b"a" * sent
        while data:
            with self.cv:
                while self.window <= 0:
                    if not self.cv.wait(2):
                        return  # no credit: the server is not reading; hold
                n = min(len(data), self.window, 16384)
                self.window -= n
            chunk, data = data[:n], data[n:]
            self.s.sendall(frame(0, 1 if end and not data else 0, sid, chunk))


def grpc_served():
    """A fresh gRPC client gets an answer (an empty CheckRequest:
    INVALID_ARGUMENT, a decision)."""
    try:
        c = H2()
        c.stream(1, 0, 0, end=True)
        deadline = time.time() + 5
        with c.cv:
            while 1 not in c.answered and time.time() < deadline:
                c.cv.wait(0.1)
        return 1 in c.answered
    except OSError:
        return False


def served():
    return " ".join(f"{n}={'yes' if f() else 'NO'}" for n, f in [
        ("native", native_served), ("http", http_served), ("grpc", grpc_served), ("admin", admin_served)])


held = []
baseline = served()
before = rss_mib()
peak = before


def sample():
    global peak
    peak = max(peak, rss_mib())


if scenario == "http-headers":
    # 1,000 connections, each a request head just under max_header_bytes
    # (32 KiB), never finished: the most the HTTP front lets one hold.
    for i in range(1000):
        s = unix("http.sock")
        s.sendall(b"GET /verify HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 31000 + b"\r\n")
        held.append(s)
        if i % 100 == 0:
            sample()
elif scenario == "http-400k":
    # The attack: 1,000 connections each sending a ~400 KB head.
    for i in range(1000):
        s = unix("http.sock")
        s.setblocking(False)
        try:
            s.send(b"GET /verify HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 400000)
        except OSError:
            pass
        held.append(s)
        if i % 100 == 0:
            sample()
elif scenario == "grpc-1mb":
    # The attack: 400 streams (4 connections x 100) each announcing
    # a ~1 MB message and sending 10 KB of it, never finishing.
    conns = [H2() for _ in range(4)]
    for c in conns:
        for k in range(100):
            c.stream(1 + 2 * k, 1_000_000, 10_000)
    held.extend(conns)
elif scenario == "grpc-held":
    # The worst a client can hold: 20 connections x 100 streams, each a
    # message just under grpc_max_message_bytes, 60 KB sent, never finished.
    conns = [H2() for _ in range(20)]
    for c in conns:
        for k in range(100):
            c.stream(1 + 2 * k, 65_000, 60_000)
        sample()
    held.extend(conns)
elif scenario == "native-frames":
    # 1,024 connections (max_connections), each an unfinished maximum frame
    # (64 KiB announced, all but 536 bytes sent).
    for i in range(1024):
        s = unix("jwtd.sock")
        s.sendall(struct.pack(">I", 65536) + b"\x01" * 65000)
        held.append(s)
        if i % 100 == 0:
            sample()
elif scenario == "admin-conns":
    # 3,000 keep-alive connections to the admin listener.
    for i in range(3000):
        try:
            s = socket.create_connection(("127.0.0.1", admin), timeout=5)
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            held.append(s)
        except OSError:
            pass
        if i % 300 == 0:
            sample()
else:
    sys.exit(f"unknown scenario {scenario}")

end = time.time() + HOLD
while time.time() < end:
    sample()
    time.sleep(0.2)
during = served()
sample()
print(f"{scenario:14} served before: {baseline}")
print(f"{'':14} rss_before={before:.1f}MiB rss_peak={peak:.1f}MiB held={len(held)} served_during: {during}")
for s in held:
    try:
        (s.s if isinstance(s, H2) else s).close()
    except OSError:
        pass
time.sleep(1)
print(f"{'':14} after closing: rss={rss_mib():.1f}MiB served: {served()}")
