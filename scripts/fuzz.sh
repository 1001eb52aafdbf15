#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz + libFuzzer, nightly) of every parser of shared memory:
# header, attach table, mutex cell, channel ring. The committed corpus in
# crates/shmkit-core/fuzz/corpus/<target> seeds each run; what a run finds goes to a temporary
# directory, so the repository is only changed on purpose.
#   scripts/fuzz.sh                  each target for 15 s (the CI run)
#   scripts/fuzz.sh --seconds 600    longer
#   scripts/fuzz.sh --update-corpus  also merge what was found into the committed corpus
# Without a nightly toolchain or cargo-fuzz, says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../crates/shmkit-core/fuzz"

seconds=15
update=false
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --update-corpus) update=true; shift ;;
    *) echo "usage: $0 [--seconds N] [--update-corpus]" >&2; exit 2 ;;
  esac
done

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: SKIPPED (no nightly toolchain)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked >/dev/null 2>&1 || { echo "fuzz: SKIPPED (cargo-fuzz cannot be installed here)"; exit 0; }
fi

status=0
for target in header attach_table mutex_cell ring; do
  found=$(mktemp -d)
  log=$(mktemp)
  if cargo +nightly fuzz run "$target" "$found" "corpus/$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
    echo "fuzz ${target}: $(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1) in ${seconds} s, no crash"
    if $update; then
      cargo +nightly fuzz cmin "$target" "corpus/$target" >/dev/null 2>&1 || true
      cp -n "$found"/* "corpus/$target/" 2>/dev/null || true
      cargo +nightly fuzz cmin "$target" "corpus/$target" >/dev/null 2>&1 || true
    fi
  else
    echo "fuzz ${target}: FAILED"
    tail -n 40 "$log"
    find "artifacts/$target" -type f 2>/dev/null | sed 's/^/  crash input: /'
    status=1
  fi
  rm -rf "$found" "$log"
done
exit "$status"
