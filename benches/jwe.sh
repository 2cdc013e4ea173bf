#!/usr/bin/env bash
# What an encrypted token (a nested JWT: a JWE around an ES256 JWS) costs
# the daemon, cached and uncached, against a plain token and against the
# sum of the raw aws-lc-rs primitives the same work needs, in one run.
#
#   benches/jwe.sh [ROUNDS] [SECONDS_PER_CELL]        (5, 5)
#   PIN=1 benches/jwe.sh ...    daemons and crypto on CPU 1, load generator
#                               on CPU 0 (taskset), as compare.sh PIN=1
#
# Native protocol, 16 connections at depth 8, server CPU per request from
# /proc over each measured window. Cells, alternating order each round:
#   bearer-hit   VERIFY of one ES256 token, every request a cache hit
#   jwe-hit      VERIFY of one nested JWT (ECDH-ES+A256KW, A256GCM), every
#                request a cache hit (keyed by the JWE's own bytes)
#   bearer-long  VERIFY of one ES256 token padded (a `pad` claim) to the
#                nested JWT's length, every request a cache hit: what a
#                cached token of that size costs, encrypted or not
#   jws-miss     10,000 distinct ES256 tokens, cache off (`--cache-entries
#                0`): one signature check per request
#   jwe-ecdh     10,000 distinct nested JWTs, ECDH-ES+A256KW + A256GCM,
#                cache off: decrypt, then verify the inner token
#   jwe-rsa      the same with RSA-OAEP-256 (RSA 2048) + A256GCM
#   jwe-a256kw   the same with A256KW + A256GCM
# and each round, with the daemons idle (on their CPU with PIN=1),
# `jwtd bench crypto --jwe` for each alg: the raw primitives (key
# management, content decryption, the inner signature; keys parsed once,
# written in the bench independently of jwtd's decryptor) against jwtd's
# decrypt + verify of the same token, single thread.
#
# Every reply must be VALID (the "not valid" column). Ratios are taken
# within each round and their median printed. Logs stay in the printed
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-5}
conns=16
depth=8

# shellcheck source=benches/lib.sh
. benches/lib.sh

logs=$(mktemp -d /tmp/jwtd-jwe.XXXXXX)
echo "logs: $logs" >&2
pin_server='' pin_gen=''
if [ "${PIN:-0}" = 1 ]; then
    pin_server='taskset -c 1'
    pin_gen='taskset -c 0'
fi

iss=https://issuer.example.test/
aud=api://jwt-sidecar-bench
"$jwtd" keygen --alg ES256 --kid bench-es256 --private "$work/issuer.pem" --jwks-file "$work/jwks.json" >/dev/null
# Decryption keys: RSA and EC as PEM (one file, each key answers any kid),
# the AES key-wrap key as a JWK set (a second daemon: one file each).
"$jwtd" keygen --alg ECDH-ES+A256KW --private "$work/ecdh.pem" --jwks-file "$work/ecdh.pub" >/dev/null
"$jwtd" keygen --alg RSA-OAEP-256 --private "$work/rsa.pem" --jwks-file "$work/rsa.pub" >/dev/null
"$jwtd" keygen --alg A256KW --private "$work/a256kw.json" >/dev/null
cat "$work/ecdh.pem" "$work/rsa.pem" >"$work/pem-keys.pem"
chmod 600 "$work/pem-keys.pem"

tokens() { # out-file, count, then bench tokens flags
    local out=$1 count=$2
    shift 2
    "$jwtd" bench tokens --key "$work/issuer.pem" --count "$count" --issuer "$iss" --audience "$aud" "$@" >"$out"
}
tokens "$work/bearer.txt" 1
tokens "$work/jwe-one.txt" 1 --encrypt-to "$work/ecdh.pub"
# A signed token as long as the nested one (base64url: 4 chars per 3 bytes).
pad=$(python3 -c "import sys; print('x' * ((len(open(sys.argv[1]).read().strip()) - len(open(sys.argv[2]).read().strip())) * 3 // 4 - 10))" \
    "$work/jwe-one.txt" "$work/bearer.txt")
"$jwtd" mint --key "$work/issuer.pem" --issuer "$iss" --audience "$aud" --sub user-long \
    --claims "{\"pad\":\"$pad\",\"scope\":\"openid profile email orders:read orders:write payments:read\"}" >"$work/bearer-long.txt"
echo "token lengths: bearer $(wc -c <"$work/bearer.txt"), bearer-long $(wc -c <"$work/bearer-long.txt"), jwe $(wc -c <"$work/jwe-one.txt")" >&2
tokens "$work/jws-miss.txt" 10000
tokens "$work/jwe-ecdh.txt" 10000 --encrypt-to "$work/ecdh.pub"
tokens "$work/jwe-rsa.txt" 10000 --encrypt-to "$work/rsa.pub"
tokens "$work/jwe-a256kw.txt" 10000 --encrypt-to "$work/a256kw.json"

declare -A pid
serve() { # name (its socket is $work/NAME.sock), then flags
    local name=$1
    shift
    $pin_server "$jwtd" serve --socket "$work/$name.sock" --jwks-file "$work/jwks.json" --issuer "$iss" \
        --audience "$aud" --log warn "$@" >>"$logs/$name.log" 2>&1 &
    pid[$name]=$!
    pids+=("$!")
}
serve hit --jwe-keys "$work/pem-keys.pem"
serve miss --jwe-keys "$work/pem-keys.pem" --cache-entries 0
serve kw --jwe-keys "$work/a256kw.json" --cache-entries 0
for s in hit miss kw; do wait_socket "$work/$s.sock"; done

