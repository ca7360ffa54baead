#!/usr/bin/env bash
# scripts/sm53_gate.sh — the sm_53 gate: proves that kernels/ still builds for the Jetson Nano (sm_53, C++14)
# and for the current GPUs, and that the gate itself can fail.
#
#   1. installs Debian's CUDA 11.8 (nvidia-cuda-toolkit, non-free) and g++-11 when missing;
#   2. compiles every kernels/*.cu for sm_53 with -std=c++14, ptxas spill / local-memory warnings on and every
#      warning an error (exit code AND output are checked), and checks with cuobjdump that each object holds
#      an sm_53 cubin;
#   3. compiles, each alone in a generated .cu, every header device code includes (core/half.hpp,
#      core/host_device.hpp, every include/retikd/cuda/*.hpp, and whatever else under include/ a kernel pulls
#      in) with the same nvcc and -std=c++14; the cuda/ and core/ headers also with plain g++ -std=c++14 and no
#      CUDA headers in reach, so no CUDA type leaks into what host code includes;
#   4. compiles kernels/*.cu with CUDA 13 for sm_75, sm_80, sm_86, sm_89 and sm_90;
#   5. compiles each negative sample in tests/sm53_gate/ with the flags of step 2 and fails unless every one is
#      rejected, for the reason its `gate-expect:` line names.
#
# Usage: bash scripts/sm53_gate.sh        (from anywhere; exits non-zero on any failure)
# Environment: RETIKD_GATE_JOBS (parallel compiles, default: nproc), RETIKD_MODERN_NVCC (default
# /usr/local/cuda/bin/nvcc), RETIKD_GATE_NO_INSTALL=1 (never call apt-get), RETIKD_GATE_KEEP=1 (keep the
# temp dir with objects and logs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

JOBS="${RETIKD_GATE_JOBS:-$(nproc 2>/dev/null || echo 2)}"
NVCC53=/usr/bin/nvcc
NVCC_MODERN="${RETIKD_MODERN_NVCC:-/usr/local/cuda/bin/nvcc}"
HOST53=g++-11
# Debian's nvcc finds ptxas, fatbinary and cuobjdump on PATH; CUDA 13's (which cannot target sm_53) must not
# come first.
PATH53=/usr/lib/nvidia-cuda-toolkit/bin:/usr/bin:/bin:/usr/sbin:/sbin

T_START=$(date +%s.%N)
T_STEP=$T_START
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step_done() {
  echo "    ($(elapsed "$T_STEP") s)"
  T_STEP=$(date +%s.%N)
}
die() {
  echo "sm53 gate: ERROR: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------------------------
# 1. Toolchain.
echo "==> toolchain"
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
if ! have_pkg nvidia-cuda-toolkit || ! have_pkg g++-11 || [ ! -x "$NVCC53" ] || ! command -v "$HOST53" >/dev/null; then
  [ "${RETIKD_GATE_NO_INSTALL:-0}" = 1 ] && die "nvidia-cuda-toolkit / g++-11 missing and RETIKD_GATE_NO_INSTALL=1"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "need root (or sudo) to install nvidia-cuda-toolkit and g++-11"
    SUDO="sudo"
  fi
  SOURCES=/etc/apt/sources.list.d/debian.sources
  if [ -f "$SOURCES" ]; then
    # Add contrib non-free non-free-firmware to every Components: line that lacks them (idempotent).
    # Exit 0 when some Components: line lacks one of the three.
    if awk '/^Components:/ { for (k = 1; k <= split("contrib non-free non-free-firmware", add, " "); k++) {
                               found = 0; for (i = 2; i <= NF; i++) if ($i == add[k]) found = 1
                               if (!found) missing = 1 } }
            END { exit missing ? 0 : 1 }' "$SOURCES"; then
      echo "    enabling contrib non-free non-free-firmware in $SOURCES"
      # shellcheck disable=SC2016  # awk's own $0 / $i
      $SUDO awk '/^Components:/ { line = $0; split("contrib non-free non-free-firmware", add, " ");
                                  for (k = 1; k <= 3; k++) { found = 0;
                                    for (i = 2; i <= NF; i++) if ($i == add[k]) found = 1;
                                    if (!found) line = line " " add[k] }
                                  print line; next } { print }' "$SOURCES" >"/tmp/debian.sources.$$"
      $SUDO cp "/tmp/debian.sources.$$" "$SOURCES"
      rm -f "/tmp/debian.sources.$$"
    fi
  else
    echo "    note: $SOURCES not found; assuming the non-free component is already enabled"
  fi
  echo "    installing nvidia-cuda-toolkit g++-11 (apt-get, non-interactive)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
    --no-install-recommends nvidia-cuda-toolkit g++-11
