#!/usr/bin/env bash
# What choosing the issuer by `iss` costs: jwtd with one issuer against jwtd
# with two `[[issuers]]` (tokens of the second one), same tokens, same run.
#
#   benches/issuers.sh [SECONDS_PER_CELL]        (default 5)
#
# Cells, each with 16 connections, pipeline depth 8 (as benches/daemon.sh):
#   one-cached / two-cached   one ES256 token, every request a cache hit
#   one-es256 / two-es256     cache off, 10,000 distinct ES256 tokens
#   one-hs256 / two-hs256     cache off, 10,000 distinct HS256 tokens (the
#                             cheapest signature, so the selection shows most)
# With two issuers the core parses the payload once more before the
# signature (to read `iss`) and a cache hit looks the issuer up by `iss`.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}

# shellcheck source=benches/lib.sh
. benches/lib.sh

iss=https://issuer-b.example.test/
aud=api://jwt-sidecar-bench
"$jwtd" keygen --alg ES256 --kid a-es256 --private "$work/a.pem" --jwks-file "$work/a.json"
"$jwtd" keygen --alg ES256 --kid b-es256 --private "$work/b-es.pem" --jwks-file "$work/b-es.json"
"$jwtd" keygen --alg HS256 --kid b-hs256 --private "$work/b-hs.json" --jwks-file "$work/b-hs-pub.json"
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
keys = json.load(open(f"{w}/b-es.json"))["keys"] + json.load(open(f"{w}/b-hs-pub.json"))["keys"]
json.dump({"keys": keys}, open(f"{w}/b.json", "w"))
PY
cat > "$work/two.toml" <<TOML
audiences = ["$aud"]
[[issuers]]
issuer = "https://issuer-a.example.test/"
jwks_file = "$work/a.json"
[[issuers]]
issuer = "$iss"
jwks_file = "$work/b.json"
TOML
"$jwtd" bench tokens --key "$work/b-es.pem" --count 10000 --issuer "$iss" --audience "$aud" > "$work/es256.txt"
"$jwtd" bench tokens --key "$work/b-hs.json" --count 10000 --issuer "$iss" --audience "$aud" > "$work/hs256.txt"
head -1 "$work/es256.txt" > "$work/one.txt"

start_jwtd() { # flags...
    "$jwtd" serve --socket "$work/jwtd.sock" --log warn "$@" &
    jwtd_pid=$!
    pids+=("$jwtd_pid")
    wait_socket "$work/jwtd.sock"
}
stop_jwtd() {
    kill -TERM "$jwtd_pid"
    wait "$jwtd_pid" 2>/dev/null || true
}
results="$work/results.jsonl"
cell() { # name, tokens file
    local out
    out=$("$jwtd" bench run --json -d "${secs}s" -c 16 --depth 8 --socket "$work/jwtd.sock" \
        --tokens "$2" --server-pid "$jwtd_pid")
    echo "{\"cell\":\"$1\",\"result\":$out}" >> "$results"
    echo "$1: $out" >&2
}

one=(--jwks-file "$work/b.json" --issuer "$iss" --audience "$aud")
two=(--config "$work/two.toml")
# Interleaved, so drift on this shared machine hits both sides alike.
for round in 1 2; do
    for side in one two; do
        declare -n flags=$side
        start_jwtd "${flags[@]}"
        cell "$side-cached" "$work/one.txt"
        stop_jwtd
        start_jwtd "${flags[@]}" --cache-entries 0
        cell "$side-es256" "$work/es256.txt"
        cell "$side-hs256" "$work/hs256.txt"
        stop_jwtd
    done
done

python3 - "$results" "$secs" <<'PY'
import json, sys
rows = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    rows.setdefault(r["cell"], []).append(r["result"])
print(f"\n## Results ({sys.argv[2]} s per cell, 16 connections, two rounds)\n")
print("| cell | req/s | server CPU us/req | p99 us |")
print("|---|---|---|---|")
for name, rs in rows.items():
    for r in rs:
        print(f"| {name} | {r['rps']:.0f} | {r['server_cpu_us_per_request']:.2f} | {r['p99_us']:.1f} |")
print("\n| two issuers / one issuer | throughput | CPU per request |")
print("|---|---|---|")
for case in ("cached", "es256", "hs256"):
    a, b = rows[f"one-{case}"], rows[f"two-{case}"]
    for i in range(min(len(a), len(b))):
        print(f"| {case}, round {i+1} | {b[i]['rps']/a[i]['rps']:.2f} | {b[i]['server_cpu_us_per_request']/a[i]['server_cpu_us_per_request']:.2f} |")
PY
