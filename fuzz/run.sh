#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one after the
# other, and prints one Markdown row per target for docs/reliability.md.
#
#   fuzz/run.sh SECONDS [TARGET...]
#   RUNS=10000000 fuzz/run.sh SECONDS ...   stop each target after RUNS
#                                           executions, or SECONDS, first
#
# Targets: native_frame token keys jwe dpop authz config (fuzz/Cargo.toml
# says what each covers). cargo-fuzz is installed if missing; the stable
# toolchain is used with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags).
# No sanitizer (-s none: jwtd's own code is safe Rust, and aws-lc's C is
# not instrumented either way), debug assertions on (-a: an overflow is a
# crash). Seeds come from tests/conformance/ (fuzz/seeds.py); the corpus
# grows in fuzz/corpus/TARGET, crashes land in fuzz/artifacts/TARGET. A
# crash stops that target; the row says so and names the file.
#
# Not part of CI: this is the long-running proof, run by hand.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(native_frame token keys jwe dpop authz config)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none -a >&2
python3 seeds.py
commit=$(git rev-parse --short HEAD)
echo "| target | seconds | executions | exec/s | coverage (edges) | features | corpus | crashes |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t" logs
    log=logs/$t.log
    status=0
    cargo fuzz run -s none -a "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" ${RUNS:+-runs="$RUNS"} -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=$?
    python3 - "$t" "$log" "$status" "artifacts/$t" <<'PY'
import os, re, sys
t, log, status, artifacts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
text = open(log, errors="replace").read()
stat = lambda name: (re.findall(rf"stat::{name}:\s*(\d+)", text) or ["?"])[-1]
lines = [l for l in text.splitlines() if re.match(r"#\d+\s", l)]
last = lines[-1] if lines else ""
cov = (re.findall(r"cov: (\d+)", last) or ["?"])[0]
ft = (re.findall(r"ft: (\d+)", last) or ["?"])[0]
corp = (re.findall(r"corp: (\d+)", last) or ["?"])[0]
execs, secs = stat("number_of_executed_units"), stat("slowest_unit_time_sec")
took = (re.findall(r"Done (\d+) runs in (\d+) second", text) or [("?", "?")])[-1][1]
rate = stat("average_exec_per_sec")
crashes = sorted(os.listdir(artifacts))
crash = "none" if status == 0 and not crashes else f"exit {status}: " + ", ".join(crashes[:3])
print(f"| {t} | {took} | {int(execs):,} | {rate} | {cov} | {ft} | {corp} | {crash} |" if execs != "?" else f"| {t} | ? | ? | ? | {cov} | {ft} | {corp} | {crash} (see fuzz/{log}) |")
PY
done
echo
echo "${RUNS:+RUNS=$RUNS }fuzz/run.sh $secs ${targets[*]} at commit $commit"
