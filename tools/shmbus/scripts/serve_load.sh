#!/usr/bin/env bash
# Load measurement of `shmbus serve` (a script, not a test: it reports numbers, it asserts
# nothing). 200 segments (50 of each kind, the buses written to), the page, /api/segments (what
# the page polls) and /metrics each requested every 100 ms for DURATION seconds; prints the
# server's CPU use from /proc/PID/stat and a publisher's rate with and without the polling.
#
#   cargo build --release -p shmbus-cli && bash tools/shmbus/scripts/serve_load.sh
#   DURATION=10 SHMBUS=target/debug/shmbus bash tools/shmbus/scripts/serve_load.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
shmbus=${SHMBUS:-target/release/shmbus}
duration=${DURATION:-60}
burst=${BURST:-20000000}
prefix="load$$-"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f /dev/shm/shmbus."$prefix"*
}
trap cleanup EXIT

for i in $(seq 0 49); do
  "$shmbus" create "${prefix}bus$i" --slots 1024 --size 64 >/dev/null
  "$shmbus" create "${prefix}queue$i" --kind queue --slots 256 --size 32 >/dev/null
  "$shmbus" create "${prefix}board$i" --kind board --cells 16 --size 16 >/dev/null
  "$shmbus" create "${prefix}records$i" --kind records --bytes 65536 >/dev/null
done
"$shmbus" create "${prefix}burst" --slots 4096 --size 64 >/dev/null
# Ten buses with a live producer each, 1000 messages per second.
for i in $(seq 0 9); do
  "$shmbus" publish "${prefix}bus$i" tick --repeat 1000000000 --rate 1000 >/dev/null & pids+=($!)
done

# How fast one producer publishes BURST messages, in messages per second: the median of three
# runs (each a new `shmbus publish` process, its start-up included).
publish_rate() {
  local t0 t1
  for _ in 1 2 3; do
    t0=$(date +%s.%N)
    "$shmbus" publish "${prefix}burst" 'px=101.25' --repeat "$burst" >/dev/null
    t1=$(date +%s.%N)
    echo "$burst / ($t1 - $t0)" | bc -l
  done | sort -g | sed -n 2p
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

before=$(publish_rate)

out=$(mktemp)
"$shmbus" serve --listen 127.0.0.1:0 --prefix "$prefix" >"$out" & server=$!; pids+=($server)
for _ in $(seq 100); do grep -q '^listening on ' "$out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$out")
rm -f "$out"

(
  while :; do
    curl -s -o /dev/null "$url" -o /dev/null "${url}api/segments" -o /dev/null "${url}metrics"
    sleep 0.1
  done
) & pids+=($!)

sleep 2 # the first scans, and the page's first samples
segments=$(curl -s "${url}metrics" | awk '/^shmbus_segments\{/ { n += $2 } END { print n }')
t0=$(date +%s.%N); c0=$(ticks "$server")
during=$(publish_rate)
sleep "$duration"
t1=$(date +%s.%N); c1=$(ticks "$server")
hz=$(getconf CLK_TCK)
cpu=$(echo "100 * ($c1 - $c0) / $hz / ($t1 - $t0)" | bc -l)
scrape=$(curl -s "${url}metrics" | awk '/^shmbus_scrape_duration_seconds / { print $2 * 1000 }')
metrics_bytes=$(curl -s "${url}metrics" | wc -c)
list_bytes=$(curl -s "${url}api/segments" | wc -c)

printf 'segments listed:        %d\n' "$segments"
printf 'polling:                /, /api/segments, /metrics every 100 ms for %s s\n' "$duration"
printf 'server CPU:             %.2f %% of one core\n' "$cpu"
printf 'one scan of /dev/shm:   %.2f ms (last shmbus_scrape_duration_seconds)\n' "$scrape"
printf 'answer sizes:           /metrics %d bytes, /api/segments %d bytes\n' "$metrics_bytes" "$list_bytes"
printf 'publish rate (1 bus):   %.1f M msg/s without the server, %.1f M msg/s while polled (median of 3 x %d messages)\n' \
  "$(echo "$before / 1000000" | bc -l)" "$(echo "$during / 1000000" | bc -l)" "$burst"
