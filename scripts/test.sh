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
# The sink tests use the local server (trust auth, database `test`); on a
# machine without one, install Debian's and set that up.
if ! command -v pg_ctlcluster >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
pg_version="$(ls /etc/postgresql | head -n1)"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
fi
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
if ! psql -h 127.0.0.1 -U postgres -d test -qc 'SELECT 1' >/dev/null 2>&1; then
  # A fresh install: trust auth on loopback and a `test` database.
  hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
  grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload
  su postgres -c "createdb test" 2>/dev/null || true
fi
psql -h 127.0.0.1 -U postgres -d test -qc 'SELECT 1' >/dev/null

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
# The slow fault suite (tests/tests/fault.rs: SIGKILL and a 30 s broker
# outage under load) runs in CI; set SLUICE_FAULT=0 to skip it locally.
export SLUICE_FAULT="${SLUICE_FAULT:-1}"
# Seconds of seeded mutation fuzzing per target (tests/tests/fuzz_stable.rs).
export SLUICE_FUZZ_SECS="${SLUICE_FUZZ_SECS:-30}"
# --nocapture so the counts the fault, shutdown and sink tests print
# (accepted, delivered, duplicates, lost) appear in the CI log.
cargo test --release --workspace -- --test-threads=1 --nocapture ${SLUICE_TEST_ARGS:-} 2>&1 | tee -a "$results"

step "fuzz: libFuzzer through cargo fuzz, briefly"
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them, and `--sanitizer none` avoids a sanitizer runtime.
# Both are cached under ~/.cache/sluice (the first build takes ~15 minutes).
# New inputs go to a temporary corpus; fuzz/corpus/* are the seeds.
# SLUICE_CARGO_FUZZ_SECS=0 skips this step.
fuzz_secs="${SLUICE_CARGO_FUZZ_SECS:-20}"
if [ "$fuzz_secs" != 0 ]; then
  [ -x "$cache/cargo-fuzz/bin/cargo-fuzz" ] ||
    cargo install cargo-fuzz --locked --root "$cache/cargo-fuzz"
  for target in ingest_decode config_load; do
    corpus="$(mktemp -d)"
    log="$corpus.log"
    if (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$cache/fuzz-target" \
      "$cache/cargo-fuzz/bin/cargo-fuzz" run --sanitizer none "$target" "$corpus" "corpus/$target" \
      -- -max_total_time="$fuzz_secs") >"$log" 2>&1; then
      echo "cargo fuzz $target: $(grep -E '^Done' "$log" | tail -n1), no crash"
      rm -rf "$corpus" "$log"
    else
      tail -n 60 "$log"
      echo "cargo fuzz $target failed (a crash is kept in fuzz/artifacts/$target)" >&2
      exit 1
    fi
  done
fi

step "totals"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
