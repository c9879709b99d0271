#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target of gateway/fuzz under libFuzzer (cargo fuzz, nightly) for
# FUZZ_SECONDS seconds each (default 60), growing the committed corpus in gateway/fuzz/corpus/.
# A crash or hang is saved in gateway/fuzz/artifacts/<target>/ and copied into the target's
# corpus, where `make test` replays it (gateway/tests/fuzz_corpus.rs): fix it, then commit it.
set -euo pipefail
cd "$(dirname "$0")/../gateway"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS="${FUZZ_TARGETS:-config_loader path_and_routes header_rules jwt_token plugin_abi}"
# Nightly artifacts (sanitizer builds) stay out of the main target dir.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/rustygate-fuzz-target}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is needed (libFuzzer's sanitizer flags): rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Build first: a build failure is not a finding.
for target in $TARGETS; do
  if ! cargo +nightly fuzz build --fuzz-dir fuzz "$target" > "/tmp/rustygate-fuzz-build-$target.log" 2>&1; then
    echo "fuzz: $target does not build (log: /tmp/rustygate-fuzz-build-$target.log)" >&2
    exit 2
  fi
done

status=0
for target in $TARGETS; do
  mkdir -p "fuzz/corpus/$target"
  before=$(ls "fuzz/corpus/$target" | wc -l)
  started=$(date +%s)
  # New inputs go to a scratch dir first, then a merge keeps only those adding coverage, so
  # the committed corpus stays small.
  scratch=$(mktemp -d)
  if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$scratch" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      > "/tmp/rustygate-fuzz-$target.log" 2>&1; then
    status=1
    echo "fuzz: $target FOUND A CRASH OR HANG (log: /tmp/rustygate-fuzz-$target.log)"
    for crash in fuzz/artifacts/"$target"/*; do
      [ -f "$crash" ] && cp "$crash" "fuzz/corpus/$target/regression-$(basename "$crash")" && echo "  kept $crash"
    done
  fi
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" -- -merge=1 "fuzz/corpus/$target" "$scratch" \
    > "/tmp/rustygate-fuzz-$target-merge.log" 2>&1 || true
  rm -rf "$scratch"
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "/tmp/rustygate-fuzz-$target.log" | grep -o '[0-9]*$' || echo "?")
  after=$(ls "fuzz/corpus/$target" | wc -l)
  echo "fuzz: $target: $(( $(date +%s) - started )) s, $runs executions, corpus $before -> $after inputs"
done
exit $status
