#!/usr/bin/env bash
# The dashboard of `shmbus serve` in a real browser: Debian's Chromium, headless, driven by
# playwright-core (tools/shmbus/tests/browser/dashboard.cjs) loads the page while segments of
# every kind are being written, and checks the rows, that rates move between samples and the
# detail views. Then promtool (Debian's prometheus package) checks the live /metrics.
#
#   bash .ci/browser.sh                            # what CI runs
#   SCREENSHOT=docs/dashboard.png bash .ci/browser.sh   # also redraws the README's screenshot
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)
command -v curl >/dev/null || need+=(curl)
command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

"${CARGO:-cargo}" build -q -p shmbus-cli   # CARGO: another cargo command, such as a wrapper
shmbus=$PWD/target/debug/shmbus
work=$(mktemp -d)
prefix="dash$$-"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f /dev/shm/shmbus."$prefix"*
  rm -rf "$work"
}
trap cleanup EXIT

npm install --prefix "$work" --no-audit --no-fund --silent playwright-core@1.65.2 >/dev/null

# Segments of every kind, written to while the page is open, and one corrupt file.
"$shmbus" create "${prefix}md.prices" --slots 4096 --size 64 >/dev/null
"$shmbus" create "${prefix}md.trades" --slots 1024 --size 128 --multi-producer >/dev/null
"$shmbus" create "${prefix}jobs" --kind queue --slots 64 --size 32 >/dev/null
"$shmbus" create "${prefix}joints" --kind board --keys hip,knee,ankle --size 16 >/dev/null
"$shmbus" create "${prefix}log" --kind records --bytes 65536 >/dev/null
printf 'not a segment' >/dev/shm/shmbus."${prefix}corrupt"

"$shmbus" publish "${prefix}md.prices" 'px=101.25' --repeat 100000000 --rate 2000 >/dev/null & pids+=($!)
"$shmbus" publish "${prefix}md.trades" 'qty=3' --repeat 100000000 --rate 150 >/dev/null & pids+=($!)
"$shmbus" publish "${prefix}md.trades" 'qty=7' --repeat 100000000 --rate 100 >/dev/null & pids+=($!)
"$shmbus" publish "${prefix}log" 'GET /index.html 200' --repeat 100000000 --rate 300 >/dev/null & pids+=($!)
(
  # A queue whose depth wanders: two items in, one to three out, five times a second.
  while :; do
    "$shmbus" push "${prefix}jobs" --no-wait job-a job-b >/dev/null 2>&1 || true
    "$shmbus" pop "${prefix}jobs" -n $((RANDOM % 3 + 1)) >/dev/null 2>&1 || true
    "$shmbus" set "${prefix}joints" knee "a=0.$RANDOM" >/dev/null
    sleep 0.2
  done
) & pids+=($!)
"$shmbus" set "${prefix}joints" hip 'a=0.25' >/dev/null

"$shmbus" serve --listen 127.0.0.1:0 --prefix "$prefix" >"$work/serve.out" & pids+=($!)
for _ in $(seq 100); do
  grep -q '^listening on ' "$work/serve.out" && break
  sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/serve.out")
[ -n "$url" ] || { echo "shmbus serve did not start"; exit 1; }

curl -sf "${url}metrics" >"$work/metrics.txt"
promtool check metrics <"$work/metrics.txt"
echo "promtool check metrics: ok ($(grep -vc '^#' "$work/metrics.txt") samples)"

screenshot=${SCREENSHOT:-}
[ -z "$screenshot" ] || screenshot=$(realpath -m "$screenshot")
NODE_PATH="$work/node_modules" node tools/shmbus/tests/browser/dashboard.cjs "$url" "$prefix" $screenshot