fi
[ -x "$NVCC53" ] || die "$NVCC53 not found after installing nvidia-cuda-toolkit"
NVCC53_VERSION=$(PATH=$PATH53 "$NVCC53" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
case "$NVCC53_VERSION" in
  1[0-2].*) ;;
  *) die "$NVCC53 is CUDA '$NVCC53_VERSION'; the gate needs a toolkit that still targets sm_53 (10.x to 12.x)" ;;
esac
echo "    sm_53:  $NVCC53 (CUDA $NVCC53_VERSION), host compiler $($HOST53 -dumpfullversion)"

# g++-11's system include path without /usr/local/include: on these machines it holds links to CUDA 13's
# headers, which would otherwise shadow CUDA 11.8's in /usr/include (and make the gate test the wrong headers).
mapfile -t SYS_DIRS < <(LC_ALL=C "$HOST53" -xc++ -E -v - </dev/null 2>&1 |
  sed -n '/#include <...> search starts here:/,/End of search list/p' | sed -n 's/^ \(\/.*\)$/\1/p' |
  grep -vx '/usr/local/include')
[ "${#SYS_DIRS[@]}" -gt 0 ] || die "could not read $HOST53's include search path"
SYS_INC=()
for d in "${SYS_DIRS[@]}"; do SYS_INC+=(-isystem "$d"); done

# shellcheck disable=SC2054  # the commas belong to -Xptxas
NVCC53_FLAGS=(-ccbin "$HOST53" -Xcompiler -nostdinc "${SYS_INC[@]}" -std=c++14 -arch=sm_53
  -Xptxas -warn-spills,-warn-lmem-usage -Werror all-warnings -I include -I kernels)
MODERN_ARCHS=(75 80 86 89 90)
# shellcheck disable=SC2054
MODERN_FLAGS=(-std=c++14 -Xptxas -warn-spills,-warn-lmem-usage -Werror all-warnings -I include -I kernels)
for a in "${MODERN_ARCHS[@]}"; do MODERN_FLAGS+=(-gencode "arch=compute_$a,code=sm_$a"); done
HAVE_MODERN=0
if [ -x "$NVCC_MODERN" ]; then
  HAVE_MODERN=1
  echo "    modern: $NVCC_MODERN (CUDA $("$NVCC_MODERN" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')), sm_${MODERN_ARCHS[*]}"
else
  echo "    modern: $NVCC_MODERN not found: the sm_75..sm_90 builds are SKIPPED"
fi
step_done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sm53_gate.XXXXXX")
if [ "${RETIKD_GATE_KEEP:-0}" = 1 ]; then
  echo "    outputs kept in $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/obj" "$WORK/log" "$WORK/hdr"

# A compile's output must be empty: with -Werror all-warnings a warning fails the build anyway, but ptxas
# spill / local-memory reports are also matched here in case a toolkit prints them without failing.
DIAG_RE='warning|error|spill|local memory|lmem'

# Parallel jobs: run_job NAME CMD... runs CMD in the background, its output in log/NAME.log and its exit
# status in log/NAME.rc; wait_jobs waits for all of them.
run_job() {
  local name=$1
  shift
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  (
    rc=0
    "$@" >"$WORK/log/$name.log" 2>&1 || rc=$?
    echo "$rc" >"$WORK/log/$name.rc"
  ) &
}
wait_jobs() { wait || true; }
job_rc() { cat "$WORK/log/$1.rc" 2>/dev/null || echo 127; }
job_clean() { [ "$(job_rc "$1")" = 0 ] && ! grep -Eqi "$DIAG_RE" "$WORK/log/$1.log"; }
show_log() { sed 's/^/      | /' "$WORK/log/$1.log" | head -n 40; }

