#!/usr/bin/env bash
# Benchmarks against a real Apache Kafka broker (started by the harness,
# jars from scripts/install-kafka.sh; SLUICE_BENCH_BROKER=mock runs ingest
# and replay on librdkafka's mock cluster); each prints its baseline from the
# same run and the ratio. Usage: scripts/bench.sh [ingest|stage|tap|chain|replay|sink]
# (sink needs the local PostgreSQL, as the tests do)
# SLUICE_BENCH_SCALE=0.2 runs a fifth of the load.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
bash scripts/install-kafka.sh >/dev/null
if [ "${1:-ingest}" != ingest ]; then
  CARGO_TARGET_DIR="$cache/plugins-target" bash plugins/build.sh >/dev/null
fi
export CARGO_TARGET_DIR="$cache/target"
cargo build --release -p sluice-host -p sluice-tests --bins
"$CARGO_TARGET_DIR/release/sluice-bench" "${1:-ingest}"
