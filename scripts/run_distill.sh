#!/usr/bin/env bash
# scripts/run_distill.sh — the README's main-job command: installs what is missing, builds the examples in
# Release, and runs examples/distill_retina on ../shared/data/fundus4 when it is there (or $RETIKD_DATA), else
# on the built-in synthetic fundus set. Extra arguments go to distill_retina. The DINOv2 teacher's weights come
# from ../shared, else scripts/fetch_teacher.sh downloads them into a cache folder; when neither works the
# pipeline falls back to a scratch teacher and says so in its log and report.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(cmake g++ make libstb-dev libonnx-dev libprotobuf-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Its own build folder: the test build (build/release) has other options.
build_dir=${RETIKD_MAIN_BUILD_DIR:-build/main}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DRETIKD_CUDA=OFF -DRETIKD_BUILD_TESTS=OFF \
  -DRETIKD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build_dir" -j2 --target distill_retina
bash scripts/fetch_teacher.sh || true   # says itself what failed; the pipeline then uses a scratch teacher
args=()
if [[ -n "${RETIKD_DATA:-}" ]]; then args+=(--data "$RETIKD_DATA"); fi
exec "$build_dir/examples/distill_retina" "${args[@]}" "$@"
