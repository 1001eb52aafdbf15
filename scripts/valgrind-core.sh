#!/usr/bin/env bash
# Runs the Rust core's tests under valgrind (memcheck): any invalid access or definite leak fails.
# The property tests are left out here (thousands of cases are slow under valgrind; they run
# natively in `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
  echo "valgrind not installed: skipped"
  exit 0
fi
binaries=$(cargo test -p shmkit-core --no-run --message-format=json 2>/dev/null |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){if(!l)continue;const m=JSON.parse(l);if(m.reason==="compiler-artifact"&&m.executable&&m.target.name!=="fuzz")console.log(m.executable)}})')
for binary in $binaries; do
  echo "valgrind: $(basename "$binary")"
  valgrind --quiet --error-exitcode=99 --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite "$binary" --test-threads=1 -q
done
