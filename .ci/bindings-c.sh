#!/usr/bin/env bash
# The C API (bindings/c, package shmbus-ffi): builds the library, compiles the C tests with cc
# under AddressSanitizer and UBSan against the static library, runs them (every function and
# error path; two C processes over a bus, a queue and lanes), exchanges messages between C and
# Rust (examples/rust_peer.rs) both ways over a bus and a queue, comparing checksums, and over
# lanes with the `shmbus` CLI (C producer -> `shmbus pop`, `shmbus publish` -> C consumer),
# comparing every record byte for byte; and builds and runs the example through pkg-config and
# CMake against the shared library; the header also compiles as C++.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v c++ >/dev/null || need+=(g++)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v cmake >/dev/null || need+=(cmake make)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build -p shmbus-ffi --lib --example rust_peer
cargo build -p shmbus-cli --bin shmbus
target="${CARGO_TARGET_DIR:-target}/debug"
peer="$target/examples/rust_peer"
cli="$target/shmbus"
work="$(mktemp -d)"
tag="cci-$$"
cleanup() {
  rm -rf "$work"
  rm -f /dev/shm/shmbus."$tag"-* /dev/shm/shmbus.ctest-*
}
trap cleanup EXIT

# What the static library needs beside it (rustc --print native-static-libs).
native="-lgcc_s -lutil -lrt -lpthread -lm -ldl"
cflags="-std=c11 -Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=70"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
for t in api peer; do
  # shellcheck disable=SC2086  # the flag lists are word lists
  cc $cflags -Ibindings/c/include "bindings/c/tests/$t.c" "$target/libshmbus_ffi.a" $native -o "$work/$t"
done

echo "--- every function and error path"
"$peer" typed "$tag-typed"
"$work/api" "$tag-typed"

echo "--- two C processes"
"$work/peer" two-bus "$tag-2bus" 200000
"$work/peer" two-queue "$tag-2queue" 100000
"$work/peer" two-lanes "$tag-2lanes" 200000

# One exchange: the producer's and the consumer's checksum lines must name the same sum.
same_sum() {
  local a b
  a="$(printf '%s\n' "$1" | sed -n 's/.*checksum \([0-9a-f]*\)$/\1/p' | head -1)"
  b="$(printf '%s\n' "$2" | sed -n 's/.*checksum \([0-9a-f]*\)$/\1/p' | head -1)"
  echo "$3: producer $a, consumer $b"
  [ -n "$a" ] && [ "$a" = "$b" ]
}
n=500
echo "--- C and Rust"
out1="$("$work/peer" bus-pub "$tag-c2r" $n)"; out2="$("$peer" bus-sub "$tag-c2r" $n)"
same_sum "$out1" "$out2" "bus, C publisher -> Rust subscriber"
out1="$("$peer" bus-pub "$tag-r2c" $n)"; out2="$("$work/peer" bus-sub "$tag-r2c" $n)"
same_sum "$out1" "$out2" "bus, Rust publisher -> C subscriber"
"$work/peer" queue-create "$tag-qc2r" $n >/dev/null
out1="$("$work/peer" queue-send "$tag-qc2r" $n)"; out2="$("$peer" queue-recv "$tag-qc2r" $n)"
same_sum "$out1" "$out2" "queue, C sender -> Rust receiver"
"$work/peer" queue-create "$tag-qr2c" $n >/dev/null
out1="$("$peer" queue-send "$tag-qr2c" $n)"; out2="$("$work/peer" queue-recv "$tag-qr2c" $n)"
same_sum "$out1" "$out2" "queue, Rust sender -> C receiver"
# Lanes: each side prints every record as `shmbus pop --json --format hex` does; the two lists
# must be the same, byte for byte (and the C consumer checks each record's pattern itself).
"$cli" create "$tag-lc2r" --kind lanes --lanes 4 --bytes 65536 >/dev/null
"$work/peer" lanes-pub "$tag-lc2r" $n >"$work/lanes-sent"
"$cli" pop "$tag-lc2r" -n $n --json --format hex >"$work/lanes-got"
grep '^{' "$work/lanes-sent" | cmp - "$work/lanes-got"
echo "lanes, C producer -> Rust consumer (shmbus pop): $(wc -l <"$work/lanes-got") records identical"
"$cli" create "$tag-lr2c" --kind lanes --lanes 4 --bytes 65536 >/dev/null
"$work/peer" lanes-hex - $n >"$work/lanes-hex"
# shellcheck disable=SC2046  # one argument per record
"$cli" publish "$tag-lr2c" --hex $(cat "$work/lanes-hex") >/dev/null
"$work/peer" lanes-pop "$tag-lr2c" $n >"$work/lanes-popped"
awk '{ printf "{\"lane\":0,\"len\":%d,\"hex\":\"%s\"}\n", length($0) / 2, $0 }' "$work/lanes-hex" \
  | cmp - <(grep '^{' "$work/lanes-popped")
