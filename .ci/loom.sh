#!/usr/bin/env bash
# Loom model checks of the production protocol types of every segment kind (src/*/loom.rs).
# The library package is built with --cfg loom into its own target dir, so it does not invalidate
# the normal build. About 40 minutes on 2 cores; LOOM_MAX_PREEMPTIONS=N overrides every model's
# preemption bound (higher is more thorough and much slower).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-target/loom}"
# Loom's models print how many executions they explored; --nocapture shows it.
time cargo test --release -p shmbus --lib ::loom:: -- --test-threads="${LOOM_TEST_THREADS:-2}" --nocapture
