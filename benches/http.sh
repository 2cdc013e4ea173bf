#!/usr/bin/env bash
# End-to-end benchmark of jwtd's HTTP front (`serve --http-socket`, what
# nginx auth_request and Envoy ext_authz call) beside the Node jose peer, and
# the latency an nginx auth_request to jwtd adds, in one run, through Unix
# sockets.
#
#   benches/http.sh [SECONDS_PER_CELL]          (default 10)
#
# Every cell is `jwtd bench run --http`: GET /verify with a bearer token, one
# request at a time per connection (depth 1), 16 connections unless named.
#   http-cached      jwtd, one ES256 token (every request a cache hit)
#   http-es256       jwtd with the cache off, 10,000 distinct ES256 tokens
#   nginx-plain      nginx proxying to a trivial upstream (nginx `return 200`
#                    on a third socket), no auth_request
#   nginx-auth       the same location guarded by auth_request to jwtd's HTTP
#                    front (keepalive upstream, as deploy/nginx.conf), jwtd
#                    caching, one token
#   nginx-*-c1       the same two at 1 connection: no queueing anywhere, so
#                    auth - plain is the round trip the subrequest adds
#   nginx-*-half     the same two paced open loop (--rate) at half the
#                    nginx-auth throughput (latency counted from each
#                    request's scheduled time); flagged in the summary if the
#                    load generator could not hold the rate
#   node-one         the Node jose peer (../shared/peers), the same one token
#   node-es256       the peer, the same 10,000 tokens
# CPU per request: jwtd's from `--server-pid` (/proc, over the measured
# window) in the jwtd-only cells; for nginx (master + worker), the Node
# cluster (primary + workers) and jwtd behind nginx, the utime+stime of the
# process tree sampled over the middle of the measured window, divided by
# the requests answered in it (req/s x seconds). nginx (/usr/sbin/nginx,
# with the auth_request module) and Node (`npm`, peer sources) are optional:
# without them their cells are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=16

# shellcheck source=benches/lib.sh
. benches/lib.sh

# The machine's own counters over the run (steal: time the host took).
stat_before=$(head -1 /proc/stat)
iss=https://issuer.example.test/
aud=api://jwt-sidecar-bench
"$jwtd" keygen --alg ES256 --kid bench-es256 --private "$work/es256.pem" --jwks-file "$work/jwks.json"
python3 - "$work" "$iss" "$aud" <<'PY'
import json, sys
json.dump({"issuer": sys.argv[2], "audience": sys.argv[3]}, open(f"{sys.argv[1]}/meta.json", "w"))
PY
"$jwtd" bench tokens --key "$work/es256.pem" --count 10000 --issuer "$iss" --audience "$aud" > "$work/es256.txt"
head -1 "$work/es256.txt" > "$work/one.txt"

start_jwtd() { # extra flags...
    rm -f "$work/jwtd.sock" "$work/http.sock"
    "$jwtd" serve --socket "$work/jwtd.sock" --http-socket "$work/http.sock" \
        --jwks-file "$work/jwks.json" --issuer "$iss" --audience "$aud" --log warn "$@" &
    jwtd_pid=$!
    pids+=("$jwtd_pid")
    wait_socket "$work/http.sock"
}
stop_jwtd() {
    kill -TERM "$jwtd_pid"
    wait "$jwtd_pid" 2>/dev/null || true
}

