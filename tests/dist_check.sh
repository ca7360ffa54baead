#!/usr/bin/env bash
# tests/dist_check.sh SCENARIO MPIEXEC DIST_CHECK [DISTILL_RETINA] — the multi-process data-parallel checks that
# ctest runs as dist_<scenario> (tests/CMakeLists.txt), each job under `mpirun --allow-run-as-root --oversubscribe
# -np 2` with one thread per rank:
#   collectives  rank-order all-reduce, broadcast, barrier on 2 and on 3 ranks (retikd_dist_check collectives)
#   equivalence  2 ranks × 3 steps against one process on the same global batches (retikd_dist_check equivalence)
#   dead_rank    a rank that crashes (SIGKILL) or hangs (SIGSTOP) mid-training: the job must end non-zero, the
#                hang through the survivor's collective timeout (RETIKD_DIST_TIMEOUT=15) with its message, and
#                neither may run into this script's own guard (timeout 180: exit 124)
#   resume       a TrainerLoop run killed in epoch 2 resumes to the same final weights, byte for byte, as an
#                uninterrupted run; resuming it with another number of ranks is refused
#   pipeline     distill_retina --preset smoke on 2 ranks: completes, rank 0 writes every file and prints once,
#                the test split is evaluated whole; stopped after 3 epochs and run again, it ends byte-identical
set -uo pipefail
scenario=$1
mpiexec=$2
check=$3
distill=${4:-}

export RETIKD_NUM_THREADS=1
# Containers often forbid the cross-process memory attach (CMA) that Open MPI's shared-memory transport uses
# for large messages; copying through the shared segment works everywhere.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mpi() {  # mpi NP ARGS... — one job, guarded so that a hang fails the test instead of blocking CI
  local np=$1
  shift
  timeout -k 10 180 "$mpiexec" --allow-run-as-root --oversubscribe -x RETIKD_NUM_THREADS -x RETIKD_DIST_TIMEOUT \
    -x OMPI_MCA_btl_vader_single_copy_mechanism -np "$np" "$@"
}
die() {
  echo "dist_check.sh ($scenario): FAILED: $*" >&2
  exit 1
}
expect_ok() {  # expect_ok LOG NP ARGS...
  local log=$1
  shift
  mpi "$@" >"$log" 2>&1
  local rc=$?
  cat "$log"
  [[ $rc -eq 0 ]] || die "exit status $rc from: $*"
}

export RETIKD_DIST_TIMEOUT=60
case "$scenario" in
  collectives)
    expect_ok "$work/2.log" 2 "$check" collectives
    expect_ok "$work/3.log" 3 "$check" collectives
    ;;
  equivalence)
    expect_ok "$work/eq.log" 2 "$check" equivalence
    ;;
  dead_rank)
    export RETIKD_DIST_TIMEOUT=15
    for fault in kill stall; do
      start=$(date +%s)
      mpi 2 "$check" train --fault "$fault" --fault-rank 1 --fault-step 2 --steps 6 >"$work/$fault.log" 2>&1
      rc=$?
      took=$(($(date +%s) - start))
      cat "$work/$fault.log"
      echo "dist_check.sh: $fault: exit status $rc after $took s"
      [[ $rc -ne 124 && $took -lt 170 ]] || die "$fault: the job hung until the test's own guard stopped it"
      [[ $rc -ne 0 ]] || die "$fault: the job exited 0 although rank 1 died"
      grep -q "\[rank 0\] step 1 done" "$work/$fault.log" || die "$fault: rank 0 never trained before the fault"
      if grep -q "\[rank 0\] step 5 done" "$work/$fault.log"; then die "$fault: rank 0 finished without rank 1"; fi
    done
    grep -q "did not complete within 15 s" "$work/stall.log" ||
      die "stall: the survivor did not report its collective's timeout"
    ;;
  resume)
    expect_ok "$work/a.log" 2 "$check" loop --out "$work/a"
    mpi 2 "$check" loop --out "$work/b" --fault kill --fault-rank 1 --fault-epoch 2 --fault-step 1 >"$work/b1.log" 2>&1
    rc=$?
    cat "$work/b1.log"
    [[ $rc -ne 0 && $rc -ne 124 ]] || die "the killed run exited with $rc"
    [[ -f "$work/b/last.safetensors" ]] || die "the killed run left no checkpoint"
    mpi 1 "$check" loop --out "$work/b" >"$work/b2.log" 2>&1
    rc=$?
    cat "$work/b2.log"
    [[ $rc -ne 0 ]] || die "a 1-rank run resumed a 2-rank checkpoint"
    grep -q "world_size" "$work/b2.log" || die "the refusal does not name the number of ranks"
    expect_ok "$work/b3.log" 2 "$check" loop --out "$work/b"
    cmp "$work/a/final.safetensors" "$work/b/final.safetensors" ||
      die "the resumed run's final weights differ from the uninterrupted run's"
    [[ $(grep -c '"epoch"' "$work/b/log.jsonl") -eq 3 ]] || die "log.jsonl of the resumed run does not hold 3 epochs"
    echo "dist_check.sh: resumed run identical to the uninterrupted one (final.safetensors byte for byte)"
    ;;
  pipeline)
    [[ -n "$distill" ]] || die "no distill_retina binary given"
    expect_ok "$work/p.log" 2 "$distill" --preset smoke --out "$work/p" --quiet
    for f in metrics.json report.md student_kd.rkd teacher/model.safetensors student_ce/log.jsonl; do
      [[ -s "$work/p/$f" ]] || die "$f missing"
    done
    [[ $(grep -c "== stage" "$work/p.log") -eq 3 ]] || die "the stage headers are not printed exactly once (rank 0)"
    # The smoke test split has 16 images, each rank evaluates 8: every stage's metrics must count all 16.
    support=$(grep -o '"support": *[0-9]*' "$work/p/metrics.json" | awk '{s += $2} END {print s}')
    [[ "$support" -eq 48 ]] || die "metrics.json counts $support test images over 3 stages, not 3 x 16"
    grep -q "config.world_size" "$work/p/student_kd/last.safetensors" || die "the checkpoint lacks world_size"
    # Stopped after 3 epochs (in student_ce) and run again: every stage ends as in the uninterrupted run.
    mpi 2 "$distill" --preset smoke --out "$work/q" --quiet --stop-after-epochs 3 >"$work/q1.log" 2>&1
    rc=$?
    cat "$work/q1.log"
    [[ $rc -eq 3 ]] || die "the stopped run exited with $rc, not 3"
    expect_ok "$work/q2.log" 2 "$distill" --preset smoke --out "$work/q" --quiet
    for stage in teacher student_ce student_kd; do
      cmp "$work/p/$stage/model.safetensors" "$work/q/$stage/model.safetensors" ||
        die "$stage: the resumed 2-rank pipeline differs from the uninterrupted one"
    done
    echo "dist_check.sh: the resumed 2-rank pipeline is byte-identical to the uninterrupted one"
    ;;
  *)
    die "unknown scenario"
    ;;
esac
echo "dist_check.sh: $scenario passed"
