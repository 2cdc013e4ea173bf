#!/usr/bin/env bash
# What a DPoP request costs the daemon (RFC 9449, token cached), against a
# bearer cache hit and against the raw signature check it adds, in one run.
#
#   benches/dpop.sh [ROUNDS] [SECONDS_PER_CELL]        (5, 5)
#   PIN=1 benches/dpop.sh ...   daemon and crypto on CPU 1, load generator
#                               on CPU 0 (taskset), as compare.sh PIN=1
#
# One daemon (`--dpop allowed`), native protocol, 16 connections at depth
# 8, server CPU per request from /proc over each measured window. Cells,
# alternating order each round:
#   bearer       VERIFY of one ES256 token, every request a cache hit
#   dpop-es256   VERIFY_CTX of one token bound (cnf.jkt) to an ES256 client
#                key, each with a fresh ES256 proof (the token cached, so
#                the daemon checks the proof: one signature, htm/htu/ath,
#                thumbprint against cnf.jkt, replay cache)
#   dpop-eddsa   the same with an Ed25519 client key
#   miss         bearer VERIFY with the cache off (a second daemon, same
#                CPU, `--cache-entries 0`), 10,000 distinct ES256 tokens:
#                one ES256 signature per request in the daemon, the
#                reference for "one signature check" beside dpop-es256
# and, each round with the daemon idle (on its CPU with PIN=1),
# `jwtd bench crypto --dpop-proof`: the raw signature check of a proof
# (aws-lc-rs, key parsed once), jwtd's whole proof check (the core alone),
# parsing the proof's jwk, and one replay-cache admission, single thread.
#
# Proofs are signed by the load generator before each cell's warm-up (never
# during the measured window), each sent once; their number comes from a
# calibration cell (1.5 x its rate). Every reply must be VALID: a replayed,
# stale or refused proof would show in the "not valid" column. The
# daemon's replay cache is raised to 10,000,000 proofs, its maximum: each
# proof is kept for its 90 s window and one client key may hold an eighth
# of the capacity, so with the default (100,000: 12,500 per key) one
# client key is answered `overloaded` above about 140 proofs/s, and the
# daemon above about 1,100/s; here each client key may hold 1,250,000.
#
# Ratios are taken within each round (cells seconds apart) and their
# median printed. Logs stay in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-5}
conns=16
depth=8

# shellcheck source=benches/lib.sh
. benches/lib.sh

logs=$(mktemp -d /tmp/jwtd-dpop.XXXXXX)
echo "logs: $logs" >&2
pin_server='' pin_gen=''
if [ "${PIN:-0}" = 1 ]; then
    pin_server='taskset -c 1'
    pin_gen='taskset -c 0'
fi

iss=https://issuer.example.test/
aud=api://jwt-sidecar-bench
uri=https://api.example.com/orders
"$jwtd" keygen --alg ES256 --kid bench-es256 --private "$work/issuer.pem" --jwks-file "$work/jwks.json" >/dev/null
"$jwtd" keygen --alg ES256 --private "$work/client-es256.pem" --jwks-file "$work/client-es256.json" >/dev/null
"$jwtd" keygen --alg EdDSA --private "$work/client-eddsa.pem" --jwks-file "$work/client-eddsa.json" >/dev/null
"$jwtd" bench tokens --key "$work/issuer.pem" --count 1 --issuer "$iss" --audience "$aud" >"$work/bearer.txt"
for alg in es256 eddsa; do
    "$jwtd" bench tokens --key "$work/issuer.pem" --count 1 --issuer "$iss" --audience "$aud" \
        --dpop-key "$work/client-$alg.pem" >"$work/dpop-$alg.txt"
done

$pin_server "$jwtd" serve --socket "$work/jwtd.sock" --jwks-file "$work/jwks.json" --issuer "$iss" \
    --audience "$aud" --dpop allowed --dpop-replay-entries 10000000 --log warn &
jwtd_pid=$!
pids+=("$jwtd_pid")
"$jwtd" bench tokens --key "$work/issuer.pem" --count 10000 --issuer "$iss" --audience "$aud" >"$work/misses.txt"
$pin_server "$jwtd" serve --socket "$work/miss.sock" --jwks-file "$work/jwks.json" --issuer "$iss" \
    --audience "$aud" --cache-entries 0 --log warn &
miss_pid=$!
pids+=("$miss_pid")
wait_socket "$work/jwtd.sock"
wait_socket "$work/miss.sock"

run() { # name, then bench run flags
    local name=$1 out sock=$work/jwtd.sock pid=$jwtd_pid
    shift
    if [ "$name" = miss ]; then
        sock=$work/miss.sock pid=$miss_pid
    fi
    out=$($pin_gen "$jwtd" bench run --json -c "$conns" --depth "$depth" --socket "$sock" \
        --server-pid "$pid" "$@" 2>>"$logs/stderr.log")
    echo "$name: $out" >&2
    echo "$out"
}

# Calibration (also the daemon's first verification of each token): how
# many proofs a cell needs.
declare -A proofs
for alg in es256 eddsa; do
    r=$(run "calibrate-$alg" -d 2s --tokens "$work/dpop-$alg.txt" --dpop-key "$work/client-$alg.pem" \
        --dpop-uri "$uri" --dpop-proofs 80000)
    proofs[$alg]=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(int(r['rps'] * 1.5 * ($secs + 1)) + 2000)" "$r")
    echo "dpop-$alg: ${proofs[$alg]} proofs per cell" >&2
done

