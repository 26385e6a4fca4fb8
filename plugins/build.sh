#!/usr/bin/env bash
# Builds every plugin in this workspace as a WebAssembly component for
# wasm32-wasip2 and copies each one to plugins/dist/NAME.wasm, where NAME is
# the crate name without the `sluice-` prefix (filter.wasm, fixture-panic.wasm),
# plus examples/plugin-template as template.wasm and the kept 0.1 fixtures
# (filter-v0.1.wasm, ndjson-sink-v0.1.wasm).
#
#   bash plugins/build.sh              # from anywhere
#   CARGO_TARGET_DIR=/tmp/t bash plugins/build.sh
#
# Honours CARGO_TARGET_DIR (default: plugins/target). Idempotent: dist/ is
# refreshed to exactly the components of this build. Prints their sizes.
set -euo pipefail

caller_dir="$(pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target_dir="${CARGO_TARGET_DIR:-$here/target}"
case "$target_dir" in
  /*) ;;
  *) target_dir="$caller_dir/$target_dir" ;;
esac
export CARGO_TARGET_DIR="$target_dir"

cd "$here"
cargo build --workspace --target wasm32-wasip2 --release

out_dir="$target_dir/wasm32-wasip2/release"
dist="$here/dist"
mkdir -p "$dist"
rm -f "$dist"/*.wasm

# The component-model binary preamble: "\0asm", version 0x0d, layer 1.
component_magic="0061736d0d000100"

count=0
for manifest in */Cargo.toml fixtures/*/Cargo.toml; do
  grep -q '"cdylib"' "$manifest" || continue
  crate="$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -n 1)"
  artifact="$out_dir/${crate//-/_}.wasm"
  if [[ ! -f "$artifact" ]]; then
    echo "build.sh: missing $artifact for crate $crate" >&2
    exit 1
  fi
  magic="$(head -c 8 "$artifact" | od -An -tx1 | tr -d ' \n')"
  if [[ "$magic" != "$component_magic" ]]; then
    echo "build.sh: $artifact is not a WebAssembly component (header $magic)" >&2
    exit 1
  fi
  name="${crate#sluice-}"
  cp "$artifact" "$dist/$name.wasm"
  count=$((count + 1))
done

# The copyable template, built exactly as its README tells plugin authors.
(cd "$here/../examples/plugin-template" && cargo build --target wasm32-wasip2 --release)
template="$(sed -n 's/^name = "\(.*\)"$/\1/p' "$here/../examples/plugin-template/Cargo.toml" | head -n 1)"
cp "$out_dir/${template//-/_}.wasm" "$dist/template.wasm"
count=$((count + 1))

# Components built against `sluice:plugin@0.1.0` with that contract's SDK,
# kept as binaries: the host must keep running them (fixtures/v0.1/README.md).
cp fixtures/v0.1/*.wasm "$dist/"
count=$((count + $(ls fixtures/v0.1/*.wasm | wc -l)))

echo "Components in $dist:"
for file in "$dist"/*.wasm; do
  printf '  %-28s %8d bytes\n' "$(basename "$file")" "$(wc -c < "$file")"
done
echo "$count components built."