run() { # cell name, daemon name, tokens file
    local out
    out=$($pin_gen "$jwtd" bench run --json -c "$conns" --depth "$depth" --socket "$work/$2.sock" \
        --server-pid "${pid[$2]}" -d "${secs}s" --tokens "$3" 2>>"$logs/stderr.log")
    echo "$1: $out" >&2
    echo "$out"
}

results=$logs/results.jsonl
cells=(bearer-hit jwe-hit bearer-long jws-miss jwe-ecdh jwe-rsa jwe-a256kw)
for round in $(seq "$rounds"); do
    shift_by=$(((round - 1) % ${#cells[@]}))
    order=("${cells[@]:shift_by}" "${cells[@]:0:shift_by}")
    for cell in "${order[@]}"; do
        echo "round $round: $cell" >&2
        case $cell in
        bearer-hit) out=$(run "$cell" hit "$work/bearer.txt") ;;
        bearer-long) out=$(run "$cell" hit "$work/bearer-long.txt") ;;
        jwe-hit) out=$(run "$cell" hit "$work/jwe-one.txt") ;;
        jws-miss) out=$(run "$cell" miss "$work/jws-miss.txt") ;;
        jwe-a256kw) out=$(run "$cell" kw "$work/jwe-a256kw.txt") ;;
        *) out=$(run "$cell" miss "$work/$cell.txt") ;;
        esac
        echo "{\"round\":$round,\"cell\":\"$cell\",\"result\":$out}" >>"$results"
    done
    for alg in ecdh rsa a256kw; do
        keys=$work/pem-keys.pem
        [ "$alg" = a256kw ] && keys=$work/a256kw.json
        out=$($pin_server "$jwtd" bench crypto --json --duration 2s --jwks-file "$work/jwks.json" \
            --jwe "$(head -1 "$work/jwe-$alg.txt")" --jwe-keys "$keys")
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
R = range(1, rounds + 1)
def per(cell, key):
    return [by[(n, cell)][key] for n in R if (n, cell) in by]
def fmt(xs, f="{:.2f}"):
    return " / ".join(f.format(x) for x in xs)
def ratios(f):
    out = []
    for n in R:
        try:
            out.append(f(n))
        except KeyError:
            pass
    return out
cpu = lambda n, c: by[(n, c)]["server_cpu_us_per_request"]
print(f"\n## Encrypted tokens ({rounds} rounds, {secs} s per cell, 16 connections x depth 8{', pinned' if pin else ''})\n")
print("| cell | server CPU us/req, median (each round) | req/s, median | not valid |")
print("|---|---|---:|---:|")
for cell in ("bearer-hit", "jwe-hit", "bearer-long", "jws-miss", "jwe-ecdh", "jwe-rsa", "jwe-a256kw"):
    c = per(cell, "server_cpu_us_per_request")
    bad = sum(sum(by[(n, cell)].get("not_valid", {}).values()) for n in R if (n, cell) in by)
    print(f"| {cell} | {med(c):.2f} ({fmt(c)}) | {med(per(cell, 'rps')):,.0f} | {bad} |")
print("\nSingle thread, `jwtd bench crypto --jwe` (medians over rounds, us):\n")
print("| token | key management | content | signature | raw sum | jwtd decrypt + verify | jwtd / raw (median of in-round ratios) |")
print("|---|---:|---:|---:|---:|---:|---:|")
names = {"ecdh": "ECDH-ES+A256KW + A256GCM", "rsa": "RSA-OAEP-256 + A256GCM", "a256kw": "A256KW + A256GCM"}
for alg in ("ecdh", "rsa", "a256kw"):
    c = f"crypto-{alg}"
    print(f"| {names[alg]} | {med(per(c, 'kw_us')):.2f} | {med(per(c, 'content_us')):.2f} | {med(per(c, 'sig_us')):.2f} | "
          f"{med(per(c, 'raw_sum_us')):.2f} | {med(per(c, 'jwtd_us')):.2f} | {med(per(c, 'jwtd_over_raw')):.3f} |")
print("\nRatios, each taken within a round, median (each round):\n")
print("| ratio | median | rounds |")
print("|---|---:|---|")
hit = ratios(lambda n: cpu(n, "jwe-hit") / cpu(n, "bearer-hit"))
print(f"| cached nested JWT / cached plain JWS, CPU per request | {med(hit):.3f} | {fmt(hit, '{:.3f}')} |")
long = ratios(lambda n: cpu(n, "jwe-hit") / cpu(n, "bearer-long"))
print(f"| cached nested JWT / cached plain JWS of the same length, CPU per request | {med(long):.3f} | {fmt(long, '{:.3f}')} |")
for alg in ("ecdh", "rsa", "a256kw"):
    r = ratios(lambda n: cpu(n, f"jwe-{alg}") / by[(n, f"crypto-{alg}")]["raw_sum_us"])
    print(f"| uncached {names[alg]} (daemon CPU per request) / sum of its raw primitives | {med(r):.3f} | {fmt(r, '{:.3f}')} |")
base = ratios(lambda n: cpu(n, "jws-miss") / by[(n, "crypto-ecdh")]["sig_us"])
print(f"| uncached plain ES256 (daemon CPU per request) / raw ES256 signature (for reference) | {med(base):.3f} | {fmt(base, '{:.3f}')} |")
PY
