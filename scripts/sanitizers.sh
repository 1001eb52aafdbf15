#!/usr/bin/env bash
# The core's threaded and multi-process tests under ThreadSanitizer and AddressSanitizer.
# Needs a nightly toolchain with rust-src (sanitizers rebuild the standard library with
# -Zbuild-std); where it is missing, says so and exits 0 (the product builds on stable).
#   scripts/sanitizers.sh            both sanitizers
#   scripts/sanitizers.sh thread     one of them
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "sanitizers: SKIPPED (no nightly toolchain: rustup toolchain install nightly --component rust-src)"
  exit 0
fi
if ! rustup +nightly component list --installed 2>/dev/null | grep -q '^rust-src'; then
  rustup component add rust-src --toolchain nightly >/dev/null 2>&1 || {
    echo "sanitizers: SKIPPED (nightly has no rust-src and it cannot be installed here)"
    exit 0
  }
fi

target=$(rustc -vV | sed -n 's/^host: //p')
status=0
for sanitizer in "${@:-thread address}"; do
  for kind in $sanitizer; do
    echo "--- ${kind} sanitizer: shmkit-core unit tests and integration tests"
    log=$(mktemp)
    # The fork test is left out under ThreadSanitizer, which does not support fork() in a
    # multi-threaded process; it runs under AddressSanitizer and in the normal suite.
    skip=()
    if [ "$kind" = thread ]; then skip=(--skip a_forked_child_is_not_its_parent); fi
    set +e
    RUSTFLAGS="-Zsanitizer=${kind}" RUSTDOCFLAGS="-Zsanitizer=${kind}" \
      TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ASAN_OPTIONS="detect_leaks=1" \
      CARGO_TARGET_DIR="target/sanitizer-${kind}" \
      cargo +nightly test -Zbuild-std --target "$target" -p shmkit-core --lib --tests -- "${skip[@]}" >"$log" 2>&1
    code=$?
    set -e
    grep -E '^test result|Sanitizer' "$log" || true
    if [ "$code" -ne 0 ] || grep -q 'Sanitizer:' "$log"; then
      echo "${kind} sanitizer: FAILED (exit ${code})"
      tail -n 60 "$log"
      status=1
    else
      echo "${kind} sanitizer: clean"
    fi
    rm -f "$log"
  done
done
exit "$status"
