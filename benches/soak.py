#!/usr/bin/env python3
"""The soak run behind benches/soak.sh (read its header first).

Runs one jwtd with its native socket and HTTP front, Redis revocation
(append-only, so a restart keeps the revocations) and a remote JWKS
(tests/it/jwks_server.py), for SECONDS under a steady mixed load while the
key set rotates every 30 s and Redis restarts once, sampling the daemon's
RSS and open fds every second and checking every reply against the verdict
expected at its time. Stdlib only; the load itself is `jwtd bench run`, one
process per kind of request and 10 s slice."""

import base64, json, os, signal, socket, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISS, AUD = "https://issuer.example.test/", "api://jwt-sidecar-bench"
SLICE = 10          # seconds: the load is relaunched per slice with that slice's token pool
ROTATION = 30       # seconds between rotations (publish, switch, retire: 10 s apart)
WARMUP = 60         # seconds of RSS not held to the flatness target

def main():
    secs, jwtd, work, logs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    assert secs >= 90 and secs % SLICE == 0, "SECONDS: at least 90, a multiple of 10"
    run = lambda *a, **k: subprocess.run([jwtd, *a], check=True, capture_output=True, text=True, **k).stdout
    slices = secs // SLICE
    pools = (slices + 2) // 3 + 1
    print(f"soak: {secs} s, {pools} signing keys, rotation every {ROTATION} s", file=sys.stderr)

    # Keys and tokens: pool i is signed by key ki; per pool, a small hot
    # set (cache hits), distinct tokens for misses, tokens to be revoked.
    jwks = []
    for i in range(pools):
        run("keygen", "--alg", "ES256", "--kid", f"k{i}", "--private", f"{work}/k{i}.pem", "--jwks-file", f"{work}/k{i}.json")
        jwks.append(json.load(open(f"{work}/k{i}.json"))["keys"][0])
        common = ["bench", "tokens", "--key", f"{work}/k{i}.pem", "--issuer", ISS, "--audience", AUD, "--ttl", "2h"]
        open(f"{work}/hot{i}.txt", "w").write(run(*common, "--count", "8"))
        open(f"{work}/miss{i}.txt", "w").write(run(*common, "--count", "12000"))
        open(f"{work}/revoked{i}.txt", "w").write(run(*common, "--count", "16"))
    run("keygen", "--alg", "ES256", "--kid", "stranger", "--private", f"{work}/stranger.pem", "--jwks-file", f"{work}/stranger.json")
    open(f"{work}/invalid.txt", "w").write(run("bench", "tokens", "--key", f"{work}/stranger.pem", "--issuer", ISS,
                                               "--audience", AUD, "--count", "64"))

    # Redis, append-only: a restart keeps what was revoked.
    redis_port = free_port()
    redis_cmd = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes", "--appendfsync", "always", "--dir", work, "--logfile", f"{logs}/redis.log"]
    redis = subprocess.Popen(redis_cmd)
    wait_tcp(redis_port)
    # The JWKS server: routes.json re-read on every request.
    jdir = f"{work}/jwks"
    os.makedirs(jdir)
    publish(jdir, [jwks[0], jwks[1]])
    jserver = subprocess.Popen([sys.executable, f"{ROOT}/tests/it/jwks_server.py", "--dir", jdir], stdin=subprocess.PIPE)
    while not os.path.exists(f"{jdir}/port"):
        time.sleep(0.05)
    jport = int(open(f"{jdir}/port").read())

    sock, http = f"{work}/jwtd.sock", f"{work}/http.sock"
    daemon = subprocess.Popen([jwtd, "serve", "--socket", sock, "--http-socket", http,
                               "--jwks-url", f"http://127.0.0.1:{jport}/jwks", "--issuer", ISS, "--audience", AUD,
                               "--redis", f"redis://127.0.0.1:{redis_port}", "--unknown-kid-cooldown", "5s",
                               "--refresh-min", "1s", "--log", "warn",
                               # A cache that fills within the warm-up (400 new
                               # tokens/s): the steady state is a full cache.
                               "--cache-entries", "20000"],
                              stdout=open(f"{logs}/jwtd.log", "w"), stderr=subprocess.STDOUT)
    for path in (sock, http):
        while not os.path.exists(path):
            time.sleep(0.05)
    time.sleep(1)
    # Revoke every pool's revoked tokens now, through the daemon (into Redis).
    for i in range(pools):
        for token in open(f"{work}/revoked{i}.txt").read().split():
            run("revoke", "--socket", sock, "--token", token)

    samples, stop = [], threading.Event()
    def sample():
        t0 = time.time()
        while not stop.is_set():
            try:
                rss = int(next(l for l in open(f"/proc/{daemon.pid}/status") if l.startswith("VmRSS")).split()[1])
                fds = len(os.listdir(f"/proc/{daemon.pid}/fd"))
                samples.append((round(time.time() - t0, 1), rss, fds))
            except (OSError, StopIteration):
                pass
            stop.wait(1.0)
    threading.Thread(target=sample, daemon=True).start()

    # A probe every 50 ms with a valid token of the current pool not sent
    # before by the probe (from the end of the list; the load goes from its
    # start): each needs a revocation lookup, so while Redis is down the
    # answers UNDECIDED measure the fail-closed window.
    probe_log, current = [], {"pool": 0}
    def probe():
        s, n = None, 0
        lists = {}
        while not stop.is_set():
            pool = current["pool"]
            if pool not in lists:
                lists[pool] = open(f"{work}/miss{pool}.txt").read().split()
            token = lists[pool].pop().encode()
            try:
                if s is None:
                    s = socket.socket(socket.AF_UNIX); s.connect(sock); s.settimeout(2)
                n += 1
                body = b"\x00" + token
                s.sendall(len(body + b"x" * 8).to_bytes(4, "big") + bytes([1, 1, 0, 0]) + n.to_bytes(4, "big") + body)
                head = recv_exact(s, 4)
                frame = recv_exact(s, int.from_bytes(head, "big"))
                probe_log.append((time.time(), frame[1]))   # status byte: 0 valid, 1 invalid, 2 undecided
            except OSError:
                s = None
                probe_log.append((time.time(), -1))
            stop.wait(0.05)
    threading.Thread(target=probe, daemon=True).start()

    # The load: per slice, one `bench run` per kind (rates sum to about half
    # of what this daemon answers on this machine; see soak.sh).
    kinds = [("native-hot", "hot", [], 60000), ("http-hot", "hot", ["--http"], 1500),
             ("native-miss", "miss", [], 800), ("http-miss", "miss", ["--http"], 100),
             ("native-invalid", "invalid", [], 500), ("native-revoked", "revoked", [], 200)]
    results = []
    start = time.time()
    redis_restart_at = (slices // 2) * SLICE
    for s in range(slices):
        t = s * SLICE
        pool = (s + 2) // 3
        current["pool"] = pool
        # The rotation: at 30i publish {ki, ki+1}; at 30i+10 the load uses
        # pool i+1; at 30i+20 ki is retired.
        if t % ROTATION == 0 and pool + 1 < pools:
            publish(jdir, [jwks[pool], jwks[pool + 1]])
        if t % ROTATION == 20:
            publish(jdir, [jwks[pool]])
        procs = []
        for name, what, extra, rate in kinds:
            tokens = f"{work}/invalid.txt" if what == "invalid" else f"{work}/{what}{pool}.txt"
            conns = "4" if "hot" in name else "2"
            procs.append((name, subprocess.Popen(
                [jwtd, "bench", "run", "--json", "--socket", http if "--http" in extra else sock, *extra,
                 "-c", conns, "--depth", "4", "--rate", str(rate), "-d", f"{SLICE - 1}s", "--warmup", "0s",
                 "--tokens", tokens], stdout=subprocess.PIPE, stderr=open(f"{logs}/bench.log", "a"), text=True)))
        if t == redis_restart_at:
            time.sleep(3)
            subprocess.run(["redis-cli", "-p", str(redis_port), "shutdown"], capture_output=True)
            redis.wait()
            down_at = time.time()
            time.sleep(2)
            redis = subprocess.Popen(redis_cmd)
            wait_tcp(redis_port)
            up_at = time.time()
        for name, p in procs:
            out, _ = p.communicate()
            try:
                r = json.loads(out)
            except ValueError:
                r = {"error": out[-300:], "rps": 0, "valid": 0, "invalid": 0, "other": 0, "not_valid": {}}
            r.update(slice=s, t=t, pool=pool, kind=name)
            results.append(r)
        # Keep to the schedule.
        late = time.time() - (start + (s + 1) * SLICE)
        if late < 0:
            time.sleep(-late)
    stop.set()
    time.sleep(1.2)
    for p in (daemon,):
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    jserver.stdin.close(); jserver.wait(timeout=10)
    redis.terminate(); redis.wait(timeout=10)
    json.dump({"results": results, "samples": samples, "probe": probe_log,
               "redis": {"down_at": down_at, "up_at": up_at, "start": start}},
              open(f"{logs}/soak.json", "w"))
    report(results, samples, probe_log, down_at, up_at, start, secs, redis_restart_at)

def report(results, samples, probe_log, down_at, up_at, start, secs, redis_slice_t):
    expect = {"hot": "valid", "miss": "valid", "invalid": "invalid", "revoked": "invalid"}
    wrong, undecided, errors, total = {}, {}, [], 0
    for r in results:
        kind = r["kind"]; want = expect[kind.split("-")[1]]
        total += r["valid"] + r["invalid"] + r["other"]
        if "error" in r:
            errors.append(f"{kind} slice {r['slice']}: {r['error']}")
        bad = r["invalid"] + r["other"] if want == "valid" else r["valid"]
        if want == "invalid":
            # Revoked tokens must be refused as revoked; strangers as unknown keys.
            reasons = r.get("not_valid", {})
            good = "revoked" if kind.endswith("revoked") else "unknown_key"
            bad += sum(n for k, n in reasons.items() if k not in (good, "revocation_unavailable", "HTTP 503"))
        # Fail closed: native UNDECIDED revocation_unavailable, HTTP 503.
        und = r.get("not_valid", {}).get("revocation_unavailable", 0) + r.get("not_valid", {}).get("HTTP 503", 0)
        if und:
            undecided[(kind, r["slice"])] = und
        if bad:
            # An UNDECIDED revocation_unavailable answer is the documented
            # fail-closed window, not a wrong verdict, in the Redis slice only.
            if want == "valid" and r["other"] == und and r["invalid"] == 0 and r["t"] == redis_slice_t:
                continue
            wrong[(kind, r["slice"])] = {"valid": r["valid"], "invalid": r["invalid"], "other": r["other"], "not_valid": r.get("not_valid")}
    after = [x for x in samples if x[0] >= WARMUP]
    rss = [x[1] for x in after] or [0]
    fds = [x[2] for x in after] or [0]
    window = [t for t, st in probe_log if st == 2]
    print(f"\n## Soak ({secs} s, rotation every {ROTATION} s, Redis restarted at {round(down_at - start)} s)\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| requests checked | {total:,} |")
    print(f"| wrong verdicts | **{sum(sum(v[k] for k in ('valid', 'invalid', 'other')) for v in wrong.values()) if wrong else 0}** {'' if not wrong else json.dumps({f'{k[0]}@{k[1]}': v for k, v in wrong.items()})[:600]} |")
    print(f"| bench errors | {len(errors)} {'; '.join(errors)[:300]} |")
    print(f"| RSS after {WARMUP} s, KiB: min / max / max/min | {min(rss):,} / {max(rss):,} / {max(rss) / max(min(rss), 1):.3f} |")
    if after:
        print(f"| RSS at {WARMUP} s and at the end, KiB | {after[0][1]:,} / {after[-1][1]:,} |")
    print(f"| open fds after {WARMUP} s: min / max | {min(fds)} / {max(fds)} |")
    print(f"| Redis down (stop to listening again) | {up_at - down_at:.2f} s |")
    if window:
        print(f"| fail-closed window seen by the probe (first to last UNDECIDED) | {window[-1] - window[0]:.2f} s, from {window[0] - down_at:+.2f} s after the stop |")
    else:
        print("| fail-closed window seen by the probe | none (no UNDECIDED answer) |")
    print(f"| UNDECIDED revocation_unavailable answers, by kind and slice | {json.dumps({f'{k[0]}@{k[1]}': v for k, v in undecided.items()})} |")

def publish(jdir, keys):
    tmp = f"{jdir}/routes.json.tmp"
    json.dump({"/jwks": {"status": 200, "body": json.dumps({"keys": keys}), "headers": {"Cache-Control": "max-age=5"}}}, open(tmp, "w"))
    os.rename(tmp, f"{jdir}/routes.json")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait_tcp(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("closed")
        buf += chunk
    return buf

if __name__ == "__main__":
    main()
