#!/usr/bin/env bash
# Builds the Python package (python/) into a fresh virtual environment and runs its tests, with
# real Node peers (the Node package must be built: npm install).
#   scripts/test-python.sh [pytest arguments]
# Environment: PYTHON (default python3); SHMKIT_PYTHON_VENV keeps the environment there between
# runs instead of a fresh one.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "python: SKIPPED (no $python)"
  exit 0
fi
if [ -n "${SHMKIT_PYTHON_VENV:-}" ]; then
  venv=$SHMKIT_PYTHON_VENV
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
else
  venv=$(mktemp -d "${TMPDIR:-/tmp}/shmkit-python.XXXXXX")
  trap 'rm -rf "$venv"' EXIT
  "$python" -m venv "$venv"
fi
echo "python: building the package into $venv"
"$venv/bin/pip" install --quiet "./python[test]"
# The Node peers are part of these tests: fail, not skip, if the Node package is missing.
SHMKIT_REQUIRE_NODE=1 "$venv/bin/pytest" -p no:cacheprovider python/tests "$@"
