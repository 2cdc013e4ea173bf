# Shared by the end-to-end benchmark scripts (benches/*.sh): source it after
# `cd` to the repository root. It builds the release binary, makes a work
# directory, and stops every process listed in `pids` on exit.
#
# Sets: jwtd (the binary), work (the directory), pids (append server pids).
# Defines: wait_socket PATH (waits until a server accepts on PATH).

cargo build --release --quiet
jwtd=$PWD/target/release/jwtd
work=$(mktemp -d /tmp/jwtd-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

wait_socket() {
    for _ in $(seq 200); do
        [ -S "$1" ] && python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "no server on $1" >&2
    exit 1
}
