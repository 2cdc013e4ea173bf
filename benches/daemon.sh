#!/usr/bin/env bash
# End-to-end daemon benchmark: every figure of BENCHMARKS.md's daemon
# section in one run, on this machine, through the Unix socket.
#
#   benches/daemon.sh [SECONDS_PER_CELL]        (default 10)
#
# Cells, each with 16 connections (native protocol: pipeline depth 8):
#   echo          the echo server (same framing, no verification): transport limit
#   cached        jwtd, one ES256 token (every request a cache hit)
#   cached-half   jwtd, one token, open loop at half the cached throughput: latency
#   echo-half     the echo server at that same rate: the latency floor
#   es256 / rs256 jwtd with the cache off, 10,000 distinct tokens
#   crypto        raw aws-lc-rs verification on one thread, x2 for the 2-core limit
#   memory        RSS growth of jwtd after caching 100,000 distinct tokens
#                 (HS256, so filling is quick; an entry stores the payload,
#                 whatever signed it), divided by 100,000
#   node-*        the Node jose peer (../shared/peers), same tokens, HTTP/1.1,
#                 one request at a time per connection (it cannot pipeline)
# Server CPU per request comes from /proc (utime+stime) over the measured
# window. Node needs `npm` and the peer sources in ../shared/peers; without
# them its cells are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=16
depth=8

# shellcheck source=benches/lib.sh
. benches/lib.sh

iss=https://issuer.example.test/
aud=api://jwt-sidecar-bench
"$jwtd" keygen --alg ES256 --kid bench-es256 --private "$work/es256.pem" --jwks-file "$work/es.json"
"$jwtd" keygen --alg RS256 --kid bench-rs256 --private "$work/rs256.pem" --jwks-file "$work/rs.json"
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
keys = json.load(open(f"{w}/es.json"))["keys"] + json.load(open(f"{w}/rs.json"))["keys"]
json.dump({"keys": keys}, open(f"{w}/jwks.json", "w"))
json.dump({"issuer": "https://issuer.example.test/", "audience": "api://jwt-sidecar-bench"}, open(f"{w}/meta.json", "w"))
PY
"$jwtd" bench tokens --key "$work/es256.pem" --count 10000 --issuer "$iss" --audience "$aud" > "$work/es256.txt"
"$jwtd" bench tokens --key "$work/rs256.pem" --count 10000 --issuer "$iss" --audience "$aud" > "$work/rs256.txt"
head -1 "$work/es256.txt" > "$work/one.txt"


start_jwtd() { # extra flags...
    "$jwtd" serve --socket "$work/jwtd.sock" --jwks-file "$work/jwks.json" --issuer "$iss" \
        --audience "$aud" --log warn "$@" &
    jwtd_pid=$!
    pids+=("$jwtd_pid")
    wait_socket "$work/jwtd.sock"
}
stop_jwtd() {
    kill -TERM "$jwtd_pid"
    wait "$jwtd_pid" 2>/dev/null || true
}

results="$work/results.jsonl"
cell() { # name, then bench run flags
    local name=$1
    shift
    local out
    out=$("$jwtd" bench run --json -d "${secs}s" -c "$conns" "$@")
    echo "{\"cell\":\"$name\",\"result\":$out}" >> "$results"
    echo "$name: $out" >&2
}

"$jwtd" bench echo --socket "$work/echo.sock" 2>/dev/null &
echo_pid=$!
pids+=("$echo_pid")
wait_socket "$work/echo.sock"
cell echo --socket "$work/echo.sock" --depth "$depth" --tokens "$work/one.txt" --server-pid "$echo_pid"

start_jwtd
cell cached --socket "$work/jwtd.sock" --depth "$depth" --tokens "$work/one.txt" --server-pid "$jwtd_pid"
half=$(python3 -c "import json;r=[json.loads(l) for l in open('$results')];print(int([x for x in r if x['cell']=='cached'][0]['result']['rps']/2))")
cell cached-half --socket "$work/jwtd.sock" --depth "$depth" --rate "$half" --tokens "$work/one.txt" --server-pid "$jwtd_pid"
stop_jwtd
# The same paced load against the echo server: the latency floor of this
# machine's transport and thread wake-ups at that rate.
cell echo-half --socket "$work/echo.sock" --depth "$depth" --rate "$half" --tokens "$work/one.txt" --server-pid "$echo_pid"
kill -INT "$echo_pid"

start_jwtd --cache-entries 0
cell es256 --socket "$work/jwtd.sock" --depth "$depth" --tokens "$work/es256.txt" --server-pid "$jwtd_pid"
cell rs256 --socket "$work/jwtd.sock" --depth "$depth" --tokens "$work/rs256.txt" --server-pid "$jwtd_pid"
stop_jwtd

# Memory per cached token: fill the cache with 100k distinct tokens.
"$jwtd" keygen --alg HS256 --kid bench-hs256 --private "$work/hs256.json" --jwks-file "$work/hs.json"
"$jwtd" bench tokens --key "$work/hs256.json" --count 100000 --issuer "$iss" --audience "$aud" > "$work/hs256.txt"
"$jwtd" serve --socket "$work/mem.sock" --jwks-file "$work/hs.json" --issuer "$iss" --audience "$aud" \
    --log warn --cache-entries 200000 &
