#!/usr/bin/env bash
# tests/install_check.sh BUILD_DIR — installs the build into a temporary prefix and builds + runs a consumer
# project that finds it with find_package(retikd): proves the install/export rules work.
set -euo pipefail
build_dir=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cuda_compiler=$(grep -E '^CMAKE_CUDA_COMPILER:' "$build_dir/CMakeCache.txt" | cut -d= -f2 || true)
args=(-DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release)
[[ -n "$cuda_compiler" ]] && args+=(-DCMAKE_CUDA_COMPILER="$cuda_compiler")
cmake -S "$here/install_consumer" -B "$work/build" "${args[@]}" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"
