#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time: the short runs of scripts/test
# (20 s each) and the long runs of FUZZING.md. Installs what is missing: a nightly
# toolchain (minimal profile) and cargo-fuzz. A crash fails the run; libFuzzer leaves
# the input in fuzz/artifacts/TARGET/ (see FUZZING.md for turning it into a
# regression test).
#
# Usage: fuzz/run.sh [SECONDS] [TARGET...]      (default: 20 s, every target)
#   FUZZ_CORPUS=DIR keeps the corpus there (default: a temp dir, removed after).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
SECS=${1:-20}
if (($# > 0)); then shift; fi
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then TARGETS=(ws_frame http_json validate outbox_coalesce); fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing a nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rtm-fuzz.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
CORPUS=${FUZZ_CORPUS:-$TMP/corpus}

# One build for all targets, with AddressSanitizer (cargo-fuzz's default). Short
# smoke runs (scripts/test, under 5 minutes a target) build the dev profile: on a
# fresh 2-core CI machine the optimised build of the whole dependency tree costs
# several times as long as the run itself. Long runs build optimised (-O).
if ((SECS < 300)); then PROFILE=(--dev); PROFILE_DIR=debug; else PROFILE=(-O); PROFILE_DIR=release; fi
if ! cargo +nightly fuzz build "${PROFILE[@]}" >"$TMP/build.log" 2>&1; then
  tail -n 60 "$TMP/build.log" >&2
  echo "fuzz: building the targets failed" >&2
  exit 1
fi
# The binaries just built are run directly (what `cargo fuzz run` does after its own
# build check): one build for all targets, even if the tree changes meanwhile.
BIN="${CARGO_TARGET_DIR:-target}/$(rustc +nightly -vV | sed -n 's/^host: //p')/$PROFILE_DIR"
for t in "${TARGETS[@]}"; do
  mkdir -p "$CORPUS/$t" "seeds/$t" "artifacts/$t"
  log="$TMP/$t.log"
  # Each input must finish within 10 s; libFuzzer stops at the time limit or the
  # first crash (non-zero exit).
  if ! "$BIN/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "$CORPUS/$t" "seeds/$t" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED (the crashing input is in fuzz/artifacts/$t/;" \
      "replay: cargo +nightly fuzz run -O $t fuzz/artifacts/$t/FILE)" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
  echo "fuzz: $t: ${SECS} s, $runs runs, $cov, no crash"
done