results=$logs/results.jsonl
for round in $(seq "$rounds"); do
    cells=(bearer dpop-es256 dpop-eddsa miss)
    # Rotate the order so no cell always follows the same one.
    shift_by=$(((round - 1) % 4))
    cells=("${cells[@]:shift_by}" "${cells[@]:0:shift_by}")
    for cell in "${cells[@]}"; do
        echo "round $round: $cell" >&2
        case $cell in
        bearer) out=$(run "$cell" -d "${secs}s" --tokens "$work/bearer.txt") ;;
        miss) out=$(run "$cell" -d "${secs}s" --tokens "$work/misses.txt") ;;
        dpop-*)
            alg=${cell#dpop-}
            out=$(run "$cell" -d "${secs}s" --tokens "$work/$cell.txt" --dpop-key "$work/client-$alg.pem" \
                --dpop-uri "$uri" --dpop-proofs "${proofs[$alg]}")
            ;;
        esac
        echo "{\"round\":$round,\"cell\":\"$cell\",\"result\":$out}" >>"$results"
    done
    for alg in es256 eddsa; do
        token=$(cat "$work/dpop-$alg.txt")
        proof=$("$jwtd" dpop --key "$work/client-$alg.pem" --uri "$uri" --token "$token")
        out=$($pin_server "$jwtd" bench crypto --json --duration 2s --dpop-proof "$proof" \
            --access-token "$token" --uri "$uri")
        echo "crypto-$alg: $out" >&2
        echo "{\"round\":$round,\"cell\":\"crypto-$alg\",\"result\":$out}" >>"$results"
    done
done

python3 - "$results" "$rounds" "$secs" "${PIN:-0}" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, secs, pin = int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
by = {(r["round"], r["cell"]): r["result"] for r in rows}
med = st.median
def per(cell, key):
    return [by[(n, cell)][key] for n in range(1, rounds + 1) if (n, cell) in by]
def fmt(xs, f="{:.2f}"):
    return " / ".join(f.format(x) for x in xs)
print(f"\n## DPoP against bearer ({rounds} rounds, {secs} s per cell, 16 connections x depth 8{', pinned' if pin else ''})\n")
print("| cell | server CPU us/req, median (each round) | req/s, median | not valid |")
print("|---|---|---:|---:|")
for cell in ("bearer", "dpop-es256", "dpop-eddsa", "miss"):
    cpu = per(cell, "server_cpu_us_per_request")
    rps = per(cell, "rps")
    bad = sum(sum(by[(n, cell)].get("not_valid", {}).values()) for n in range(1, rounds + 1) if (n, cell) in by)
    out = [n for n in range(1, rounds + 1) if (n, cell) in by and (by[(n, cell)].get("dpop") or {}).get("ran_out")]
    note = f" (proofs ran out in round {out}: window shortened)" if out else ""
    print(f"| {cell} | {med(cpu):.2f} ({fmt(cpu)}) | {med(rps):,.0f} | {bad}{note} |")
print("\nSingle thread, `jwtd bench crypto --dpop-proof` (medians over rounds, us):\n")
print("| proof alg | raw signature | jwtd proof check | proof check / raw | parse jwk | replay admission |")
print("|---|---|---|---:|---:|---:|")
for alg in ("es256", "eddsa"):
    c = f"crypto-{alg}"
    print(f"| {alg.upper() if alg == 'es256' else 'EdDSA'} | {med(per(c, 'raw_us')):.2f} ({fmt(per(c, 'raw_us'))}) | "
          f"{med(per(c, 'proof_us')):.2f} | {med(per(c, 'proof_over_raw')):.3f} | {med(per(c, 'key_us')):.2f} | {med(per(c, 'replay_us')):.3f} |")
print("\nRatios, each taken within a round, median (each round):\n")
print("| ratio | median | rounds |")
print("|---|---:|---|")
for alg in ("es256", "eddsa"):
    d, c = f"dpop-{alg}", f"crypto-{alg}"
    ratio, added, beyond = [], [], []
    for n in range(1, rounds + 1):
        if (n, d) not in by or (n, "bearer") not in by or (n, c) not in by:
            continue
        b = by[(n, "bearer")]["server_cpu_us_per_request"]
        x = by[(n, d)]["server_cpu_us_per_request"]
        ratio.append(x / b)
        added.append((x - b) / by[(n, c)]["raw_us"])
        beyond.append(x - b - by[(n, c)]["proof_us"])
    name = alg.upper() if alg == "es256" else "EdDSA"
    print(f"| DPoP {name} / bearer, CPU per request | {med(ratio):.1f} | {fmt(ratio, '{:.1f}')} |")
    if alg == "es256":
        miss = [by[(n, d)]["server_cpu_us_per_request"] / by[(n, "miss")]["server_cpu_us_per_request"]
                for n in range(1, rounds + 1) if (n, d) in by and (n, "miss") in by]
        raw_miss = [by[(n, "miss")]["server_cpu_us_per_request"] / by[(n, c)]["raw_us"]
                    for n in range(1, rounds + 1) if (n, "miss") in by and (n, c) in by]
        print(f"| DPoP ES256 (token cached) / bearer miss (ES256 token checked), CPU per request | {med(miss):.3f} | {fmt(miss, '{:.3f}')} |")
        print(f"| bearer miss / raw ES256 signature | {med(raw_miss):.3f} | {fmt(raw_miss, '{:.3f}')} |")
    print(f"| (DPoP {name} - bearer) / raw {name} signature | {med(added):.3f} | {fmt(added, '{:.3f}')} |")
    print(f"| DPoP {name} - bearer - jwtd proof check (us: the daemon's share) | {med(beyond):.1f} | {fmt(beyond, '{:.1f}')} |")
PY