mem_pid=$!
pids+=("$mem_pid")
wait_socket "$work/mem.sock"
rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
rss_before=$(rss "$mem_pid")
# Two passes over the tokens: the first fills the cache, the second must be
# all hits (nothing evicted), which the cell's cached ratio shows.
"$jwtd" bench run --json -d 4s --warmup 0s -c 4 --depth 64 --tokens "$work/hs256.txt" --socket "$work/mem.sock" > /dev/null
rss_after=$(rss "$mem_pid")
kill -TERM "$mem_pid"
wait "$mem_pid" 2>/dev/null || true
mem_per_entry=$(( (rss_after - rss_before) / 100000 ))
echo "memory: $rss_before -> $rss_after bytes RSS, $mem_per_entry bytes per cached token" >&2

crypto_es=$("$jwtd" bench crypto --jwks-file "$work/jwks.json" --token "$(head -1 "$work/es256.txt")" --duration 3s)
crypto_rs=$("$jwtd" bench crypto --jwks-file "$work/jwks.json" --token "$(head -1 "$work/rs256.txt")" --duration 3s)
echo "$crypto_es" >&2
echo "$crypto_rs" >&2

node_ok=0
peers=../shared/peers
if command -v npm >/dev/null && [ -f "$peers/server.js" ]; then
    cp -r "$peers/server.js" "$peers/package.json" "$peers/package-lock.json" "$work/"
    if (cd "$work" && npm ci --silent --no-audit --no-fund >/dev/null 2>&1); then
        JWKS_FILE="$work/jwks.json" META_FILE="$work/meta.json" PORT= SOCKET="$work/node.sock" \
            node "$work/server.js" >/dev/null 2>&1 &
        node_pid=$!
        pids+=("$node_pid")
        wait_socket "$work/node.sock"
        sleep 1
        # The peer is a cluster: count the CPU of the primary and its workers.
        cell node-one --socket "$work/node.sock" --http --tokens "$work/one.txt"
        cell node-es256 --socket "$work/node.sock" --http --tokens "$work/es256.txt"
        kill "$node_pid"
        node_ok=1
    else
        echo "node peer: npm ci failed; skipping its cells" >&2
    fi
else
    echo "node peer: npm or $peers missing; skipping its cells" >&2
fi

python3 - "$results" "$crypto_es" "$crypto_rs" "$node_ok" "$secs" "$mem_per_entry" <<'PY'
import json, re, sys
rows = {json.loads(l)["cell"]: json.loads(l)["result"] for l in open(sys.argv[1])}
rate = lambda s: float(re.search(r"([0-9.]+) verifications/s", s).group(1))
es_core, rs_core = rate(sys.argv[2]), rate(sys.argv[3])
print(f"\n## Results ({sys.argv[5]} s per cell, 16 connections)\n")
print("| cell | req/s | p50 us | p99 us | p99.9 us | server CPU us/req |")
print("|---|---|---|---|---|---|")
for name, r in rows.items():
    cpu = r.get("server_cpu_us_per_request")
    cpu = f"{cpu:.2f}" if cpu is not None else "n/a"
    print(f"| {name} | {r['rps']:.0f} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | {r['p999_us']:.1f} | {cpu} |")
print(f"\nraw aws-lc-rs, one thread: ES256 {es_core:.0f}/s ({1e6/es_core:.1f} us), RS256 {rs_core:.0f}/s ({1e6/rs_core:.1f} us)\n")
c = rows["cached"]
print("| ratio | value | target |")
print("|---|---|---|")
print(f"| cached / echo throughput | {c['rps']/rows['echo']['rps']:.2f} | >= 0.5 |")
print(f"| cached CPU per request | {c['server_cpu_us_per_request']:.2f} us | < 5 us |")
print(f"| memory per cached token (RSS growth / 100k entries) | {int(sys.argv[6])} bytes | < 1 KB |")
print(f"| cached p99 at half load ({rows['cached-half']['rps']:.0f} req/s) | {rows['cached-half']['p99_us']:.1f} us | <= 100 us |")
print(f"| echo p99 at the same rate (the floor) | {rows['echo-half']['p99_us']:.1f} us | |")
for alg, core in (("es256", es_core), ("rs256", rs_core)):
    r = rows[alg]
    print(f"| uncached {alg.upper()} / 2-core raw limit | {r['rps']/(2*core):.2f} | >= 0.85 |")
    print(f"| uncached {alg.upper()} CPU per request / raw verify | {r['server_cpu_us_per_request']/(1e6/core):.2f} | <= 1.15 |")
if sys.argv[4] == "1":
    print(f"| cached jwtd / Node jose (same token) | {c['rps']/rows['node-one']['rps']:.1f}x | >= 20x |")
    print(f"| uncached ES256 jwtd / Node jose (10k tokens) | {rows['es256']['rps']/rows['node-es256']['rps']:.1f}x | |")
PY
