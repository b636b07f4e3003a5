#!/usr/bin/env bash
# Everything a lent GPU machine should do, in one call (device time is short):
# install, GPU tests, the suites, and the pytest-benchmark front end. Logs and result
# files go to $OUT; copy the result files into results/ afterwards.
#   usage (on the GPU machine, in the repository root): OUT=/some/dir bash scripts/gpu_session.sh
# A lent machine runs one command for at most 10 minutes: split the work over calls with
#   SUITES="transformer transformer" SKIP_TESTS=1 SKIP_BENCH=1 OUT=... bash scripts/gpu_session.sh
# (the transformer suite twice: its 1.3B rows must agree within 2% between runs).
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
PY=${PY:-python3}
log() { echo "== $* ($(date -u +%T))" | tee -a "$OUT/session.log"; }

log install
$PY -m pip install --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
$PY -m gpubench env >"$OUT/env.txt" 2>&1

if [ -z "${SKIP_TESTS:-}" ]; then
  log "GPU tests"
  $PY -m pytest -q -m gpu tests >"$OUT/gpu-tests.log" 2>&1; echo "gpu tests rc=$?" | tee -a "$OUT/session.log"
  tail -3 "$OUT/gpu-tests.log"
fi

host=$(hostname -s)
n=0
for suite in ${SUITES:-mixed-precision mamf membw attention comm transformer transformer-fits}; do
  n=$((n + 1))
  log "suite $suite"
  start=$(date +%s)
  $PY -m gpubench run --suite "$suite" --out "$OUT/$suite-$host-$n.json" >"$OUT/$suite-$n.txt" 2>"$OUT/$suite-$n.err"
  echo "$suite rc=$? in $(( $(date +%s) - start )) s" | tee -a "$OUT/session.log"
done

if [ -z "${SKIP_BENCH:-}" ]; then
  log "pytest-benchmark"
  $PY -m pytest benchmarks -q -p no:cacheprovider --benchmark-json "$OUT/pytest-benchmark.json" \
    >"$OUT/pytest-benchmark.log" 2>&1; echo "benchmarks rc=$?" | tee -a "$OUT/session.log"
fi

log done
# The reply carries the end of the output: the two tables that matter most.
for f in "$OUT"/*.txt; do sed -n '/^best of/,/^$/p;/^maximum achievable/,/^$/p;/^transformer step/,/^$/p' "$f"; done
cat "$OUT/session.log"
