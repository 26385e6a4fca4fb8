#!/usr/bin/env bash
# Installs the tansu Kafka-protocol broker (Apache-2.0, crates.io) that the
# integration tests run as a real broker process. Idempotent: skips the build
# when the binary is already cached. First build: ~11 min on 2 cores.
set -euo pipefail
root="${SLUICE_CACHE:-$HOME/.cache/sluice}/tansu"
bin="$root/bin/tansu"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q '0\.6\.0'; then
  echo "tansu: cached at $bin"
  exit 0
fi
echo "tansu: building 0.6.0 with the sqlite store into $root (first time only, ~11 min)"
cargo install tansu --version 0.6.0 --locked --features libsql --root "$root"
"$bin" --version
