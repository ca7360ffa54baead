#!/usr/bin/env bash
# scripts/fuzz.sh — builds the libFuzzer targets of tests/fuzz/ with Debian's clang 14 (ASan + UBSan +
# libFuzzer) and fuzzes each reader of untrusted bytes in turn: image decoding, the manifest reader,
# safetensors, JSON, the TFLite importer, the student-bundle loader, the checkpoint loader and the ONNX reader
# (with the DINOv2 and exported-student importers behind it).
#
#   scripts/fuzz.sh [--seconds N | --runs N] [--targets "json image ..."] [--jobs N] [--quick-build]
#                                                       fuzz (default 10 s each; --quick-build: -O0, for CI)
#   scripts/fuzz.sh --make-seeds                        rewrite tests/fuzz/corpus
#
# Each target first replays its crash regressions (tests/fuzz/regressions/<target>/, committed inputs that
# once failed), then fuzzes from the committed seeds (tests/fuzz/corpus/<target>/) into a working corpus in
# the build folder ($RETIKD_FUZZ_BUILD_DIR, default build/fuzz; kept between runs, never in the repository).
# A crash, hang (-timeout), memory blow-up (-rss_limit_mb) or sanitizer report stops the run with exit status
# 1 and names the input, saved under <build>/artifacts/<target>/: commit it to tests/fuzz/regressions/<target>/
# with the fix. CI (scripts/test.sh) runs this with --seconds 5 --quick-build (targets built at -O0 in
# <build>-O0: a quarter of the compile time); the long runs of docs/fuzzing.md use --runs and -O1.
# Installs clang-14, libclang-rt-14-dev and ONNX's libraries with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10 runs="" targets="json safetensors image manifest tflite bundle checkpoint onnx" jobs=2 make_seeds=0 opt=-O1
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --make-seeds) make_seeds=1; shift ;;
    --quick-build) opt=-O0; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 1 ]] || { echo "fuzz.sh: --seconds needs a positive integer" >&2; exit 2; }
[[ -z "$runs" || "$runs" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --runs needs a positive integer" >&2; exit 2; }
[[ "$jobs" =~ ^[0-9]+$ && "$jobs" -ge 1 ]] || { echo "fuzz.sh: --jobs needs a positive integer" >&2; exit 2; }

packages=(cmake make clang-14 libclang-rt-14-dev libstb-dev libonnx-dev libprotobuf-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fuzz.sh: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

build=${RETIKD_FUZZ_BUILD_DIR:-build/fuzz}
[[ "$opt" == -O0 ]] && build="$build-O0"
build_type=RelWithDebInfo
[[ "$opt" == -O0 ]] && build_type=Debug  # the quick build compiles the retikd::onnx library at -O0 as well
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=$build_type \
  -DRETIKD_CUDA=OFF -DRETIKD_BUILD_TESTS=OFF -DRETIKD_BUILD_EXAMPLES=OFF -DRETIKD_BUILD_BENCHMARKS=OFF \
  -DRETIKD_BUILD_FUZZERS=ON -DRETIKD_FUZZ_OPT="$opt" -DRETIKD_ONNX=ON >/dev/null

if ((make_seeds)); then
  cmake --build "$build" --target retikd_fuzz_make_seeds -j"$jobs"
  python3 tests/fuzz/make_seeds.py tests/fuzz/corpus
  "$build/tests/fuzz/retikd_fuzz_make_seeds" tests/fuzz/corpus
  exit 0
fi

start=$(date +%s)
cmake --build "$build" --target retikd_fuzz -j"$jobs"  # one binary, every harness (tests/fuzz/fuzz_all.cpp)
echo "fuzz.sh: built retikd_fuzz (${targets// /, }) in $(( $(date +%s) - start )) s"
bin="$build/tests/fuzz/retikd_fuzz"

# Inputs large enough for every seed; small ones keep each run fast.
max_len() {
  case "$1" in
    bundle) echo 32768 ;;   # the headers and some data of the seeds: the checksum stops mutated data anyway
    image|json|safetensors) echo 65536 ;;
    onnx) echo 262144 ;;    # the whole tiny DINOv2 export (226 KB) and the exported student
    tflite) echo 16384 ;;
    *) echo 8192 ;;
  esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
summary=()
status=0
for t in $targets; do
  export RETIKD_FUZZ_TARGET=$t
  work="$build/corpus/$t"
  artifacts="$build/artifacts/$t/"
  mkdir -p "$work" "$artifacts"
  common=(-max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts" -print_final_stats=1)
  regressions=(tests/fuzz/regressions/"$t"/*)
  if [[ -e "${regressions[0]}" ]]; then
    regressions=()
    for f in tests/fuzz/regressions/"$t"/*; do [[ "$f" == *README.md ]] || regressions+=("$f"); done
    if ((${#regressions[@]})) && ! "$bin" "${common[@]}" "${regressions[@]}" >"$build/$t.regressions.log" 2>&1; then
      echo "fuzz.sh: $t: a crash regression fails again (see $build/$t.regressions.log)"
      tail -n 30 "$build/$t.regressions.log"
      status=1
      summary+=("$t: regression FAILED")
      continue
    fi
  fi
  limit=(-max_total_time="$seconds")
  [[ -n "$runs" ]] && limit=(-runs="$runs")
  log="$build/$t.log"
  t0=$(date +%s)
  if "$bin" "${common[@]}" "${limit[@]}" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    result=clean
  else
    result=FAILED
    status=1
    tail -n 40 "$log"
    echo "fuzz.sh: $t: the failing input is in $artifacts (commit it to tests/fuzz/regressions/$t/ with the fix)"
  fi
  secs=$(( $(date +%s) - t0 ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  summary+=("$(printf '%-12s %-7s %10s executions in %5d s, peak RSS %5s MB, working corpus %5d files' \
    "$t" "$result" "$execs" "$secs" "$rss" "$(find "$work" -type f | wc -l)")")
done
echo "fuzz.sh: summary ($(uname -m), clang-14 $opt -fsanitize=fuzzer,address,undefined)"
for line in "${summary[@]}"; do echo "  $line"; done
exit $status
