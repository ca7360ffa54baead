#!/usr/bin/env bash
# scripts/sanitize.sh — builds the unit tests with AddressSanitizer + UndefinedBehaviorSanitizer (no CUDA:
# the sanitizers cover host code) and runs them; any report fails the run. Not part of CI (it is slow).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${RETIKD_SANITIZE_BUILD_DIR:-build/sanitize}
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g -O1"
# RelWithDebInfo's own flags (-O2 -g -DNDEBUG) would come after $flags and win; -DNDEBUG alone keeps its meaning.
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-DNDEBUG" \
  -DRETIKD_CUDA=OFF -DRETIKD_BUILD_EXAMPLES=OFF -DRETIKD_BUILD_BENCHMARKS=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"
cmake --build "$build_dir" -j2 --target retikd_tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$build_dir/tests/retikd_tests" --no-intro
echo "sanitize.sh: clean"
