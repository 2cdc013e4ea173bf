#!/usr/bin/env bash
# The two figures issue 15 re-targeted for a 2-core machine, measured in
# alternating rounds so that each ratio's two sides see the same machine:
#
#   1. cached p99 at half load / the echo server's p99 at the same rate
#      (target <= 1.5): jwtd answering one cached ES256 token, open loop at
#      half of its closed-loop throughput (measured first), against
#      `jwtd bench echo` (same framing, no verification) at that rate;
#   2. uncached server CPU per request / raw aws-lc-rs ES256 verification
#      (target <= 1.15): jwtd with the cache off on 10,000 distinct tokens,
#      against `jwtd bench crypto` (one thread, key parsed once) run right
#      after it on the same CPU.
#
#   benches/targets.sh [ROUNDS] [SECONDS_PER_CELL]     (5, 5)
#   PIN=1 benches/targets.sh ...   servers and crypto on CPU 1, load on CPU 0
#
# Native protocol, 16 connections at depth 8.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-5}
conns=16
depth=8

# shellcheck source=benches/lib.sh
. benches/lib.sh

logs=$(mktemp -d /tmp/jwtd-targets.XXXXXX)
echo "logs: $logs" >&2
pin_server='' pin_gen=''
if [ "${PIN:-0}" = 1 ]; then
    pin_server='taskset -c 1'
    pin_gen='taskset -c 0'
fi
iss=https://issuer.example.test/
aud=api://jwt-sidecar-bench
"$jwtd" keygen --alg ES256 --kid bench-es256 --private "$work/issuer.pem" --jwks-file "$work/jwks.json" >/dev/null
"$jwtd" bench tokens --key "$work/issuer.pem" --count 1 --issuer "$iss" --audience "$aud" >"$work/one.txt"
"$jwtd" bench tokens --key "$work/issuer.pem" --count 10000 --issuer "$iss" --audience "$aud" >"$work/misses.txt"

declare -A pid
serve() { # name, then flags
    local name=$1
    shift
    $pin_server "$jwtd" "$@" >>"$logs/$name.log" 2>&1 &
    pid[$name]=$!
    pids+=("$!")
}
serve echo bench echo --socket "$work/echo.sock"
serve hit serve --socket "$work/hit.sock" --jwks-file "$work/jwks.json" --issuer "$iss" --audience "$aud" --log warn
serve miss serve --socket "$work/miss.sock" --jwks-file "$work/jwks.json" --issuer "$iss" --audience "$aud" \
    --cache-entries 0 --log warn
for s in echo hit miss; do wait_socket "$work/$s.sock"; done

run() { # cell, daemon name, tokens, then more flags
    local cell=$1 name=$2 tokens=$3 out
    shift 3
    out=$($pin_gen "$jwtd" bench run --json -c "$conns" --depth "$depth" --socket "$work/$name.sock" \
        --server-pid "${pid[$name]}" -d "${secs}s" --tokens "$tokens" "$@" 2>>"$logs/stderr.log")
    echo "$cell: $out" >&2
    echo "$out"
}

# Half load: half of the cached closed-loop throughput, measured once.
full=$(run calibrate hit "$work/one.txt")
half=$(python3 -c "import json,sys; print(int(json.loads(sys.argv[1])['rps'] / 2))" "$full")
echo "half load: $half requests/s" >&2

results=$logs/results.jsonl
token=$(head -1 "$work/one.txt")
for round in $(seq "$rounds"); do
    pairs=(latency cpu)
    [ $((round % 2)) = 0 ] && pairs=(cpu latency)
    for pair in "${pairs[@]}"; do
        if [ "$pair" = latency ]; then
            first=(echo-half echo) second=(cached-half hit)
            [ $((round % 2)) = 0 ] && { first=(cached-half hit); second=(echo-half echo); }
            for c in "${first[0]}:${first[1]}" "${second[0]}:${second[1]}"; do
                out=$(run "${c%%:*}" "${c##*:}" "$work/one.txt" --rate "$half")
                echo "{\"round\":$round,\"cell\":\"${c%%:*}\",\"result\":$out}" >>"$results"
            done
        else
            out=$(run uncached miss "$work/misses.txt")
            echo "{\"round\":$round,\"cell\":\"uncached\",\"result\":$out}" >>"$results"
            out=$($pin_server "$jwtd" bench crypto --json --duration 3s --jwks-file "$work/jwks.json" --token "$token")
            echo "crypto: $out" >&2
            echo "{\"round\":$round,\"cell\":\"crypto\",\"result\":$out}" >>"$results"
        fi
    done
done

python3 - "$results" "$rounds" "$secs" "${PIN:-0}" "$half" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, secs, pin, half = int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", int(sys.argv[5])
by = {(r["round"], r["cell"]): r["result"] for r in rows}
R = range(1, rounds + 1)
fmt = lambda xs, f="{:.2f}": " / ".join(f.format(x) for x in xs)
p99 = [by[(n, "cached-half")]["p99_us"] / by[(n, "echo-half")]["p99_us"] for n in R]
cpu = [by[(n, "uncached")]["server_cpu_us_per_request"] / by[(n, "crypto")]["raw_us"] for n in R]
print(f"\n## Re-targeted figures ({rounds} rounds, {secs} s per cell, 16 connections x depth 8, half load {half:,} req/s{', pinned' if pin else ''})\n")
print("| figure | target | median | rounds |")
print("|---|---:|---:|---|")
print(f"| cached p99 at half load / echo p99 at the same rate | <= 1.5 | **{st.median(p99):.2f}** | {fmt(p99)} |")
print(f"| uncached server CPU per request / raw ES256 verification | <= 1.15 | **{st.median(cpu):.3f}** | {fmt(cpu, '{:.3f}')} |")
print("\n| cell | p50 µs (each round) | p99 µs (each round) | CPU µs/req (each round) |")
print("|---|---|---|---|")
for cell in ("echo-half", "cached-half", "uncached"):
    print(f"| {cell} | {fmt([by[(n, cell)]['p50_us'] for n in R], '{:.0f}')} | {fmt([by[(n, cell)]['p99_us'] for n in R], '{:.0f}')} | "
          f"{fmt([by[(n, cell)]['server_cpu_us_per_request'] or 0 for n in R], '{:.2f}')} |")
print(f"| crypto (raw ES256, one thread) | | | {fmt([by[(n, 'crypto')]['raw_us'] for n in R], '{:.2f}')} |")
PY
