#!/usr/bin/env bash
# What the revocation check costs: jwtd without a revocation store to ask
# (the in-memory default, nothing revoked) against jwtd checking every valid
# answer against a real redis-server, same tokens, same run.
#
#   benches/revocation.sh [SECONDS_PER_CELL]        (default 5)
#
# Cells, each with 16 connections, pipeline depth 8 (as benches/daemon.sh):
#   off-one / on-one         one token, cache on: every request a cache hit
#                            (the "cached" cell of benches/daemon.sh); with
#                            Redis its decision is refreshed in the background
#                            about once a second
#   off-hits / on-hits       10,000 distinct tokens (distinct jti and sub),
#                            cache on: after the first pass every request is a
#                            cache hit, and with Redis each token's decision is
#                            refreshed about once a second: ~10,000 lookups/s
#   off-misses / on-misses   the 10,000 tokens, cache off: every request
#                            verifies the signature
# The daemon logs its revocation counters at exit (batches, keys, mean and
# largest batch); they are printed after each Redis cell. Redis runs on a
# free port on loopback, persistence off.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 1; }
# shellcheck source=benches/lib.sh
. benches/lib.sh

port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done

iss=https://issuer.example.test/
aud=api://jwt-sidecar-bench
"$jwtd" keygen --alg ES256 --kid bench-es256 --private "$work/es256.pem" --jwks-file "$work/jwks.json"
"$jwtd" bench tokens --key "$work/es256.pem" --count 10000 --issuer "$iss" --audience "$aud" > "$work/es256.txt"
head -1 "$work/es256.txt" > "$work/one.txt"

start_jwtd() { # flags...
    "$jwtd" serve --socket "$work/jwtd.sock" --jwks-file "$work/jwks.json" --issuer "$iss" \
        --audience "$aud" --log info "$@" 2> "$work/jwtd.log" &
    jwtd_pid=$!
    pids+=("$jwtd_pid")
    wait_socket "$work/jwtd.sock"
}
stop_jwtd() {
    kill -TERM "$jwtd_pid"
    wait "$jwtd_pid" 2>/dev/null || true
    grep -o 'revocation counters.*' "$work/jwtd.log" | sed 's/\x1b\[[0-9;]*m//g' >&2 || true
}
results="$work/results.jsonl"
cell() { # name, tokens file
    local name=$1
    local out
    out=$("$jwtd" bench run --json -d "${secs}s" -c 16 --depth 8 --socket "$work/jwtd.sock" \
        --tokens "$2" --server-pid "$jwtd_pid")
    echo "{\"cell\":\"$name\",\"result\":$out}" >> "$results"
    echo "$name: $out" >&2
}

redis=(--redis "redis://127.0.0.1:$port")
for round in 1 2; do
    start_jwtd
    cell off-one "$work/one.txt"
    cell off-hits "$work/es256.txt"
    stop_jwtd
    start_jwtd "${redis[@]}"
    cell on-one "$work/one.txt"
    cell on-hits "$work/es256.txt"
    stop_jwtd
    start_jwtd --cache-entries 0
    cell off-misses "$work/es256.txt"
    stop_jwtd
    start_jwtd --cache-entries 0 "${redis[@]}"
    cell on-misses "$work/es256.txt"
    stop_jwtd
done
mget=$(redis-cli -p "$port" info commandstats | grep -o 'cmdstat_mget:calls=[0-9]*' || true)
echo "redis: $mget" >&2

python3 - "$results" "$secs" <<'PY'
import json, sys
rows = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    rows.setdefault(r["cell"], []).append(r["result"])
print(f"\n## Results ({sys.argv[2]} s per cell, 16 connections, two rounds)\n")
print("| cell | req/s | server CPU us/req | p50 us | p99 us |")
print("|---|---|---|---|---|")
for name, rs in rows.items():
    for r in rs:
        print(f"| {name} | {r['rps']:.0f} | {r['server_cpu_us_per_request']:.2f} | {r['p50_us']:.1f} | {r['p99_us']:.1f} |")
print("\n| revocation on / off | throughput | CPU per request | target |")
print("|---|---|---|---|")
for case in ("one", "hits", "misses"):
    a, b = rows[f"off-{case}"], rows[f"on-{case}"]
    for i in range(min(len(a), len(b))):
        target = ">= 0.75" if case == "one" else ""
        print(f"| {case}, round {i+1} | {b[i]['rps']/a[i]['rps']:.2f} | {b[i]['server_cpu_us_per_request']/a[i]['server_cpu_us_per_request']:.2f} | {target} |")
PY