# CPU of process trees over the middle of a cell's measured window, for
# servers that are more than one process. Set before calling `cell`:
# cpu_groups=(NAME=PID ...), each PID counted with all its descendants.
cpu_groups=()
results="$work/results.jsonl"
cell() { # name, connections, then bench run flags
    local name=$1 c=$2
    shift 2
    local out sampler='' cpu='{}'
    if [ "${#cpu_groups[@]}" -gt 0 ]; then
        python3 - "$secs" "$work/cpu.json" "${cpu_groups[@]}" <<'PY' &
import json, os, sys, time
secs, out, groups = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
margin = min(0.5, 0.1 * secs)  # bench run warms up 1 s, then measures secs

def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()

def tree(root):
    kids = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            kids.setdefault(int(stat(d)[1]), []).append(int(d))
        except OSError:
            pass
    todo, found = [root], []
    while todo:
        p = todo.pop()
        found.append(p)
        todo += kids.get(p, [])
    return found

def cpu(pids):
    total = 0
    for p in pids:
        try:
            f = stat(p)
        except OSError:
            continue
        total += int(f[11]) + int(f[12])  # utime + stime
    return total / os.sysconf("SC_CLK_TCK")

time.sleep(1 + margin)
trees = {g.split("=")[0]: tree(int(g.split("=")[1])) for g in groups}
before, t0 = {n: cpu(p) for n, p in trees.items()}, time.monotonic()
time.sleep(secs - 2 * margin)
after, t1 = {n: cpu(p) for n, p in trees.items()}, time.monotonic()
json.dump({"wall": t1 - t0, **{n: after[n] - before[n] for n in trees}}, open(out, "w"))
PY
        sampler=$!
    fi
    out=$("$jwtd" bench run --json --http -d "${secs}s" -c "$c" "$@")
    if [ -n "$sampler" ]; then
        wait "$sampler"
        cpu=$(cat "$work/cpu.json")
    fi
    echo "{\"cell\":\"$name\",\"connections\":$c,\"args\":\"$*\",\"result\":$out,\"cpu\":$cpu}" >> "$results"
    echo "$name: $out cpu=$cpu" >&2
}
rps_of() { # cell name
    python3 - "$results" "$1" <<'PY'
import json, sys
print(int([r for r in map(json.loads, open(sys.argv[1])) if r["cell"] == sys.argv[2]][0]["result"]["rps"]))
PY
}

start_jwtd
cell http-cached "$conns" --socket "$work/http.sock" --tokens "$work/one.txt" --server-pid "$jwtd_pid"

# nginx with two fronts on two sockets, both serving /verify (the path bench
# run --http asks for): plain proxies to a trivial app, auth does the same
# behind auth_request to the jwtd started above (still caching, one token).
nginx_ok=0
nginx_bin=/usr/sbin/nginx
if [ -x "$nginx_bin" ] && "$nginx_bin" -V 2>&1 | grep -q http_auth_request_module; then
    ng=$work/nginx
    mkdir -p "$ng/tmp"
    # As root, nginx's worker would drop to "nobody", who cannot reach the
    # sockets in this private work directory.
    user=
    [ "$(id -u)" = 0 ] && user="user root;"
    cat > "$ng/nginx.conf" <<EOF
$user
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 1024; }

