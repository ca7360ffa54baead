#!/usr/bin/env bash
# scripts/gpu_prepare.sh — builds here (no GPU needed) everything scripts/gpu_check.sh runs on an H100 machine
# that has CUDA 13 and PyTorch but may install nothing: retikd_tests and the fused-kernel benchmark for sm_90
# with CUDA 13, retikd_bench_jetson (its GPU section), the whole-model GPU benchmark (scripts/gpu_bench_kd.cpp),
# portable host code (no -march=native: the GPU host's CPU differs), stripped, in one git-ignored folder that the device run carries (limit 64 MiB), plus Google Benchmark's libbenchmark.so.1 (for bench
# binaries that need it) and a copy of ../shared/peers (the PyTorch anchor scripts).
#
#   bash scripts/gpu_prepare.sh            # → build/gpu (RETIKD_GPU_BUILD overrides)
# then carry build/gpu and run `bash scripts/gpu_check.sh` on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${RETIKD_GPU_BUILD:-build/gpu}
NVCC=${RETIKD_NVCC:-/usr/local/cuda/bin/nvcc}
JOBS=${RETIKD_JOBS:-2}

nice -n 15 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DRETIKD_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DRETIKD_NATIVE=OFF -DRETIKD_BUILD_EXAMPLES=OFF -DRETIKD_BUILD_BENCHMARKS=ON >/dev/null
nice -n 15 cmake --build "$BUILD" -j"$JOBS" --target retikd_cuda retikd_tests retikd_bench_jetson

CUDA_HOME=$(dirname "$(dirname "$NVCC")")
nice -n 15 g++ -std=c++17 -O2 -Wall -Wextra -Iinclude -I"$CUDA_HOME/include" scripts/gpu_bench_fused.cpp \
  "$BUILD/libretikd_cuda.a" -L"$CUDA_HOME/lib64" -lcudart -lcublas -lpthread -o "$BUILD/gpu_bench_fused"
CUDNN_LIB=$(awk -F= '/^RETIKD_CUDNN_LIBRARY:/{print $2}' "$BUILD/CMakeCache.txt")
nice -n 15 g++ -std=c++17 -O2 -Wall -Wextra -DRETIKD_WITH_CUDA=1 -Iinclude -I"$CUDA_HOME/include" scripts/gpu_bench_kd.cpp \
  "$BUILD/libretikd_cuda.a" -L"$CUDA_HOME/lib64" -lcudart -lcublas ${CUDNN_LIB:+"$CUDNN_LIB"} -lpthread -o "$BUILD/gpu_bench_kd"
strip "$BUILD/tests/retikd_tests" "$BUILD/gpu_bench_fused" "$BUILD/gpu_bench_kd" "$BUILD/bench/retikd_bench_jetson"

mkdir -p "$BUILD/lib" "$BUILD/peers"
lib=$(ldconfig -p | awk '/libbenchmark\.so\.1 /{print $NF; exit}')
if [ -n "$lib" ]; then cp -L "$lib" "$BUILD/lib/"; else echo "note: libbenchmark.so.1 not found (no bench binary needs it yet)"; fi
if [ -d ../shared/peers ]; then cp ../shared/peers/*.py ../shared/peers/README.md "$BUILD/peers/" 2>/dev/null || true; fi

# Only what the run needs travels: the binaries, lib/ and peers/; the rest of the build folder is removed
# from a staging copy so the carry stays under its 64 MiB.
STAGE=${RETIKD_GPU_STAGE:-build/gpu_carry}
rm -rf "$STAGE"
mkdir -p "$STAGE/tests"
cp "$BUILD/tests/retikd_tests" "$STAGE/tests/"
cp "$BUILD/gpu_bench_fused" "$BUILD/gpu_bench_kd" "$BUILD/bench/retikd_bench_jetson" "$STAGE/"
cp -r "$BUILD/lib" "$BUILD/peers" "$STAGE/"
du -sh "$STAGE"
size=$(du -sm "$STAGE" | cut -f1)
if [ "$size" -gt 60 ]; then echo "error: $STAGE is ${size} MiB, over the carry limit" >&2; exit 1; fi
echo "ready: carry $STAGE, run: RETIKD_GPU_BUILD=$STAGE bash scripts/gpu_check.sh"
