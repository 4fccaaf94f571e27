#!/usr/bin/env bash
# Miri on the heap-backed protocol (RELIABILITY row 2: zero UB reports): the library package's
# unit tests, the model-based tests of tests/bus_model.rs, then its threaded tests under several
# scheduling seeds. About 3-5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

rustup component add --toolchain nightly miri rust-src
cargo +nightly miri setup

# Isolation off only because building a bus reads the wall clock (its creation time). Tests
# that need /dev/shm, futexes, fcntl locks or /proc are #[cfg_attr(miri, ignore)] (or skip
# /proc under cfg(miri)); miri itself cannot model shared mappings.
export MIRIFLAGS="-Zmiri-disable-isolation ${MIRIFLAGS:-}"
# The library's own proptests: few cases (tests/bus_model.rs sets its own miri-sized config).
export PROPTEST_CASES="${PROPTEST_CASES:-16}"

time cargo +nightly miri test -p shmbus --lib
time cargo +nightly miri test -p shmbus --test bus_model
# Real threads (publishers and subscribers racing on one in-process bus), one run per seed.
export MIRIFLAGS="$MIRIFLAGS -Zmiri-many-seeds=0..4"
time cargo +nightly miri test -p shmbus --test bus_model -- threads::
