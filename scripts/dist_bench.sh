#!/usr/bin/env bash
# scripts/dist_bench.sh [BUILD_DIR] [REPEATS] — the data-parallel speed-up on this machine (docs/distributed.md):
# 2 ranks × 1 thread against 1 rank × 1 thread, for the MobileNetV2 training step (224 px) and the KD step of the
# quick preset (as the preset defines it now: logit KD at 160 px; docs/distributed.md measured it at 128 px with the
# former PCA + GL + discriminator recipe),
# interleaved and repeated so that other work on the machine hits both alike. Per repeat it runs, each under
# `mpirun --bind-to core` (one core per rank):
#   1 rank,  batch 8   — the baseline
#   2 ranks, batch 8 per rank (global 16) — same work per process: images/s should double
#   1 rank,  batch 16  — the same global batch in one process (the strong-scaling baseline)
# and prints the machine's load average before each run. Needs both cores idle to mean anything: run it when
# `uptime` shows a load below ~0.5, or several times and keep the quietest window.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
repeats=${2:-3}
bin=$build/bench/retikd_bench_dist
if [[ ! -x "$bin" ]]; then
  echo "dist_bench.sh: $bin not built (cmake --build $build --target retikd_bench_dist)" >&2
  exit 1
fi
export RETIKD_NUM_THREADS=1
run() {  # run NP ARGS...
  local np=$1
  shift
  echo "-- load $(cut -d' ' -f1-3 /proc/loadavg): $np rank(s) $*"
  mpirun --allow-run-as-root --bind-to core -np "$np" -x RETIKD_NUM_THREADS "$bin" "$@"
}
lscpu | grep -E "Model name|^CPU\(s\)"
for rep in $(seq 1 "$repeats"); do
  echo "== repeat $rep of $repeats"
  for step in student kd; do
    run 1 --step "$step" --batch 8 --steps 6
    run 2 --step "$step" --batch 8 --steps 6
    run 1 --step "$step" --batch 16 --steps 6
  done
done