http {
    access_log off;
    # bench run cannot reconnect: keep its connections for the whole cell
    # (by default nginx closes one after 1000 requests).
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
    client_body_temp_path $ng/tmp/body;
    proxy_temp_path $ng/tmp/proxy;
    fastcgi_temp_path $ng/tmp/fastcgi;
    uwsgi_temp_path $ng/tmp/uwsgi;
    scgi_temp_path $ng/tmp/scgi;

    upstream jwtd {
        server unix:$work/http.sock;
        keepalive 16;
    }
    upstream app {
        server unix:$ng/app.sock;
        keepalive 16;
    }

    server {
        listen unix:$ng/plain.sock;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }

    # The location and subrequest of deploy/nginx.conf, on the same app.
    server {
        listen unix:$ng/auth.sock;
        location / {
            auth_request /_jwtd;
            auth_request_set \$jwt_sub \$upstream_http_x_jwt_sub;
            auth_request_set \$jwt_iss \$upstream_http_x_jwt_iss;
            auth_request_set \$jwt_scope \$upstream_http_x_jwt_scope;
            proxy_set_header X-Jwt-Sub \$jwt_sub;
            proxy_set_header X-Jwt-Iss \$jwt_iss;
            proxy_set_header X-Jwt-Scope \$jwt_scope;
            proxy_set_header Authorization "";
            auth_request_set \$jwt_challenge \$upstream_http_www_authenticate;
            add_header WWW-Authenticate \$jwt_challenge always;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /_jwtd {
            internal;
            proxy_pass http://jwtd/verify;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI \$request_uri;
        }
    }

    server {
        listen unix:$ng/app.sock;
        location / {
            return 200 "ok\n";
        }
    }
}
EOF
    "$nginx_bin" -p "$ng" -c "$ng/nginx.conf" -e "$ng/error.log" -g "daemon off;" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_socket "$ng/plain.sock"
    wait_socket "$ng/auth.sock"
    cpu_groups=("nginx=$nginx_pid" "jwtd=$jwtd_pid")
    cell nginx-plain "$conns" --socket "$ng/plain.sock" --tokens "$work/one.txt"
    cell nginx-auth "$conns" --socket "$ng/auth.sock" --tokens "$work/one.txt"
    cell nginx-plain-c1 1 --socket "$ng/plain.sock" --tokens "$work/one.txt"
    cell nginx-auth-c1 1 --socket "$ng/auth.sock" --tokens "$work/one.txt"
    half=$(( $(rps_of nginx-auth) / 2 ))
    cell nginx-plain-half "$conns" --rate "$half" --socket "$ng/plain.sock" --tokens "$work/one.txt"
    cell nginx-auth-half "$conns" --rate "$half" --socket "$ng/auth.sock" --tokens "$work/one.txt"
    cpu_groups=()
    kill -TERM "$nginx_pid"
    wait "$nginx_pid" 2>/dev/null || true
    if grep -q '\[\(error\|crit\|alert\|emerg\)\]' "$ng/error.log"; then
        echo "nginx logged errors:" >&2
        grep '\[\(error\|crit\|alert\|emerg\)\]' "$ng/error.log" | tail -5 >&2
    fi
    nginx_ok=1
else
    echo "nginx: $nginx_bin missing or without auth_request; skipping its cells" >&2
fi
stop_jwtd

start_jwtd --cache-entries 0
cell http-es256 "$conns" --socket "$work/http.sock" --tokens "$work/es256.txt" --server-pid "$jwtd_pid"
stop_jwtd

node_ok=0
peers=../shared/peers
if command -v npm >/dev/null && [ -f "$peers/server.js" ]; then
    cp -r "$peers/server.js" "$peers/package.json" "$peers/package-lock.json" "$work/"
    if (cd "$work" && npm ci --silent --no-audit --no-fund >/dev/null 2>&1); then
        JWKS_FILE="$work/jwks.json" META_FILE="$work/meta.json" PORT='' SOCKET="$work/node.sock" \
            node "$work/server.js" >/dev/null 2>&1 &
        node_pid=$!
        pids+=("$node_pid")
        wait_socket "$work/node.sock"
        sleep 1
        # The peer is a cluster: the primary and its workers.
        cpu_groups=("node=$node_pid")
        cell node-one "$conns" --socket "$work/node.sock" --tokens "$work/one.txt"
        cell node-es256 "$conns" --socket "$work/node.sock" --tokens "$work/es256.txt"
        cpu_groups=()
        kill "$node_pid"
        wait "$node_pid" 2>/dev/null || true
        node_ok=1
    else
        echo "node peer: npm ci failed; skipping its cells" >&2
    fi
else
    echo "node peer: npm or $peers missing; skipping its cells" >&2
fi

python3 - "$results" "$secs" "$nginx_ok" "$node_ok" "$stat_before" "$(head -1 /proc/stat)" <<'PY'
import json, sys
cells = [json.loads(l) for l in open(sys.argv[1])]
rows = {c["cell"]: c for c in cells}
nginx_ok, node_ok = sys.argv[3] == "1", sys.argv[4] == "1"

def per_req(c, group):
    """CPU us per request of a sampled process tree, or None."""
    cpu = c["cpu"]
    if group not in cpu or not cpu.get("wall"):
        return None
    return cpu[group] * 1e6 / (c["result"]["rps"] * cpu["wall"])

def jwtd_cpu(c):
    r = c["result"].get("server_cpu_us_per_request")
    return r if r is not None else per_req(c, "jwtd")

fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
# /proc/stat "cpu" line: user nice system idle iowait irq softirq steal
d = [int(b) - int(a) for a, b in zip(sys.argv[5].split()[1:9], sys.argv[6].split()[1:9])]
print(f"\nmachine over the run: {100 * d[3] / sum(d):.0f}% idle, {100 * d[7] / sum(d):.1f}% stolen by the host")
print(f"\n## Results ({sys.argv[2]} s per cell, HTTP/1.1 GET /verify, one request at a time per connection)\n")
print("| cell | conns | req/s | p50 us | p99 us | p99.9 us | jwtd CPU us/req | nginx or node CPU us/req | not 200 |")
print("|---|---|---|---|---|---|---|---|---|")
for c in cells:
    r = c["result"]
    other = per_req(c, "nginx") if "nginx" in c["cpu"] else per_req(c, "node")
    print(f"| {c['cell']} | {c['connections']} | {r['rps']:.0f} | {r['p50_us']:.1f} | {r['p99_us']:.1f} "
          f"| {r['p999_us']:.1f} | {fmt(jwtd_cpu(c))} | {fmt(other)} | {r['invalid'] + r['other']} |")

cached = rows["http-cached"]["result"]
print("\n| ratio | value | target |")
print("|---|---|---|")
if node_ok:
    print(f"| jwtd HTTP cached / Node jose (same token), throughput | {cached['rps'] / rows['node-one']['result']['rps']:.1f}x | >= 10x |")
    print(f"| jwtd HTTP uncached ES256 / Node jose (10k tokens), throughput | {rows['http-es256']['result']['rps'] / rows['node-es256']['result']['rps']:.1f}x | >= 2x |")
print(f"| jwtd HTTP cached p99, 16 connections | {cached['p99_us']:.1f} us | < 1 ms |")
print(f"| jwtd CPU per cached HTTP request | {fmt(jwtd_cpu(rows['http-cached']))} us | < 20 us |")
print(f"| jwtd CPU per uncached ES256 HTTP request | {fmt(jwtd_cpu(rows['http-es256']))} us | |")
if node_ok:
    # CPU per request does not depend on how much of the 2 cores the host
    # left the run, so it is the steadier comparison on a noisy machine.
    for j, n, what in (("http-cached", "node-one", "same token"), ("http-es256", "node-es256", "uncached ES256, 10k tokens")):
        jc, nc = jwtd_cpu(rows[j]), per_req(rows[n], "node")
        ratio = f"{nc / jc:.1f}x" if jc and nc else "n/a"
        print(f"| Node cluster / jwtd CPU per request, {what} | {ratio} ({fmt(nc)} / {fmt(jc)} us) | |")
if nginx_ok:
    for suffix, what in (("", "16 connections"), ("-c1", "1 connection"), ("-half", "open loop")):
        p, a = rows["nginx-plain" + suffix], rows["nginx-auth" + suffix]
        pr, ar = p["result"], a["result"]
        note = ""
        if suffix == "-half":
            rate = int(p["args"].split("--rate ")[1].split()[0])
            what = f"open loop at {rate} req/s"
            if max(pr["rps"], ar["rps"]) > 1.1 * rate:
                note = " (rate NOT honoured: bench ran closed loop, see the req/s column)"
        print(f"| nginx added by auth_request, {what}: p50 | {ar['p50_us'] - pr['p50_us']:.1f} us "
              f"({pr['p50_us']:.1f} -> {ar['p50_us']:.1f}){note} | |")
        print(f"| nginx added by auth_request, {what}: p99 | {ar['p99_us'] - pr['p99_us']:.1f} us "
              f"({pr['p99_us']:.1f} -> {ar['p99_us']:.1f}){note} | |")
    p, a = rows["nginx-plain"], rows["nginx-auth"]
    print(f"| nginx with auth_request / plain nginx, throughput at 16 connections | {a['result']['rps'] / p['result']['rps']:.2f} | |")
    print(f"| nginx CPU per request, plain -> with auth_request | {fmt(per_req(p, 'nginx'))} -> {fmt(per_req(a, 'nginx'))} us | |")
PY