echo "lanes, Rust producer (shmbus publish) -> C consumer: $(grep -c '^{' "$work/lanes-popped") records identical"

echo "--- the example, through pkg-config and CMake, against the shared library"
lib="$(cd "$target" && pwd)"
sed -e "s|@LIBDIR@|$lib|" -e "s|@INCLUDEDIR@|$PWD/bindings/c/include|" bindings/c/shmbus.pc.in >"$work/shmbus.pc"
export PKG_CONFIG_PATH="$work"
crate_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' bindings/c/Cargo.toml | head -1)"
[ "$(pkg-config --modversion shmbus)" = "$crate_version" ] \
  || { echo "bindings/c/shmbus.pc.in says version $(pkg-config --modversion shmbus), the crate $crate_version" >&2; exit 1; }
# shellcheck disable=SC2046  # pkg-config prints word lists
cc -std=c11 -Wall -Wextra -Werror bindings/c/examples/example.c $(pkg-config --cflags --libs shmbus) -o "$work/example"
LD_LIBRARY_PATH="$lib" "$work/example"
cmake -S bindings/c/examples -B "$work/cmake" >/dev/null
cmake --build "$work/cmake" >/dev/null
LD_LIBRARY_PATH="$lib" "$work/cmake/example"

echo "--- the latency bench's two programs run (a short run; no timing is judged here)"
cargo build -p shmbus-ffi --example pingpong
# shellcheck disable=SC2086
cc -std=c11 -O2 -Wall -Wextra -Werror -Ibindings/c/include bindings/c/bench/pingpong.c "$target/libshmbus_ffi.a" $native -o "$work/pingpong"
"$work/pingpong" "$tag-pp" 64 1000 | grep -q '^c 64: one-way p50 [0-9]* ns'
"$target/examples/pingpong" "$tag-pp" 64 1000 | grep -q '^rust 64: one-way p50 [0-9]* ns'
"$work/pingpong" --rate "$tag-pp" 8 1000 | grep -q '^c 8: publish [0-9.]* ns'
"$target/examples/pingpong" --rate "$tag-pp" 8 1000 | grep -q '^rust 8: publish [0-9.]* ns'

echo "--- the header from C++"
printf '#include "shmbus.h"\nint main() { ShmbusReceived r{}; return shmbus_status_name(0) && r.len == 0 ? 0 : 1; }\n' >"$work/header.cpp"
# shellcheck disable=SC2086
c++ -std=c++11 -Wall -Wextra -Werror -Ibindings/c/include "$work/header.cpp" "$target/libshmbus_ffi.a" $native -o "$work/header"
"$work/header"

echo "--- the README's C example"
sed -n '/^```c$/,/^```$/p' README.md | sed '1d;$d' >"$work/readme.c"
[ -s "$work/readme.c" ] || { echo "README.md has no C example" >&2; exit 1; }
# shellcheck disable=SC2086
cc $cflags -Ibindings/c/include "$work/readme.c" "$target/libshmbus_ffi.a" $native -o "$work/readme"
"$work/readme" | grep -qx '0: AAPL 189.91'

echo "bindings-c: every C test passed"
