"""Tails a bus and plots its message rate in the terminal, one bar per interval.

    python tail_rate.py NAME [--interval 1.0] [--count N]

Opens the bus read-only (it never disturbs the publisher), receives everything from now on, and
prints per interval the messages received, those lost to laps (exactly), the bytes, and a bar
scaled to the highest rate seen so far. Ctrl-C stops it; so does --count intervals."""

import argparse
import sys
import time

import shmbus


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="the bus name")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds per line")
    ap.add_argument("--count", type=int, default=0, help="stop after this many lines (0: never)")
    args = ap.parse_args()

    sub = shmbus.Bus.open(args.name, read_only=True).subscriber()
    peak, lines = 1.0, 0
    while args.count == 0 or lines < args.count:
        received = lost = size = 0
        end = time.monotonic() + args.interval
        while (left := end - time.monotonic()) > 0:
            try:
                got = sub.recv(timeout=left)
            except shmbus.Lapped as lap:
                lost += lap.lost
                continue
            except shmbus.Closed:
                # No publisher now; one may attach later. Wait out the interval.
                time.sleep(min(left, 0.05))
                continue
            if got is not None:
                received += 1
                size += len(got[1])
        rate = received / args.interval
        peak = max(peak, rate)
        bar = "#" * round(40 * rate / peak)
        print(f"{rate:12.0f} msg/s {lost:8d} lost {size / args.interval / 1e6:8.2f} MB/s |{bar}",
              flush=True)
        lines += 1


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except shmbus.ShmbusError as e:
        sys.exit(f"tail_rate: {e}")
