#!/usr/bin/env bash
# The Python bindings (bindings/python): lint the extension (it is outside the root workspace,
# so the root fmt and clippy do not see it), install it the way the README says into a fresh
# venv, build the Rust inspector that the cross-language tests drive, and run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="$root/target"

python=${PYTHON:-python3}
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
  python=python3
fi

for crate in bindings/python bindings/python/tests/rust-peer; do
  cargo fmt --manifest-path "$crate/Cargo.toml" --check
  cargo clippy --manifest-path "$crate/Cargo.toml" --locked --all-targets -- -D warnings
done

venv="$root/target/python-venv"
rm -rf "$venv"
"$python" -m venv "$venv"
# numpy only for the typed-bus test with a structured dtype (the package does not need it).
"$venv/bin/pip" install --quiet --disable-pip-version-check maturin pytest numpy
# The README's command: builds the wheel with maturin (abi3, Python >= 3.9) and installs it.
"$venv/bin/pip" install --quiet --disable-pip-version-check ./bindings/python

# The Rust peers of the cross-language tests: the inspector, and tests/rust-peer (typed buses).
cargo build -p shmbus-cli
cargo build --manifest-path bindings/python/tests/rust-peer/Cargo.toml --locked
export SHMBUS_CLI="$root/target/debug/shmbus" SHMBUS_RUST_PEER="$root/target/debug/rust-peer"
export SHMBUS_REQUIRE_RUST_PEERS=1
# From the tests' folder, so that `import shmbus` is the installed package.
cd bindings/python/tests
"$venv/bin/python" -m pytest -q -p no:cacheprovider .

# bench.py still runs (a few messages against the debug peer: its figures mean nothing here).
"$venv/bin/python" ../bench.py --n 2000 --trips 200 --rust "$SHMBUS_RUST_PEER" >/dev/null