FAILURES=()
shopt -s nullglob
KERNELS=(kernels/*.cu)
NEGATIVES=(tests/sm53_gate/*.cu)
shopt -u nullglob
[ "${#KERNELS[@]}" -gt 0 ] || die "no kernels/*.cu to check"
[ "${#NEGATIVES[@]}" -gt 0 ] || die "no negative samples in tests/sm53_gate/: the gate could not prove it can fail"

# ---------------------------------------------------------------------------------------------------------
# 2. kernels/*.cu for sm_53 (and, in the same parallel batch, 4. for the modern arches).
echo "==> kernels/*.cu: sm_53 with CUDA $NVCC53_VERSION$([ $HAVE_MODERN = 1 ] && echo ", sm_75..sm_90 with $NVCC_MODERN") (${#KERNELS[@]} files, $JOBS jobs)"
for src in "${KERNELS[@]}"; do
  base=$(basename "$src" .cu)
  run_job "k53_$base" env PATH="$PATH53" "$NVCC53" "${NVCC53_FLAGS[@]}" -c "$src" -o "$WORK/obj/$base.sm53.o"
  if [ $HAVE_MODERN = 1 ]; then
    run_job "kmod_$base" "$NVCC_MODERN" "${MODERN_FLAGS[@]}" -c "$src" -o "$WORK/obj/$base.modern.o"
  fi
done
wait_jobs
KERNELS_OK=0
MODERN_OK=0
for src in "${KERNELS[@]}"; do
  base=$(basename "$src" .cu)
  if ! job_clean "k53_$base"; then
    echo "    FAIL $src (sm_53): exit $(job_rc "k53_$base"), diagnostics:"
    show_log "k53_$base"
    FAILURES+=("$src does not build cleanly for sm_53")
  elif ! PATH=$PATH53 cuobjdump --list-elf "$WORK/obj/$base.sm53.o" 2>&1 | grep -q 'sm_53\.cubin'; then
    echo "    FAIL $src: the object holds no sm_53 cubin:"
    PATH=$PATH53 cuobjdump --list-elf "$WORK/obj/$base.sm53.o" 2>&1 | sed 's/^/      | /'
    FAILURES+=("$src has no sm_53 cubin")
  else
    echo "    ok   $src (sm_53, $(PATH=$PATH53 cuobjdump --list-elf "$WORK/obj/$base.sm53.o" | grep -c 'sm_53') sm_53 cubin)"
    KERNELS_OK=$((KERNELS_OK + 1))
  fi
  if [ $HAVE_MODERN = 1 ]; then
    if job_clean "kmod_$base"; then
      echo "    ok   $src (sm_$(IFS=,; echo "${MODERN_ARCHS[*]}"))"
      MODERN_OK=$((MODERN_OK + 1))
    else
      echo "    FAIL $src (sm_75..sm_90): exit $(job_rc "kmod_$base"), diagnostics:"
      show_log "kmod_$base"
      FAILURES+=("$src does not build cleanly for sm_75..sm_90")
    fi
  fi
done
step_done

# ---------------------------------------------------------------------------------------------------------
# 3. Headers device code includes, each alone in its own translation unit.
echo "==> headers device code includes: each alone, nvcc $NVCC53_VERSION -std=c++14 (sm_53); g++ -std=c++14 without CUDA"
HEADERS=(include/retikd/core/half.hpp include/retikd/core/host_device.hpp include/retikd/cuda/*.hpp)
# Plus whatever else under include/ the kernels pull in (nvcc -M lists every header a kernel reaches).
kernel_headers() {
  PATH=$PATH53 "$NVCC53" "${NVCC53_FLAGS[@]}" -M "$1" 2>/dev/null | tr -s '[:blank:]\134' '\n' |  # \134: the backslash of continued lines
    while IFS= read -r p; do
      [ -f "$p" ] || continue
      p=$(realpath --relative-base="$ROOT" "$p")
      case "$p" in include/*) echo "$p" ;; esac
    done
}
for src in "${KERNELS[@]}"; do
  while IFS= read -r dep; do HEADERS+=("$dep"); done < <(kernel_headers "$src")
done
mapfile -t HEADERS < <(printf '%s\n' "${HEADERS[@]}" | sort -u)
for h in "${HEADERS[@]}"; do
  [ -f "$h" ] || die "header $h not found"
  id=$(echo "${h#include/}" | tr '/.' '__')
  {
    echo "// generated by scripts/sm53_gate.sh: $h must compile alone with nvcc -std=c++14"
    echo "#include \"${h#include/}\""
    if [ "$h" = include/retikd/core/half.hpp ]; then
      # Instantiate the device side of Half, not just parse it.
      echo '__global__ void half_round_trip(retikd::Half* out, const float* in, int n) {'
      echo '  const int i = blockIdx.x * blockDim.x + threadIdx.x;'
      echo '  if (i < n) out[i] = retikd::Half(static_cast<float>(retikd::Half(in[i])) * 2.0f);'
      echo '}'
    fi
  } >"$WORK/hdr/$id.cu"
  run_job "h53_$id" env PATH="$PATH53" "$NVCC53" "${NVCC53_FLAGS[@]}" -c "$WORK/hdr/$id.cu" -o "$WORK/obj/hdr_$id.o"
  # Host side: plain C++14, no CUDA include directory and no /usr/local/include.
  printf '#include "%s"\n' "${h#include/}" >"$WORK/hdr/$id.cpp"
  run_job "hcpp_$id" "$HOST53" -nostdinc "${SYS_INC[@]}" -std=c++14 -fsyntax-only -Wall -Wextra -Wpedantic -Werror \
    -I include "$WORK/hdr/$id.cpp"
done
wait_jobs
HEADERS_OK=0
for h in "${HEADERS[@]}"; do
  id=$(echo "${h#include/}" | tr '/.' '__')
  ok=1
  if ! job_clean "h53_$id"; then
    echo "    FAIL $h with nvcc -std=c++14:"
    show_log "h53_$id"
    FAILURES+=("$h does not compile alone with nvcc $NVCC53_VERSION -std=c++14")
    ok=0
  fi
  if ! job_clean "hcpp_$id"; then
    echo "    FAIL $h with $HOST53 -std=c++14 and no CUDA headers:"
    show_log "hcpp_$id"
    FAILURES+=("$h does not compile alone as host C++14 without CUDA headers")
    ok=0
  fi
  if [ $ok = 1 ]; then
    echo "    ok   $h"
    HEADERS_OK=$((HEADERS_OK + 1))
  fi
done
step_done

# ---------------------------------------------------------------------------------------------------------
# 5. Negative samples: each must be rejected by the flags of step 2, for the reason its file names.
echo "==> negative samples: tests/sm53_gate/*.cu must be rejected"
for src in "${NEGATIVES[@]}"; do
  base=$(basename "$src" .cu)
  run_job "neg_$base" env PATH="$PATH53" "$NVCC53" "${NVCC53_FLAGS[@]}" -c "$src" -o "$WORK/obj/neg_$base.o"
  # Control: the same sample with the same warning flags for sm_75 should build, which shows the rejection
  # above is sm_53's and not a broken sample (informational only).
  if [ $HAVE_MODERN = 1 ]; then
    run_job "ctl_$base" "$NVCC_MODERN" -std=c++14 -Xptxas -warn-spills,-warn-lmem-usage -Werror all-warnings \
      -arch=sm_75 -c "$src" -o "$WORK/obj/ctl_$base.o"
  fi
done
wait_jobs
REJECTED=0
for src in "${NEGATIVES[@]}"; do
  base=$(basename "$src" .cu)
  expect=$(sed -n 's|^// gate-expect: ||p' "$src" | head -n 1)
  [ -n "$expect" ] || die "$src lacks a '// gate-expect: <regex>' line"
  if job_clean "neg_$base"; then
    echo "    FAIL $src compiled cleanly: the gate cannot catch what this sample holds"
    FAILURES+=("negative sample $src was accepted")
  elif ! grep -Eq "$expect" "$WORK/log/neg_$base.log"; then
    echo "    FAIL $src was rejected, but not for the expected reason (/$expect/):"
    show_log "neg_$base"
    FAILURES+=("negative sample $src was rejected for the wrong reason")
  else
    echo "    ok   $src rejected (exit $(job_rc "neg_$base")):"
    grep -E "$expect" "$WORK/log/neg_$base.log" | head -n 3 | sed 's/^/      | /'
    if [ $HAVE_MODERN = 1 ]; then
      if job_clean "ctl_$base"; then
        echo "      (control: builds cleanly for sm_75 with the same flags)"
      else
        echo "      (note: the control build for sm_75 fails too: the sample may not isolate an sm_53 limit)"
      fi
    fi
    REJECTED=$((REJECTED + 1))
  fi
done
step_done

# ---------------------------------------------------------------------------------------------------------
echo "==> total $(elapsed "$T_START") s"
if [ $HAVE_MODERN = 1 ]; then
  echo "modern gate: $MODERN_OK/${#KERNELS[@]} kernels ok for sm_$(IFS=,; echo "${MODERN_ARCHS[*]}")"
else
  echo "modern gate: skipped ($NVCC_MODERN not found)"
fi
echo "sm53 gate: $KERNELS_OK kernels ok, $HEADERS_OK headers ok, $REJECTED/${#NEGATIVES[@]} negative samples rejected"
if [ "${#FAILURES[@]}" -gt 0 ]; then
  echo "sm53 gate: FAILED (${#FAILURES[@]}):"
  printf '  - %s\n' "${FAILURES[@]}"
  exit 1
fi
