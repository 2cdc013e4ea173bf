#!/usr/bin/env bash
# Before against after, in one sitting: runs benches/daemon.sh and
# benches/http.sh alternately in a baseline checkout and in this one, and
# prints each cell's server CPU per request and throughput, per round and
# as medians, with the after/before ratios.
#
#   git worktree add /tmp/jwtd-base <commit>     # the "before"
#   benches/compare.sh /tmp/jwtd-base [ROUNDS] [SECONDS_PER_CELL] [MODE]
#                                                 (3, 5, scripts)
#
# MODE scripts: the two scripts whole, as described below. MODE cached:
# only the cached path (what most requests take), many short alternating
# cells: both daemons run side by side (one token, so idle but for the
# cell under load), and this checkout's load generator drives both, so the
# servers are the only difference. Cells: native protocol at depth 8 and
# the HTTP front, 16 connections each, server CPU from /proc. With PIN=1
# the servers run on CPU 1 and the load generator on CPU 0 (taskset), which
# takes the scheduler's placement out of the noise on a 2-core machine.
# MODE misses: the same with the cache off and 10,000 distinct ES256
# tokens (every request a signature check).
#
# Each side runs its own scripts and its own release binary (lib.sh builds
# it in that checkout), so "before" is measured exactly as it was. The
# order alternates (base, this; this, base; ...) so a drift of the host
# weighs on both sides alike. Logs stay in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: benches/compare.sh BASE_CHECKOUT [ROUNDS] [SECONDS_PER_CELL]}
rounds=${2:-3}
secs=${3:-5}
mode=${4:-scripts}
here=$PWD
base=$(cd "$base" && pwd)
logs=$(mktemp -d /tmp/jwtd-compare.XXXXXX)
echo "logs: $logs" >&2

run_side() { # side dir round
    local side=$1 dir=$2 round=$3
    for script in daemon http; do
        echo "round $round: $side $script" >&2
        (cd "$dir" && "benches/$script.sh" "$secs") 2>"$logs/$side-$script-$round.log" >/dev/null
    done
}

cached_rounds() {
    (cd "$base" && cargo build --release --quiet)
    cargo build --release --quiet
    local work=$logs/work gen=$here/target/release/jwtd pin_server='' pin_gen=''
    if [ "${PIN:-0}" = 1 ]; then
        pin_server='taskset -c 1'
        pin_gen='taskset -c 0'
    fi
    mkdir -p "$work"
    local iss=https://issuer.example.test/ aud=api://jwt-sidecar-bench
    "$gen" keygen --alg ES256 --kid bench-es256 --private "$work/es256.pem" --jwks-file "$work/jwks.json"
    local count=1 serve_flags=() label=cached
    if [ "$mode" = misses ]; then
        count=10000
        serve_flags=(--cache-entries 0)
        label=es256
    fi
    "$gen" bench tokens --key "$work/es256.pem" --count "$count" --issuer "$iss" --audience "$aud" >"$work/one.txt"
    declare -gA pid
    for side in before after; do
        local dir=$here
        [ "$side" = before ] && dir=$base
        $pin_server "$dir/target/release/jwtd" serve --socket "$work/$side.sock" --http-socket "$work/$side-http.sock" \
            --jwks-file "$work/jwks.json" --issuer "$iss" --audience "$aud" --log warn "${serve_flags[@]}" &
        pid[$side]=$!
    done
    trap 'kill ${pid[before]} ${pid[after]} 2>/dev/null || true' EXIT
    for side in before after; do
        for _ in $(seq 100); do [ -S "$work/$side-http.sock" ] && break; sleep 0.05; done
    done
    for round in $(seq "$rounds"); do
        local order="before after"
        ((round % 2)) || order="after before"
        for side in $order; do
            echo "round $round: $side $label" >&2
            {
                echo "$label: $($pin_gen "$gen" bench run --json -d "${secs}s" -c 16 --depth 8 --socket "$work/$side.sock" \
                    --tokens "$work/one.txt" --server-pid "${pid[$side]}")"
                echo "http-$label: $($pin_gen "$gen" bench run --json --http -d "${secs}s" -c 16 --socket "$work/$side-http.sock" \
                    --tokens "$work/one.txt" --server-pid "${pid[$side]}")"
            } >>"$logs/$side-cached-$round.log"
        done
    done
}

if [ "$mode" = cached ] || [ "$mode" = misses ]; then
    cached_rounds
else
    for round in $(seq "$rounds"); do
        if ((round % 2)); then
            run_side before "$base" "$round"
            run_side after "$here" "$round"
        else
            run_side after "$here" "$round"
            run_side before "$base" "$round"
        fi
    done
fi

python3 - "$logs" "$rounds" <<'PY'
import json, re, statistics, sys
from pathlib import Path
logs, rounds = Path(sys.argv[1]), int(sys.argv[2])
cells = ["cached", "es256", "rs256", "http-cached", "http-es256", "nginx-auth"]
data = {}  # (side, cell) -> [(cpu, rps, round)]
for log in sorted(logs.glob("*.log")):
    side = log.name.split("-")[0]
    rnd = int(log.stem.rsplit("-", 1)[1])
    for line in log.read_text().splitlines():
        m = re.match(r"^([\w-]+): (\{.*)$", line)
        if not m or m.group(1) not in cells:
            continue
        # http.sh appends its process-tree CPU (" cpu={...}") after the JSON.
        r, _ = json.JSONDecoder().raw_decode(m.group(2))
        cpu = r.get("server_cpu_us_per_request")
        if cpu is None:  # process-tree cells (nginx-auth) report per group
            continue
        data.setdefault((side, m.group(1)), []).append((cpu, r.get("rps"), rnd))
print("| cell | before CPU us/req | after CPU us/req | after/before CPU | per-round ratio | before req/s | after req/s |")
print("|---|---:|---:|---:|---:|---:|---:|")
for cell in cells:
    b, a = data.get(("before", cell)), data.get(("after", cell))
    if not b or not a:
        continue
    bc = statistics.median(x[0] for x in b)
    ac = statistics.median(x[0] for x in a)
    br = statistics.median(x[1] or 0 for x in b)
    ar = statistics.median(x[1] or 0 for x in a)
    b, a = sorted(b, key=lambda x: x[2]), sorted(a, key=lambda x: x[2])
    per = lambda xs: " / ".join(f"{x[0]:.2f}" for x in xs)
    # The median of each round's after/before: the two sides of a round
    # ran minutes apart, so host drift weighs on both alike.
    before_of = {x[2]: x[0] for x in b}
    ratios = [x[0] / before_of[x[2]] for x in a if x[2] in before_of]
    print(f"| {cell} | {bc:.2f} ({per(b)}) | {ac:.2f} ({per(a)}) | {ac / bc:.3f} | {statistics.median(ratios):.3f} | {br:,.0f} | {ar:,.0f} |")
PY
