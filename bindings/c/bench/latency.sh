#!/usr/bin/env bash
# The C API's one-way latency beside Rust's: the same ping-pong (two processes, two buses,
# pinned to cores 0 and 1, spinning receives) through bench/pingpong.c and through
# examples/pingpong.rs, in alternating runs, at each payload; prints each run's p50 and p99 and
# the C/Rust ratio of the p50s (the median over the rounds); then the same for the publish rate
# of one producer with no subscriber.
#
#   bash bindings/c/bench/latency.sh [ROUNDS] [ITERS]     (default 5 rounds of 100000 round trips)
set -euo pipefail
cd "$(dirname "$0")/../../.."
rounds="${1:-5}"
iters="${2:-100000}"
cargo build -q -p shmbus-ffi --release --lib --example pingpong
target="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"; rm -f /dev/shm/shmbus.pp-$$-*' EXIT
cc -std=c11 -O2 -Ibindings/c/include bindings/c/bench/pingpong.c "$target/libshmbus_ffi.a" \
  -lgcc_s -lutil -lrt -lpthread -lm -ldl -o "$work/pingpong"
p50() { sed -n 's/.*one-way p50 \([0-9]*\) ns.*/\1/p'; }
echo "one-way latency, ns (p50 / p99); $rounds alternating rounds of $iters round trips; $(nproc) CPUs"
for payload in 8 64; do
  ratios=()
  for r in $(seq 1 "$rounds"); do
    # Alternate which goes first, so that neither always runs on a warmer or quieter machine.
    if [ $((r % 2)) -eq 1 ]; then
      c="$("$work/pingpong" "pp-$$-c" "$payload" "$iters")"
      rust="$("$target/examples/pingpong" "pp-$$-r" "$payload" "$iters")"
    else
      rust="$("$target/examples/pingpong" "pp-$$-r" "$payload" "$iters")"
      c="$("$work/pingpong" "pp-$$-c" "$payload" "$iters")"
    fi
    ratio="$(awk -v c="$(p50 <<<"$c")" -v r="$(p50 <<<"$rust")" 'BEGIN { printf "%.3f", c / r }')"
    ratios+=("$ratio")
    echo "  round $r: $c | $rust | C/Rust $ratio"
  done
  median="$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
  echo "payload $payload B: C/Rust one-way p50 ratio, median of $rounds rounds: $median"
done
per() { sed -n 's/.*publish \([0-9.]*\) ns.*/\1/p'; }
count=$((iters * 20))
echo "publish, mean ns per message ($count messages, no subscriber)"
for payload in 8 64; do
  ratios=()
  for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then
      c="$("$work/pingpong" --rate "pp-$$-c" "$payload" "$count")"
      rust="$("$target/examples/pingpong" --rate "pp-$$-r" "$payload" "$count")"
    else
      rust="$("$target/examples/pingpong" --rate "pp-$$-r" "$payload" "$count")"
      c="$("$work/pingpong" --rate "pp-$$-c" "$payload" "$count")"
    fi
    ratio="$(awk -v c="$(per <<<"$c")" -v r="$(per <<<"$rust")" 'BEGIN { printf "%.3f", c / r }')"
    ratios+=("$ratio")
    echo "  round $r: $c | $rust | C/Rust $ratio"
  done
  median="$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
  echo "payload $payload B: C/Rust publish time ratio, median of $rounds rounds: $median"
done
