#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#
# Installs what it needs idempotently and caches everything slow outside the
# clone, under ~/.cache/sluice: the wasm32-wasip2 target, the tansu broker,
# the Cargo target directories. Then: plugin unit tests, plugin builds, host
# unit tests, and integration tests against a real tansu broker process (and
# PostgreSQL at 127.0.0.1:5432, started if it is down).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$cache"

step() { printf '\n=== %s\n' "$*"; }

# Every test runner's output also goes to this log, for the totals at the end.
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

step "toolchain"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

step "tansu broker"
bash scripts/install-tansu.sh

step "PostgreSQL"
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

step "plugins: unit tests and wasm32-wasip2 builds"
export CARGO_TARGET_DIR="$cache/plugins-target"
(cd plugins && cargo test --quiet) 2>&1 | tee -a "$results"
bash plugins/build.sh
(cd examples/plugin-template && cargo test --quiet) 2>&1 | tee -a "$results"

step "host: build"
export CARGO_TARGET_DIR="$cache/target"
cargo build --release -p sluice-host

step "host: unit and integration tests"
# One test at a time: each integration test runs its own broker and hosts,
# and on 2 cores parallel tests starve tansu into group session timeouts.
cargo test --release --workspace -- --test-threads=1 ${SLUICE_TEST_ARGS:-} 2>&1 | tee -a "$results"

step "totals"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
