#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#
# Installs what it needs idempotently and caches everything slow outside the
# clone, under ~/.cache/sluice: the wasm32-wasip2 target, the Apache Kafka
# broker's jars (from Maven Central), cargo-fuzz, the Cargo target
# directories. Then: plugin unit tests, plugin builds, host unit tests, and
# integration tests against real Apache Kafka broker processes (started by
# the tests; one shared per test binary, plus one of its own for each test
# that stops or pauses it) and PostgreSQL at 127.0.0.1:5432 (installed and
# started here when missing or down).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
mkdir -p "$cache"

# Each step prints its duration when the next one starts (and at the end).
suite_start=$SECONDS
step_name=""
step_start=$SECONDS
step() {
  [ -n "$step_name" ] && printf '=== done: %s (took %d s)\n' "$step_name" $((SECONDS - step_start))
  step_name="$*"
  step_start=$SECONDS
  printf '\n=== step: %s\n' "$*"
}

# Every test runner's output also goes to this log, for the totals at the end.
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "toolchain: wasm32-wasip2"
bash ../shared/toolchain/install-wasm32-wasip2.sh

step "Kafka broker jars"
bash scripts/install-kafka.sh

step "PostgreSQL"
# The sink tests use the local server (trust auth on loopback, database
# `test`); on a machine without one, install Debian's and set that up.
if ! command -v pg_ctlcluster >/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql
fi
pg_version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
if [ -z "$pg_version" ] || [ ! -d "/etc/postgresql/$pg_version/main" ]; then
  # The package normally creates the `main` cluster; a trimmed image may not.
  pg_version="${pg_version:-$(ls /usr/lib/postgresql | sort -V | tail -n1)}"
  as_root pg_createcluster "$pg_version" main
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
fi
for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
if ! psql -h 127.0.0.1 -U postgres -d test -qc 'SELECT 1' >/dev/null 2>&1; then
  # A fresh install: trust auth on loopback and a `test` database.
  hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
  as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba" ||
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload
  sleep 1
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test' 2>/dev/null || true
fi
psql -h 127.0.0.1 -U postgres -d test -qc 'SELECT 1' >/dev/null
echo "PostgreSQL $pg_version: 127.0.0.1:5432, database test"

step "tmux"
# tests/tests/top.rs drives the real `sluice top` in a terminal: tmux runs
# it (send-keys, capture-pane). Debian's, installed when missing.
if ! command -v tmux >/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq tmux
fi
tmux -V

step "browser: Chromium and Playwright"
# The web console's browser tests (tests/src/browser.rs): Debian's headless
# Chromium and Playwright's test runner from npm, cached under
# ~/.cache/sluice/browser, no browser download.
bash scripts/install-browser.sh

step "Python packages"
# confluent-kafka (Schema Registry client, Avro serde) and the OpenTelemetry
# SDK's OTLP/HTTP exporter for tests/tests/protocols.rs, from PyPI into a
# cached venv (~/.cache/sluice/venv).
bash scripts/install-python.sh >/dev/null

step "Apicurio Registry"
# A real schema-registry server for tests/tests/apicurio.rs: Apicurio
# Registry's release build from Maven Central (Java 21+), cached under
# ~/.cache/sluice/apicurio.
bash scripts/install-apicurio.sh

# The Cargo target directories below are shared by every checkout (so a
# fresh clone builds warm), and Cargo judges freshness by modification
# times: a checkout whose files are older than the last build from another
# checkout would be tested as that other checkout was built. So when the
# checkout changes, its tracked files are touched once, and its own crates
# are built again (the dependencies stay built).
checkout_stamp="$cache/last-checkout"
if [ "$(cat "$checkout_stamp" 2>/dev/null)" != "$PWD" ]; then
  git ls-files -z 2>/dev/null | xargs -0 -r touch -c || true
  echo "$PWD" >"$checkout_stamp"
fi

step "plugins: unit tests and wasm32-wasip2 builds"
# SLUICE_PLUGINS_TARGET_DIR / SLUICE_TARGET_DIR: other target directories
# (e.g. one per worktree); default under the cache.
export CARGO_TARGET_DIR="${SLUICE_PLUGINS_TARGET_DIR:-$cache/plugins-target}"
(cd plugins && cargo test --quiet) 2>&1 | tee -a "$results"
bash plugins/build.sh
(cd examples/plugin-template && cargo test --quiet) 2>&1 | tee -a "$results"

step "host and tests: build"
export CARGO_TARGET_DIR="${SLUICE_TARGET_DIR:-$cache/target}"
cargo build --release -p sluice-host
cargo test --release --workspace --no-run

# The slow fault suite (tests/tests/fault.rs: SIGKILL and a 30 s broker
# outage under load) runs in CI; set SLUICE_FAULT=0 to skip it locally.
export SLUICE_FAULT="${SLUICE_FAULT:-1}"
# Seconds of seeded mutation fuzzing per target (tests/tests/fuzz_stable.rs).
export SLUICE_FUZZ_SECS="${SLUICE_FUZZ_SECS:-30}"

step "unit tests and integration tests"
# Two runners at once, each test binary with its own broker(s):
#  - serial: the binaries whose tests take exclusive resources, one test at
#    a time: sink and warehouse_example (a sink test stops PostgreSQL, which
#    they all use) and fault (SIGKILL and a broker outage under load,
#    timing-sensitive);
#  - parallel: everything else, tests within a binary on 2 threads, on the
#    binary's shared broker with their own topics and groups (tests that
#    stop or pause a broker start their own).
# --nocapture so the counts the fault, shutdown, rejoin, hot-reload and sink
# tests print (accepted, delivered, duplicates, lost, gaps) appear in the log.
serial_bins=(sink warehouse_example fault)
serial_args=()
for t in "${serial_bins[@]}"; do serial_args+=(--test "$t"); done
parallel_args=(--lib --bins)
for f in tests/tests/*.rs; do
  t="$(basename "$f" .rs)"
  [[ " ${serial_bins[*]} " == *" $t "* ]] || parallel_args+=(--test "$t")
done
serial_log="$(mktemp)"
trap 'rm -f "$results" "$serial_log"' EXIT
(cargo test --release --no-fail-fast -p sluice-tests "${serial_args[@]}" -- \
  --test-threads=1 --nocapture ${SLUICE_TEST_ARGS:-} >"$serial_log" 2>&1) &
serial_pid=$!
# The parallel runner streams; the serial one's log follows when both ended.
parallel_status=0
cargo test --release --no-fail-fast --workspace "${parallel_args[@]}" -- \
  --test-threads=2 --nocapture ${SLUICE_TEST_ARGS:-} 2>&1 | tee -a "$results" || parallel_status=$?
serial_status=0
wait "$serial_pid" || serial_status=$?
echo "--- serial runner (${serial_bins[*]}) ---"
cat "$serial_log" | tee -a "$results"
# Doc examples (a separate target kind; cheap).
cargo test --release --workspace --doc --quiet 2>&1 | tee -a "$results"
if [ "$parallel_status" != 0 ] || [ "$serial_status" != 0 ]; then
  echo "tests failed (parallel runner exit $parallel_status, serial runner exit $serial_status)" >&2
  exit 1
fi

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
printf '=== suite took %d s\n' $((SECONDS - suite_start))
