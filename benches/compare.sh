#!/usr/bin/env bash
# Before against after, in one sitting: runs benches/daemon.sh and
# benches/http.sh alternately in a baseline checkout and in this one, and
# prints each cell's server CPU per request and throughput, per round and
# as medians, with the after/before ratios.
#
#   git worktree add /tmp/jwtd-base <commit>     # the "before"
#   benches/compare.sh /tmp/jwtd-base [ROUNDS] [SECONDS_PER_CELL]   (3, 5)
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

for round in $(seq "$rounds"); do
    if ((round % 2)); then
        run_side before "$base" "$round"
        run_side after "$here" "$round"
    else
        run_side after "$here" "$round"
        run_side before "$base" "$round"
    fi
done

python3 - "$logs" "$rounds" <<'PY'
import json, re, statistics, sys
from pathlib import Path
logs, rounds = Path(sys.argv[1]), int(sys.argv[2])
cells = ["cached", "es256", "rs256", "http-cached", "http-es256", "nginx-auth"]
data = {}  # (side, cell) -> [(cpu, rps)]
for log in sorted(logs.glob("*.log")):
    side = log.name.split("-")[0]
    for line in log.read_text().splitlines():
        m = re.match(r"^([\w-]+): (\{.*\})$", line)
        if not m or m.group(1) not in cells:
            continue
        r = json.loads(m.group(2))
        cpu = r.get("server_cpu_us_per_request")
        if cpu is None:  # process-tree cells (nginx-auth) report per group
            continue
        data.setdefault((side, m.group(1)), []).append((cpu, r.get("requests_per_second") or r.get("rps")))
print(f"| cell | before CPU us/req | after CPU us/req | after/before CPU | before req/s | after req/s |")
print("|---|---:|---:|---:|---:|---:|")
for cell in cells:
    b, a = data.get(("before", cell)), data.get(("after", cell))
    if not b or not a:
        continue
    bc = statistics.median(x[0] for x in b)
    ac = statistics.median(x[0] for x in a)
    br = statistics.median(x[1] or 0 for x in b)
    ar = statistics.median(x[1] or 0 for x in a)
    per = lambda xs: " / ".join(f"{x[0]:.2f}" for x in xs)
    print(f"| {cell} | {bc:.2f} ({per(b)}) | {ac:.2f} ({per(a)}) | {ac / bc:.3f} | {br:,.0f} | {ar:,.0f} |")
PY
