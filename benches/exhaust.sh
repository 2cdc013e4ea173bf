#!/usr/bin/env bash
# Resource exhaustion: what a local client can make jwtd hold with the
# default limits, and whether other clients are still served meanwhile.
#
#   benches/exhaust.sh [SCENARIO...]
#
# Each scenario starts a fresh release jwtd with every front (native, HTTP,
# gRPC on Unix sockets; admin on loopback), all limits at their defaults,
# runs one attack from benches/exhaust.py (python3, no libraries), holds it
# for 5 s and prints jwtd's RSS before and at the peak of the attack, the
# connections held, and whether a fresh client of each front (native `jwtd
# ping`, HTTP, gRPC, admin /livez) was served during the attack, then again
# after the attacker closed everything.
#   http-headers   1,000 connections, each a head just under max_header_bytes
#   http-400k      1,000 connections, each sending a ~400 KB head (431 at 32 KiB)
#   grpc-1mb       400 streams announcing ~1 MB each, 10 KB sent, unfinished
#   grpc-held      2,000 streams (20 conns) at 60 KB of a 65,000-byte message
#   native-frames  1,024 connections, each an unfinished 64 KiB frame
#   admin-conns    3,000 keep-alive connections to the admin listener
# Compare the peaks with deploy/kubernetes/deployment.yaml's 128Mi limit.
set -euo pipefail
cd "$(dirname "$0")/.."
# The attacker needs thousands of descriptors; jwtd raises its own soft
# limit to the hard one.
ulimit -n "$(ulimit -Hn)"

# shellcheck source=benches/lib.sh
. benches/lib.sh

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(http-headers http-400k grpc-1mb grpc-held native-frames admin-conns)
echo "jwtd $(git rev-parse --short HEAD), nofile $(ulimit -n), $(nproc) cores"
for s in "${scenarios[@]}"; do
    dir=$work/$s
    mkdir -p "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$jwtd" serve --socket "$dir/jwtd.sock" --http-socket "$dir/http.sock" \
        --grpc-socket "$dir/grpc.sock" --admin-addr "127.0.0.1:$port" \
        --jwks-file deploy/dev/jwks.json --log warn 2>"$dir/jwtd.log" &
    pid=$!
    pids+=("$pid")
    wait_socket "$dir/grpc.sock"
    JWTD=$jwtd python3 benches/exhaust.py "$s" "$pid" "$dir" "$port"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done
