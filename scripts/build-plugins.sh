#!/usr/bin/env bash
# Builds the example WebAssembly plugins (plugin-kit/) into plugins/*.wasm, plus the
# plugins/variants/add-header-v2.wasm variant used by the hot-swap demo.
# Usage: scripts/build-plugins.sh   (PLUGIN_TARGET_DIR overrides the cargo target dir)
set -euo pipefail
cd "$(dirname "$0")/.."

wasm_target=wasm32-unknown-unknown
if ! { rustup target list --installed | grep -q "$wasm_target" || rustup target add "$wasm_target"; }; then
  echo "plugins: $wasm_target unavailable; tests use WAT fixtures" >&2
  exit 0
fi

export CARGO_TARGET_DIR="${PLUGIN_TARGET_DIR:-$HOME/.cache/rustygate-plugin-target}"
out="$CARGO_TARGET_DIR/$wasm_target/release"
build() { cargo build --release --locked --target "$wasm_target" --manifest-path plugin-kit/Cargo.toml "$@"; }

build -p add-header -p require-api-key
mkdir -p plugins/variants
cp "$out/add_header.wasm" plugins/add-header.wasm
cp "$out/require_api_key.wasm" plugins/require-api-key.wasm

# Same plugin, another default value: swapping it in proves hot reload.
ADD_HEADER_VALUE=v2 build -p add-header
cp "$out/add_header.wasm" plugins/variants/add-header-v2.wasm

for f in plugins/add-header.wasm plugins/require-api-key.wasm plugins/variants/add-header-v2.wasm; do
  printf 'plugins: %-40s %8d bytes\n' "$f" "$(wc -c < "$f")"
done
