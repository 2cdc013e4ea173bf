#!/usr/bin/env bash
# What metrics cost: jwtd without an admin listener (no recorder: every
# metric handle is a no-op) against jwtd with `--admin-addr` (Prometheus
# recorder on, scraped once a second as Prometheus would), same tokens, same
# run, alternating off/on for three rounds so drift hits both alike.
#
#   benches/metrics.sh [SECONDS_PER_CELL]        (default 5)
#
# Cells, 16 connections, pipeline depth 8 (as benches/daemon.sh):
#   off-hits / on-hits       native protocol, one ES256 token: cache hits,
#                            the path where metrics weigh most (target: on
#                            costs under 5% of throughput)
#   off-http / on-http       the HTTP front, same token (depth 1)
#   off-misses / on-misses   native, 10,000 ES256 tokens, cache off
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
# shellcheck source=benches/lib.sh
. benches/lib.sh

iss=https://issuer.example.test/
aud=api://jwt-sidecar-bench
"$jwtd" keygen --alg ES256 --kid bench-es256 --private "$work/es256.pem" --jwks-file "$work/jwks.json"
"$jwtd" bench tokens --key "$work/es256.pem" --count 10000 --issuer "$iss" --audience "$aud" > "$work/es256.txt"
head -1 "$work/es256.txt" > "$work/one.txt"
admin_port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")

start_jwtd() { # flags...
    "$jwtd" serve --socket "$work/jwtd.sock" --http-socket "$work/http.sock" \
        --jwks-file "$work/jwks.json" --issuer "$iss" --audience "$aud" --log warn "$@" &
    jwtd_pid=$!
    pids+=("$jwtd_pid")
    wait_socket "$work/jwtd.sock"
}
stop_jwtd() {
    kill -TERM "$jwtd_pid"
    wait "$jwtd_pid" 2>/dev/null || true
}
# Scrapes /metrics once a second while a cell runs (when metrics are on):
# one process for the whole cell, so the scraper's own start-up is not
# charged to the "on" cells.
scraper() {
    exec python3 -c "
import time, urllib.request
while True:
    time.sleep(1)
    try:
        urllib.request.urlopen('http://127.0.0.1:$admin_port/metrics').read()
    except OSError:
        pass
"
}
results="$work/results.jsonl"
cell() { # name, then bench run flags
    local name=$1
    shift
    local out
    out=$("$jwtd" bench run --json -d "${secs}s" -c 16 --server-pid "$jwtd_pid" "$@")
    echo "{\"cell\":\"$name\",\"result\":$out}" >> "$results"
    echo "$name: $out" >&2
}
cells() { # prefix
    cell "$1-hits" --socket "$work/jwtd.sock" --depth 8 --tokens "$work/one.txt"
    cell "$1-http" --socket "$work/http.sock" --http --tokens "$work/one.txt"
}

for round in 1 2 3 4 5; do
    echo "round $round" >&2
    start_jwtd
    cells off
    stop_jwtd
    start_jwtd --admin-addr "127.0.0.1:$admin_port"
    scraper &
    scraper_pid=$!
    cells on
    kill "$scraper_pid"
    stop_jwtd
done
start_jwtd --cache-entries 0
cell off-misses --socket "$work/jwtd.sock" --depth 8 --tokens "$work/es256.txt"
stop_jwtd
start_jwtd --cache-entries 0 --admin-addr "127.0.0.1:$admin_port"
cell on-misses --socket "$work/jwtd.sock" --depth 8 --tokens "$work/es256.txt"
stop_jwtd

python3 - "$results" "$secs" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["cell"], []).append(r["result"])
print(f"\n## Metrics on vs off ({sys.argv[2]} s per cell, 16 connections; hits and http: median of 5 rounds)\n")
print("| cell | req/s | p50 us | p99 us | server CPU us/req |")
print("|---|---|---|---|---|")
med = {}
for name, rs in rows.items():
    rps = statistics.median(r["rps"] for r in rs)
    cpu = statistics.median(r["server_cpu_us_per_request"] for r in rs)
    p50 = statistics.median(r["p50_us"] for r in rs)
    p99 = statistics.median(r["p99_us"] for r in rs)
    med[name] = (rps, cpu)
    print(f"| {name} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {cpu:.2f} |")
print("\n| ratio (on / off) | throughput | CPU per request | target |")
print("|---|---|---|---|")
for what, target in (("hits", "throughput >= 0.95"), ("http", ""), ("misses", "")):
    on, off = med[f"on-{what}"], med[f"off-{what}"]
    print(f"| {what} | {on[0]/off[0]:.3f} | {on[1]/off[1]:.3f} | {target} |")
PY
