#!/usr/bin/env bash
# Soak: one daemon for SECONDS (600 for the figure in docs/reliability.md)
# with its native socket and HTTP front, Redis revocation and a remote JWKS,
# under a steady mixed load while the signing key rotates every 30 s
# (publish the next key, 10 s later sign with it, 10 s later retire the old
# one) and Redis is restarted once, halfway. Every second it samples the
# daemon's RSS and open fds; every reply is checked against the verdict
# expected for it (hot and distinct valid tokens: valid; tokens of a key
# never published: unknown_key; revoked tokens: revoked).
#
#   benches/soak.sh SECONDS        (at least 90, a multiple of 10)
#
# The load (per 10 s slice, `jwtd bench run` processes, open loop): 60,000
# cached native requests/s and 1,500 over HTTP, 800 native and 100 HTTP
# misses/s (distinct tokens of the current key), 500 invalid and 200
# revoked native requests/s. A probe sends one revoked token every 50 ms
# and records the UNDECIDED answers of the fail-closed window while Redis is
# down. The daemon's cache holds 20,000 entries, so it is full within the
# 60 s warm-up and the rest of the run is its steady state (with the default
# 100,000 and 400 new tokens/s, RSS grows for 250 s while the cache fills).
# Needs redis-server and redis-cli (Debian's redis-server package).
# The gRPC front is not loaded yet (no gRPC client in `jwtd bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:?usage: benches/soak.sh SECONDS}
command -v redis-server >/dev/null || { echo "benches/soak.sh: needs redis-server (apt-get install redis-server)" >&2; exit 1; }

# shellcheck source=benches/lib.sh
. benches/lib.sh

logs=$(mktemp -d /tmp/jwtd-soak.XXXXXX)
echo "logs: $logs" >&2
python3 benches/soak.py "$secs" "$jwtd" "$work" "$logs"
