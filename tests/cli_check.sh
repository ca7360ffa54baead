#!/usr/bin/env bash
# tests/cli_check.sh STATUS REGEX PROGRAM [ARGS...] — runs a program with a bad command line and passes when it
# exits with STATUS (2: a usage error) and its output matches REGEX (grep -E). ctest runs one per malformed
# argument of the examples (tests/CMakeLists.txt): numbers are strict and bounded in every program, and a bad
# one stops the program before any work, with a message naming the option.
set -uo pipefail
want=$1 regex=$2
shift 2
out=$(timeout 60 "$@" 2>&1)
got=$?
if [[ $got -ne $want ]]; then
  echo "cli_check: $* exited with $got, expected $want; output:"
  echo "$out" | head -20
  exit 1
fi
if ! grep -Eq -- "$regex" <<<"$out"; then
  echo "cli_check: the output of $* does not match '$regex':"
  echo "$out" | head -20
  exit 1
fi
echo "cli_check: $* -> $got: $(grep -Em1 -- "$regex" <<<"$out")"
