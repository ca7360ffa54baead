#!/usr/bin/env bash
# scripts/test.sh — the README's test command: installs what is missing (Debian packages), builds everything
# in Release (library, CUDA kernels for one modern arch when nvcc 13 is present, tests, examples,
# benchmarks), runs every test through ctest (the data-parallel ones under mpirun), then runs the sm_53 gate
# (scripts/sm53_gate.sh), which installs Debian's CUDA 11.8 itself. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# libopenmpi-dev + openmpi-bin: the retikd::mpi component and mpirun for the data-parallel tests (ctest dist_*).
packages=(cmake g++ make libstb-dev doctest-dev libbenchmark-dev libopenblas-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

build_dir=${RETIKD_BUILD_DIR:-build/release}
cuda_args=()
# Prefer CUDA 13 for the main build (Debian's 11.8 in /usr/bin is for the sm_53 gate only); one modern
# real arch keeps CI fast — the gate covers sm_53 and the other arches.
if [[ -x /usr/local/cuda/bin/nvcc ]]; then
  cuda_args=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCMAKE_CUDA_ARCHITECTURES=75-real)
else
  echo "test.sh: no CUDA 13 toolkit at /usr/local/cuda: building without the CUDA library"
  cuda_args=(-DRETIKD_CUDA=OFF)
fi
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "${cuda_args[@]}"
cmake --build "$build_dir" -j2
ctest --test-dir "$build_dir" --output-on-failure
bash scripts/sm53_gate.sh
echo "test.sh: all done in $(( $(date +%s) - start )) s"
